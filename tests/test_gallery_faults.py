"""A gallery that cannot be written never loses the image: `dreamtray generate` keeps it in a fallback
folder, says where and why, and the action still runs. Real file systems: a read-only and a full tmpfs
mounted over the gallery, and a file where the gallery folder should be."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from cli_env import DreamtrayHome, install_test_plugins
from hostile_fs import run_on_hostile_folder
from PIL import Image

from dreamtray.images.metadata import read_metadata


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    root = tmp_path_factory.mktemp("gallery-faults")
    site = install_test_plugins(root / "site")
    env = DreamtrayHome.create(root, plugins="hello", PYTHONPATH=str(site), HELLO_LOG=str(root / "hello.log"))
    yield env
    env.stop_engine()


def generate_args(seed: int) -> list[str]:
    return ["generate", "a kept fox", "--size", "64x64", "--seed", str(seed), "--action", "record", "--json"]


def check_kept(home: DreamtrayHome, result, seed: int, reason: str) -> None:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    path = Path(json.loads(result.stdout)["images"][0])
    assert path.parent == home.root / "data" / "dreamtray" / "unsaved", path
    assert Image.open(path).size == (64, 64) and read_metadata(path).parameters.seed == seed
    assert "The gallery failed (cannot save" in result.stderr and f"in {home.gallery}: " in result.stderr
    assert reason in result.stderr and f"kept at {path}" in result.stderr
    recorded = [json.loads(line) for line in Path(home.env["HELLO_LOG"]).read_text().splitlines()]
    assert {"action": "record", "path": str(path), "seed": seed} in recorded, "the action ran on the kept image"


@pytest.mark.parametrize(
    ("kind", "seed", "reason"), [("readonly", 11, "Read-only file system"), ("full", 12, "No space left on device")]
)
def test_a_read_only_or_full_gallery_keeps_the_image_elsewhere(home, kind, seed, reason):
    result = run_on_hostile_folder(
        kind,
        home.gallery,
        [sys.executable, "-m", "dreamtray", *generate_args(seed)],
        env=home.env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    check_kept(home, result, seed, reason)


def test_a_file_in_place_of_the_gallery_keeps_the_image_elsewhere(home):
    home.gallery.parent.mkdir(parents=True, exist_ok=True)
    if home.gallery.is_dir():
        home.gallery.rmdir()
    home.gallery.write_text("not a folder")
    try:
        result = home.run(*generate_args(13))
    finally:
        home.gallery.unlink()
    check_kept(home, result, 13, "File exists")


def test_a_refined_image_that_cannot_go_beside_its_original_is_kept_elsewhere(home, tmp_path):
    made = home.run("generate", "a kept fox", "--size", "64x64", "--steps", "1", "--seed", "14", "--json", check=True)
    original = Path(json.loads(made.stdout)["images"][0])
    folder = tmp_path / "read-only"
    result = run_on_hostile_folder(
        "readonly",
        folder,
        [sys.executable, "-m", "dreamtray", "refine", str(folder / original.name), "in the snow", "--steps", "1"],
        keep=(original,),
        env=home.env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert "could not be written (Read-only file system); the image is kept at" in result.stderr
    kept = home.root / "data" / "dreamtray" / "unsaved" / f"{original.stem}-refined.png"
    assert kept.exists() and str(kept) in result.stdout + result.stderr
