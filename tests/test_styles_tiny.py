"""Every first-party style, found through the installed entry point, generates on the tiny model."""

from __future__ import annotations

import io

from PIL import Image

from dreamtray.plugins import PluginHost
from dreamtray.request import Request
from dreamtray.styles import apply_styles, load_registry


def test_first_party_styles_come_from_the_entry_point(tmp_path):
    registry = load_registry(PluginHost(only=["styles"]), tmp_path)
    assert len(registry) == 33 and registry.problems == []
    assert {style.source for style in registry} == {"plugin:styles"}


def test_every_first_party_style_generates_on_tiny(runner, tiny_folder, tmp_path):
    for style in load_registry(PluginHost(only=["styles"]), tmp_path):
        request = apply_styles(Request(prompt="a lighthouse on a cliff", width=64, height=64, steps=1, seed=1), [style])
        result = runner.generate(request)
        assert result.request.negative_prompt == request.negative_prompt and result.model == "tiny", style.name
        assert Image.open(io.BytesIO(result.images[0])).size == (64, 64), style.name
