"""Series without the engine: seed policy, styled requests, manifest, saving with metadata, contact sheet."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from dreamtray.images.gallery import slugify
from dreamtray.images.lineage import image_texts
from dreamtray.images.metadata import PARAMETERS_KEY, REQUEST_KEY
from dreamtray.images.series import (
    CONTACT_SHEET_NAME,
    GAP,
    Manifest,
    SeriesError,
    Settings,
    add_image,
    load_manifest,
    new_manifest,
    save_contact_sheet,
    save_manifest,
    series_folder,
)
from dreamtray.request import MAX_SEED, LoRA, Request, Result
from dreamtray.styles import Style

INK = Style(name="Ink", prompt="ink sketch of {prompt}", negative_prompt="color", pack="Mine", source="file:x.toml")


def png(color: tuple[int, int, int], size=(80, 64)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def result_for(request: Request, color, size=(80, 64)) -> Result:
    """What the engine returns: the settled request (size, steps, model filled in) and one PNG."""
    settled = request.model_copy(
        update={"width": size[0], "height": size[1], "steps": 2, "guidance": 0.0, "model": "tiny"}
    )
    return Result(request=settled, images=[png(color, size)], seeds=[request.seed], model="tiny", sampler="Euler")


def test_image_i_uses_base_plus_i_and_wraps():
    manifest = Manifest(count=3, base_seed=MAX_SEED - 1)
    assert [manifest.seed_for(i) for i in range(3)] == [MAX_SEED - 1, MAX_SEED, 0]
    assert [manifest.request_for("fox", i).seed for i in range(3)] == [MAX_SEED - 1, MAX_SEED, 0]


def test_base_seed_comes_from_option_then_style_then_random():
    pinned = Style(name="Pinned", seed=777)
    assert new_manifest(2, [pinned], Settings(), seed=5).base_seed == 5
    assert new_manifest(2, [INK, pinned], Settings(), seed=None).base_seed == 777
    seeds = {new_manifest(2, [INK], Settings(), seed=None).base_seed for _ in range(5)}
    assert len(seeds) > 1 and all(0 <= seed <= MAX_SEED for seed in seeds)


def test_requests_carry_styles_and_settings():
    settings = Settings(
        negative_prompt="blurry",
        width=128,
        height=96,
        steps=3,
        model="tiny",
        loras=(LoRA(source="me/l.safetensors", scale=0.5),),
    )
    manifest = new_manifest(2, [INK], settings, seed=10)
    request = manifest.request_for("a red fox", 1)
    assert request.prompt == "ink sketch of a red fox"
    assert request.negative_prompt == "blurry, color"
    assert (request.width, request.height, request.steps, request.model, request.seed) == (128, 96, 3, "tiny", 11)
    assert request.loras == (LoRA(source="me/l.safetensors", scale=0.5),)
    assert request.styles == ("Ink",)


def test_pin_records_what_the_engine_used():
    manifest = new_manifest(2, [INK], Settings(), seed=10)
    first = manifest.request_for("fox", 0)
    result = result_for(first, (255, 0, 0), size=(72, 96))
    manifest.pin(result.request, result)
    assert manifest.settings == Settings(width=72, height=96, steps=2, guidance=0.0, sampler="Euler", model="tiny")
    later = manifest.request_for("fox in winter", 1)
    assert (later.width, later.height, later.steps, later.guidance, later.sampler, later.model) == (
        72,
        96,
        2,
        0.0,
        "Euler",
        "tiny",
    )


def test_saved_images_carry_metadata_and_the_manifest_reloads(tmp_path):
    manifest = new_manifest(2, [INK], Settings(), seed=10)
    for column, color in enumerate([(255, 0, 0), (0, 0, 255)]):
        result = result_for(manifest.request_for("A red fox!", column), color)
        if column == 0:
            manifest.pin(result.request, result)
        add_image(manifest, tmp_path, "A red fox!", 0, column, result)
    path = save_manifest(manifest, tmp_path)
    assert [image.file for image in manifest.images] == ["01-a-red-fox.png", "02-a-red-fox.png"]

    chunks = image_texts((tmp_path / "02-a-red-fox.png").read_bytes())
    parameters = chunks[PARAMETERS_KEY]
    assert parameters.startswith("ink sketch of A red fox!\nNegative prompt: color\nSteps: 2, Sampler: Euler")
    assert "Seed: 11, Size: 80x64, Model: tiny" in parameters
    assert json.loads(chunks[REQUEST_KEY])["seed"] == 11

    loaded, folder = load_manifest(tmp_path)
    assert folder == tmp_path and loaded == manifest
    assert load_manifest(path)[0].styles == (INK,)
    assert loaded.images[1].request.seed == 11 and loaded.images[1].prompt == "A red fox!"


def test_contact_sheet_has_one_row_per_prompt(tmp_path):
    manifest = new_manifest(3, [], Settings(), seed=1)
    colors = [[(255, 0, 0), (0, 255, 0), (0, 0, 255)], [(255, 255, 0), (0, 255, 255), (255, 0, 255)]]
    for row, row_colors in enumerate(colors):
        for column, color in enumerate(row_colors):
            result = result_for(manifest.request_for("x", column), color)
            add_image(manifest, tmp_path, f"row {row}", row, column, result)
    sheet = Image.open(save_contact_sheet(manifest, tmp_path))
    assert sheet.size == (3 * (80 + GAP) + GAP, 2 * (64 + GAP) + GAP)
    for row, row_colors in enumerate(colors):
        for column, color in enumerate(row_colors):
            centre = (GAP + column * (80 + GAP) + 40, GAP + row * (64 + GAP) + 32)
            assert sheet.getpixel(centre) == color
    assert sheet.getpixel((GAP // 2, GAP // 2)) == (24, 24, 24)
    assert (tmp_path / CONTACT_SHEET_NAME).exists()


def test_contact_sheet_shrinks_big_images(tmp_path):
    manifest = new_manifest(1, [], Settings(), seed=1)
    add_image(manifest, tmp_path, "big", 0, 0, result_for(manifest.request_for("big", 0), (9, 9, 9), size=(1024, 512)))
    sheet = Image.open(save_contact_sheet(manifest, tmp_path))
    assert sheet.size == (256 + 2 * GAP, 128 + 2 * GAP)


def test_contact_sheet_of_an_empty_series_is_refused(tmp_path):
    with pytest.raises(SeriesError, match="no images"):
        save_contact_sheet(new_manifest(1, [], Settings(), seed=1), tmp_path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{not json", "is not a dreamtray series manifest"),
        ('{"format": "other/9", "count": 1, "base_seed": 1}', "unknown series format 'other/9'"),
        ('{"count": 0, "base_seed": 1}', "count"),
    ],
)
def test_broken_manifest_is_reported(tmp_path, text, expected):
    (tmp_path / "series.json").write_text(text)
    with pytest.raises(SeriesError, match=expected):
        load_manifest(tmp_path)


def test_missing_manifest_is_reported(tmp_path):
    with pytest.raises(SeriesError, match="cannot read the series manifest"):
        load_manifest(tmp_path)


def test_folder_names_are_unique_and_readable(tmp_path):
    first = series_folder(tmp_path, "A red fox, in the snow")
    first.mkdir()
    second = series_folder(tmp_path, "A red fox, in the snow")
    assert first.name.endswith("-a-red-fox-in-the-snow") and second.name == first.name + "-2"
    assert series_folder(tmp_path, "雪の中の赤い狐").name.endswith("-雪の中の赤い狐"), "the gallery's one slug rule"
    assert slugify("!!!") == "image"
