"""`history`, `show IMAGE` and `config path|show|set`, run through click's test runner."""

from __future__ import annotations

import json
import os
from datetime import datetime

import pytest
import tomllib
from click.testing import CliRunner
from png_samples import a1111_png, comfyui_png, png_bytes

from dreamtray.cli.config import config_group
from dreamtray.cli.gallery import COMMANDS, history, show_image
from dreamtray.images.gallery import Gallery
from dreamtray.request import Request


@pytest.fixture
def setup(tmp_path, monkeypatch):
    """A config file pointing the gallery into tmp_path; returns (config file, gallery folder)."""
    config = tmp_path / "config.toml"
    gallery = tmp_path / "gallery"
    config.write_text(f'# test settings\ngallery = "{gallery}"\n', encoding="utf-8")
    monkeypatch.setenv("DREAMTRAY_CONFIG", str(config))
    return config, gallery


def run(command, *args):
    return CliRunner().invoke(command, list(args))


def fill(gallery_folder, count=3):
    gallery = Gallery(gallery_folder)
    paths = []
    for n in range(count):
        request = Request(prompt=f"picture number {n}, with a comma", negative_prompt="blurry", seed=100 + n, steps=4)
        path = gallery.save(png_bytes(), request, model="tiny", sampler="Euler", when=datetime(2026, 5, 1, 12, 0, n))
        os.utime(path, (1_700_000_000 + n, 1_700_000_000 + n))
        paths.append(path)
    return paths


def test_commands_are_exported_for_the_cli():
    assert [command.name for command in COMMANDS] == ["history", "show"]


def test_history_on_an_empty_gallery(setup):
    _, gallery = setup
    result = run(history)
    assert result.exit_code == 0
    assert result.output.strip() == f"No images yet in {gallery}"


def test_history_lists_newest_first(setup):
    _, gallery = setup
    paths = fill(gallery)
    result = run(history, "--limit", "2")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert str(paths[2]) in lines[0] and str(paths[1]) in lines[3]
    assert lines[1].strip() == "picture number 2, with a comma"
    assert lines[2].strip() == "Seed: 102, Size: 64x48, Model: tiny"
    assert len(lines) == 6


def test_history_json(setup):
    _, gallery = setup
    paths = fill(gallery)
    (gallery / "zzz-broken.png").write_bytes(b"not a png")
    os.utime(gallery / "zzz-broken.png", (1_600_000_000, 1_600_000_000))
    result = run(history, "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [row["file"] for row in rows] == [
        str(paths[2]),
        str(paths[1]),
        str(paths[0]),
        str(gallery / "zzz-broken.png"),
    ]
    assert rows[0]["parameters"]["seed"] == 102
    assert rows[0]["request"]["prompt"] == "picture number 2, with a comma"
    assert rows[0]["settings"]["Size"] == "64x48"
    assert rows[0]["error"] is None
    assert "not a PNG file" in rows[3]["error"]


def test_history_rejects_a_limit_below_one(setup):
    result = run(history, "--limit", "0")
    assert result.exit_code == 2
    assert "--limit" in result.output


def test_show_our_image(setup):
    _, gallery = setup
    path = fill(gallery, 1)[0]
    result = run(show_image, str(path))
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f"{path}: 64x48 PNG, metadata written by dreamtray",
        "Prompt: picture number 0, with a comma",
        "Negative prompt: blurry",
        "Steps: 4",
        "Sampler: Euler",
        "Seed: 100",
        "Size: 64x48",
        "Model: tiny",
    ]
    data = json.loads(run(show_image, str(path), "--json").stdout)
    assert data["source"] == "dreamtray"
    assert data["request"]["seed"] == 100 and data["request"]["init_image_bytes"] == 0
    assert data["parameters"]["negative_prompt"] == "blurry"


