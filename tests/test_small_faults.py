"""Small faults, each ending in a clear message instead of a traceback: an unwritable config folder, a broken
config file, an init image that is no image, damaged model folders and weights, sizes that were changed, a
failing clipboard action. Real files, mounts and processes; the tiny model on the real engine."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from cli_env import DreamtrayHome
from hostile_fs import run_on_hostile_folder

from dreamtray.engine.client import EngineError, JobFailed
from dreamtray.request import Request

SMALL = {"width": 64, "height": 64, "steps": 1}


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    env = DreamtrayHome.create(tmp_path_factory.mktemp("small-faults"), plugins="clipboard")
    yield env
    env.stop_engine()


def test_config_set_in_a_read_only_config_folder_says_so(home):
    folder = home.root / "config" / "dreamtray"
    result = run_on_hostile_folder(
        "readonly",
        folder,
        [sys.executable, "-m", "dreamtray", "config", "set", "engine.stall_seconds", "60"],
        env=home.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"{folder / 'config.toml'}: cannot be written (Read-only file system); nothing was changed" in result.stderr
    assert "DREAMTRAY_CONFIG" in result.stderr


def test_generate_reports_a_broken_config_file_and_goes_on(home):
    config = home.root / "config" / "dreamtray" / "config.toml"
    saved = config.read_text()
    config.write_text('model = "tiny"\nstyle = [unclosed\n')
    try:
        result = home.run("generate", "a fox", "--model", "tiny", "--size", "64x64", "--steps", "1")
    finally:
        config.write_text(saved)
    assert result.returncode == 0, result.stderr
    assert f"warning: {config}: not valid TOML" in result.stderr and "using the defaults" in result.stderr


def test_an_init_image_that_is_no_image_is_named_as_such(engine):
    job = engine.submit(Request(prompt="x", init_image=b"GIF89a but not really", **SMALL))
    with pytest.raises(JobFailed, match=r"The init image: not an image \(21 bytes\); give a PNG, JPEG or WebP file"):
        job.result()


def test_a_model_folder_with_a_broken_index_names_the_file(engine, tmp_path, tiny_folder):
    folder = tmp_path / "damaged"
    shutil.copytree(tiny_folder, folder)
    (folder / "model_index.json").write_text("{ not json")
    with pytest.raises(EngineError, match=rf"{folder / 'model_index.json'} cannot be read \(not a JSON object"):
        engine.submit(Request(prompt="x", model=str(folder), **SMALL)).result()


def test_cut_short_weights_in_a_folder_are_reported(engine, tmp_path, tiny_folder):
    folder = tmp_path / "cut"
    shutil.copytree(tiny_folder, folder)
    weights = next((folder / "unet").glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(JobFailed, match="damaged or incomplete") as failed:
        engine.submit(Request(prompt="x", model=str(folder), **SMALL)).result()
    assert str(weights) in str(failed.value)


@pytest.mark.parametrize("size", [0, 100])
def test_empty_or_truncated_safetensors_file_is_reported(engine, tmp_path, tiny_folder, size):
    weights = next((tiny_folder / "unet").glob("*.safetensors")).read_bytes()
    checkpoint = tmp_path / "model.safetensors"
    checkpoint.write_bytes(weights[:size])
    with pytest.raises(JobFailed, match=r"is not a readable \.safetensors file .*empty, cut short"):
        engine.submit(Request(prompt="x", model=str(checkpoint), **SMALL)).result()


def test_changed_sizes_are_reported_in_the_result(engine):
    odd = engine.submit(Request(prompt="x", width=65, height=65, steps=1)).result()
    assert odd.request.width == 64
    assert "The size 65x65 was changed to 64x64: this model takes sides in multiples of 8." in odd.warnings
    huge = engine.submit(Request(prompt="x", width=4096, height=4096, steps=1)).result()
    assert any(w.startswith("The size 4096x4096 was changed to") and "at most" in w for w in huge.warnings)
    exact = engine.submit(Request(prompt="x", **SMALL)).result()
    assert not any("size" in warning for warning in exact.warnings)


def test_a_failing_clipboard_action_is_one_line_and_the_image_is_kept(home):
    env = {key: value for key, value in home.env.items() if key not in ("DISPLAY", "WAYLAND_DISPLAY")}
    plain = DreamtrayHome(home.root, env)
    result = plain.run(
        "generate", "a fox", "--model", "tiny", "--size", "64x64", "--steps", "1", "--action", "clipboard", "--json"
    )
    assert result.returncode == 3 and "Traceback" not in result.stderr, result.stderr
    image = Path(json.loads(result.stdout)["images"][0])
    assert image.exists() and f"the image is saved at {image}" in result.stderr
