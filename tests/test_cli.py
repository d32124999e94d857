"""The `dreamtray` command line, run for real in a private home on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_env import DreamtrayHome
from fixtures_engine import pixels

from dreamtray.engine.settings import COMPILED_STAMP
from dreamtray.images.metadata import read_metadata


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    env = DreamtrayHome.create(tmp_path_factory.mktemp("cli-home"))
    yield env
    env.stop_engine()


def test_generate_writes_pngs_with_progress_and_reports_seeds(home, tmp_path):
    out = tmp_path / "out"
    result = home.run(
        "generate",
        "a red fox",
        "--size",
        "64x64",
        "--seed",
        "5",
        "--count",
        "2",
        "--steps",
        "3",
        "--out",
        str(out),
        check=True,
    )
    lines = result.stdout.splitlines()
    assert [line.rsplit("(", 1)[1] for line in lines] == ["seed 5)", "seed 6)"]
    saved = [Path(line.split("  (")[0]) for line in lines]
    assert all(path.parent == home.gallery and path.exists() for path in saved)
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in saved)
    assert "6/6" in result.stderr, "one progress bar on stderr over both images"
    parameters = read_metadata(saved[1]).parameters
    assert (parameters.seed, parameters.steps, parameters.width, parameters.model) == (6, 3, 64, "tiny")


def test_same_seed_same_pixels_through_the_cli(home):
    first = json.loads(home.run("generate", "a heron", "--size", "64x64", "--seed", "9", "--json", check=True).stdout)
    again = json.loads(home.run("generate", "a heron", "--size", "64x64", "--seed", "9", "--json", check=True).stdout)
    assert pixels(Path(first["images"][0]).read_bytes()) == pixels(Path(again["images"][0]).read_bytes())


def test_generate_writes_previews_while_the_image_forms(home, tmp_path):
    from PIL import Image

    preview = tmp_path / "preview.png"
    args = ("generate", "a heron", "--size", "64x64", "--seed", "9", "--steps", "3", "--quality", "best", "--json")
    made = json.loads(home.run(*args, "--preview", str(preview), check=True).stdout)
    assert made["request"]["quality"] == "best" and made["request"]["preview_every"] == 1
    with Image.open(preview) as image:
        assert (image.format, image.size) == ("PNG", (64, 64))


def test_without_a_seed_the_seed_is_reported_and_from_reproduces(home):
    made = json.loads(home.run("generate", "an owl", "--size", "64x64", "--json", check=True).stdout)
    seed = made["seeds"][0]
    assert isinstance(seed, int) and made["request"]["seed"] == seed
    again = json.loads(home.run("generate", "--from", made["images"][0], "--json", check=True).stdout)
    assert again["seeds"] == [seed]
    assert pixels(Path(again["images"][0]).read_bytes()) == pixels(Path(made["images"][0]).read_bytes())


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["generate", "   "], 2, "the prompt is empty"),
        (["generate", "x", "--size", "big"], 2, "is not WIDTHxHEIGHT"),
        (["generate", "x", "--size", "\u0663\u0660\u0660x\u0663\u0660\u0660"], 2, "is not WIDTHxHEIGHT"),
        (["generate", "x", "--size", "512x512\u00b2"], 2, "is not WIDTHxHEIGHT"),
        (["generate", "x", "--steps", "0"], 2, "steps"),
        (["generate"], 2, "Give a PROMPT"),
        (["generate", "x", "--model", "no-such-model"], 1, "Unknown model 'no-such-model'"),
        (["generate", "x", "--model", "sd-turbo"], 1, "--model tiny"),
        (["generate", "x", "--action", "nothing"], 1, "No action called 'nothing'"),
    ],
)
def test_bad_input_is_a_clear_error(home, args, code, message):
    result = home.run(*args)
    assert result.returncode == code, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_pickle_checkpoint_refused_with_the_way_out(home, tmp_path):
    checkpoint = tmp_path / "old.ckpt"
    checkpoint.write_bytes(b"\x80\x04K\x01.")
    result = home.run("generate", "x", "--model", str(checkpoint))
    assert result.returncode == 1 and "engine.allow_pickle" in result.stderr


def test_doctor_reports_the_machine_and_the_plan_for_each_model(home):
    text = home.run("doctor", check=True).stdout
    assert "CPU:" in text and "cores" in text and "no CUDA device" in text
    assert "sd-turbo" in text and "cpu on cpu in float32" in text
    report = json.loads(home.run("doctor", "--json", check=True).stdout)
    assert report["gpus"] == [] and report["cpu_cores"] >= 1 and report["ram_gb"] > 0
    assert report["auto_model"] == "sdxs", "SDXS is the default on a CPU (docs/models.md)"
    assert report["plans"]["tiny"]["policy"] == "cpu"
    assert report["openvino"] and report["plans"]["tiny"]["quality"] == "fast", "a CPU with OpenVINO: fast"
    assert "quality fast, fast on openvino" in text
    cache = report["openvino_cache"]  # earlier tests of this home may have left compiled copies: count them here
    shapes = {stamp.parent for stamp in Path(cache["path"]).rglob(COMPILED_STAMP)}
    assert cache["compiled_shapes"] == len(shapes)
    assert f"in {cache['path']} (compiled copies " in text and f" for {len(shapes)} module shapes)" in text


def test_engine_status_unload_and_stop(home):
    home.run("generate", "x", "--size", "64x64", check=True)
    status = json.loads(home.run("engine", "status", check=True).stdout)
    assert status["loaded_model"] == "tiny" and status["worker_pid"]
    assert "memory is free" in home.run("engine", "unload", check=True).stdout
    assert json.loads(home.run("engine", "status", check=True).stdout)["worker_pid"] is None
    assert "stopped" in home.run("engine", "stop", check=True).stdout
    assert "not running" in home.run("engine", "status", check=True).stdout


def test_the_client_and_the_cli_import_no_torch():
    import subprocess
    import sys

    code = "import sys, dreamtray.engine.client, dreamtray.cli, dreamtray.generation; print(sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