def test_show_an_automatic1111_image(tmp_path):
    path = tmp_path / "00042-1234567890.png"
    path.write_bytes(a1111_png())
    result = run(show_image, str(path))
    assert result.exit_code == 0, result.output
    assert f"{path}: 32x48 PNG, metadata written by AUTOMATIC1111" in result.output
    assert "Prompt: masterpiece, a lighthouse at dusk, <lora:film:0.8>" in result.output
    assert "Sampler: DPM++ 2M Karras" in result.output
    assert "Lora hashes: film: 0a1b2c3d" in result.output
    data = json.loads(run(show_image, "--json", str(path)).stdout)
    assert data["request"] is None
    assert data["parameters"]["seed"] == 1234567890
    assert data["settings"]["Model hash"] == "6ce0161689"


def test_show_a_comfyui_image(tmp_path):
    path = tmp_path / "ComfyUI_00001_.png"
    path.write_bytes(comfyui_png())
    result = run(show_image, str(path))
    assert result.exit_code == 0, result.output
    assert "metadata written by ComfyUI" in result.output
    assert "Prompt: a red fox in snow" in result.output
    assert "Negative prompt: blurry, watermark" in result.output
    assert "Seed: 8566257" in result.output


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (png_bytes(), "no generation metadata"),
        (b"GIF89a...", "not a PNG file"),
        (png_bytes()[:-30], "truncated"),
    ],
)
def test_show_reports_unreadable_images_with_exit_code_1(tmp_path, data, message):
    path = tmp_path / "odd.png"
    path.write_bytes(data)
    result = run(show_image, str(path))
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: {path}: ")
    assert message in result.output


def test_show_a_missing_file_is_a_usage_error(tmp_path):
    result = run(show_image, str(tmp_path / "nope.png"))
    assert result.exit_code == 2
    assert "does not exist" in result.output


def test_config_path(setup):
    config, _ = setup
    result = run(config_group, "path")
    assert (result.exit_code, result.output) == (0, f"{config}\n")


def test_config_show_prints_the_effective_settings_and_warnings(setup):
    config, gallery = setup
    config.write_text(config.read_text() + '[engine]\nmemory_policy = "fast"\ndevice = "cpu"\n')
    result = run(config_group, "show")
    assert result.exit_code == 0, result.output
    data = tomllib.loads(result.stdout)
    assert data["gallery"] == str(gallery)
    assert data["engine"]["device"] == "cpu"
    assert data["engine"]["memory_policy"] == "auto"
    assert data["hotkeys"] == {"clipboard": "<ctrl>+<alt>+i", "wallpaper": "<ctrl>+<alt>+w"}, "as the actions suggest"
    assert data["default_action"] == "clipboard"
    assert result.stdout.startswith(f"# {config}\n")
    assert f"warning: {config}: engine.memory_policy = 'fast' is not allowed" in result.stderr


def test_config_set_writes_a_valid_value(setup):
    config, _ = setup
    result = run(config_group, "set", "engine.memory_policy", "cpu")
    assert result.exit_code == 0, result.output
    assert result.output == f"engine.memory_policy = cpu saved in {config}\n"
    text = config.read_text()
    assert text.startswith("# test settings\n")
    assert tomllib.loads(text)["engine"] == {"memory_policy": "cpu"}


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("engine.memory_policy", "fast", "'gpu', 'model_offload', 'sequential_offload' or 'cpu'"),
        ("engine.vae_tiling", "maybe", "'auto', 'always' or 'never'"),
        ("engine.allow_pickle", "perhaps", "use true or false"),
        ("nonsense", "1", "unknown setting; known: model"),
    ],
)
def test_config_set_rejects_a_bad_value_with_exit_code_2(setup, key, value, expected):
    config, _ = setup
    before = config.read_bytes()
    result = run(config_group, "set", key, value)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: {key}: ")
    assert expected in result.stderr
    assert config.read_bytes() == before


def test_config_set_on_a_malformed_file_names_the_line(setup):
    config, _ = setup
    config.write_text("model = 'a'\nmodel = 'b'\n")
    result = run(config_group, "set", "model", "sd-turbo")
    assert result.exit_code == 1
    assert f"{config}: not valid TOML" in result.output and "line 2" in result.output
    assert config.read_text() == "model = 'a'\nmodel = 'b'\n"
