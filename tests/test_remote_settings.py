"""The remote back ends' numeric settings ([engine.backends.NAME]): each has a range, and a value outside it (or
not a number) is refused naming the key, the range and the default."""

from __future__ import annotations

import pytest

from dreamtray.api import EngineError
from dreamtray_plugins.remote.a1111 import A1111
from dreamtray_plugins.remote.openai import OpenAIImages
from dreamtray_plugins.remote.service import RemoteService

BAD = [3000000000, -1, "30", True, float("nan"), float("inf")]


@pytest.mark.parametrize("value", BAD)
@pytest.mark.parametrize("key", ["default_steps", "default_guidance", "native_size", "progress_interval", "timeout"])
def test_a1111_numbers_have_ranges(key, value):
    message = f"^{key} = .* is not allowed: use a (whole )?number from .* to .* \\(the default is"
    with pytest.raises(EngineError, match=message):
        A1111({"url": "http://127.0.0.1:9", key: value})


@pytest.mark.parametrize("value", BAD)
def test_openai_timeout_has_a_range(monkeypatch, value):
    monkeypatch.setenv("OPENAI_API_KEY", "k" * 40)
    with pytest.raises(EngineError, match="^timeout = .* is not allowed: use a number from 0.1 to 86400"):
        OpenAIImages({"url": "http://127.0.0.1:9", "timeout": value})


@pytest.mark.parametrize("value", BAD)
def test_remote_service_timeout_has_a_range(tmp_path, value):
    token = tmp_path / "token"
    token.write_text("t" * 40)
    with pytest.raises(EngineError, match="^timeout = .* is not allowed"):
        RemoteService.from_settings({"url": "http://127.0.0.1:9", "token_file": str(token), "timeout": value})
