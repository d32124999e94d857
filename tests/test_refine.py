"""Refine without the engine: the request built from an original and its metadata, and the lineage chunk."""

from __future__ import annotations

import hashlib
import io
import json

import pytest
from PIL import Image, PngImagePlugin

from dreamtray.images.lineage import LINEAGE_KEY, MAX_ANCESTORS, image_texts, lineage_of, with_lineage
from dreamtray.images.metadata import PARAMETERS_KEY, add_metadata
from dreamtray.images.refine import output_path, refine_request
from dreamtray.request import LoRA, Request
from dreamtray.styles import Style


def png(size=(96, 64), texts: dict[str, str] | None = None, fmt: str = "PNG") -> bytes:
    info = PngImagePlugin.PngInfo()
    for key, value in (texts or {}).items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 120, 200)).save(buffer, format=fmt, **({"pnginfo": info} if fmt == "PNG" else {}))
    return buffer.getvalue()


def ours(prompt: str = "a red fox", **fields) -> bytes:
    request = Request(
        prompt=prompt,
        seed=5,
        steps=3,
        guidance=2.5,
        model="tiny",
        negative_prompt="blurry",
        loras=(LoRA(source="me/l.safetensors", scale=0.5),),
        styles=("Ink",),
        **fields,
    )
    return add_metadata(png(), request, model="tiny", sampler="Euler")


def test_a_dreamtray_original_hands_over_its_settings():
    request = refine_request(ours(), "snow falling", strength=0.4, seed=9)
    assert request.prompt == "snow falling, a red fox"
    assert (request.negative_prompt, request.model, request.steps, request.guidance) == ("blurry", "tiny", 3, 2.5)
    assert request.loras == (LoRA(source="me/l.safetensors", scale=0.5),)
    assert request.styles == (), "the original's styled prompt is carried, not its styles again"
    assert (request.width, request.height, request.strength, request.seed) == (96, 64, 0.4, 9)
    assert Image.open(io.BytesIO(request.init_image)).size == (96, 64)


def test_explicit_settings_and_styles_win():
    ink = Style(name="Sketch", prompt="pencil sketch of {prompt}", negative_prompt="color", steps=8)
    request = refine_request(ours(), "at night", strength=0.5, styles=[ink], model="sd-turbo", steps=2)
    assert request.prompt == "pencil sketch of at night, a red fox"
    assert (request.model, request.steps, request.negative_prompt) == ("sd-turbo", 2, "blurry, color")
    assert request.styles == ("Sketch",) and request.unstyled.prompt == "at night, a red fox"


def test_only_change_drops_the_original_prompt():
    assert refine_request(ours(), "a lantern", strength=0.5, only_change=True).prompt == "a lantern"


def test_an_a1111_original_gives_its_prompt_and_negative_only():
    text = "a castle\nNegative prompt: fog, people\nSteps: 30, Sampler: DPM++ 2M, CFG scale: 7, Seed: 1, Size: 96x64"
    request = refine_request(png(texts={PARAMETERS_KEY: text}), "in autumn", strength=0.6)
    assert (request.prompt, request.negative_prompt) == ("in autumn, a castle", "fog, people")
    assert (request.model, request.steps, request.sampler, request.seed) == (None, None, None, None)


def test_any_image_without_metadata_uses_the_change_alone():
    request = refine_request(png(fmt="JPEG"), "a blue sky", strength=0.6)
    assert (request.prompt, request.width, request.height) == ("a blue sky", 96, 64)
    assert Image.open(io.BytesIO(request.init_image)).format == "PNG"


def test_a_huge_image_is_scaled_to_what_the_engine_takes():
    request = refine_request(png(size=(5000, 100)), "x", strength=0.6)
    assert (request.width, request.height) == (4096, 82)


def test_not_an_image_is_refused():
    with pytest.raises(ValueError, match=r"not an image \(\d+ bytes\); give a PNG, JPEG or WebP file"):
        refine_request(b"hello", "x", strength=0.6)


def test_lineage_chains_and_replaces_the_earlier_chunk():
    grandparent = ours("first")
    parent = with_lineage(ours("second"), lineage_of(grandparent, "first.png"))
    child = with_lineage(parent, lineage_of(parent, "second.png"))
    chain = json.loads(image_texts(child)[LINEAGE_KEY])
    assert [entry["file"] for entry in chain] == ["second.png", "first.png"]
    assert chain[0]["sha256"] == hashlib.sha256(parent).hexdigest()
    assert chain[0]["parameters"].startswith("second\nNegative prompt: blurry\n")
    assert chain[1]["parameters"].startswith("first\n")
    assert Image.open(io.BytesIO(child)).tobytes() == Image.open(io.BytesIO(parent)).tobytes()


def test_lineage_is_capped():
    image = ours()
    for number in range(MAX_ANCESTORS + 5):
        image = with_lineage(image, lineage_of(image, f"{number}.png"))
    chain = json.loads(image_texts(image)[LINEAGE_KEY])
    assert len(chain) == MAX_ANCESTORS and chain[0]["file"] == f"{MAX_ANCESTORS + 4}.png"


def test_output_path_never_overwrites(tmp_path):
    original = tmp_path / "fox.jpg"
    assert output_path(original) == tmp_path / "fox-refined.png"
    (tmp_path / "fox-refined.png").write_bytes(b"")
    assert output_path(original) == tmp_path / "fox-refined-2.png"
