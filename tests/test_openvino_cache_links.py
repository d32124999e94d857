"""Symbolic links in the OpenVINO cache: never written through, removed for real (the link, never its target),
and the model back on the fast path in the same run. Real conversions of the tiny model, int8 off (quicker)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fixtures_engine import pixels

from dreamtray.engine.server.hardware import Machine
from dreamtray.engine.server.openvino_runtime import remove_entry
from dreamtray.engine.server.runner import Runner
from dreamtray.engine.settings import Overrides
from dreamtray.request import Request

OPENVINO_CPU = Machine(cpu_cores=2, ram_gb=24, openvino=True)
FAST = Request(prompt="a red fox", seed=5, steps=2, width=64, height=64, quality="fast")
BF16 = Overrides(int8=False)


def generate(cache: Path) -> tuple[object, list[str]]:
    events: list[dict] = []
    result = Runner(cache_dir=cache, default_model="tiny", machine=OPENVINO_CPU, overrides=BF16).generate(
        FAST, events.append
    )
    return result, [e.get("message", "") for e in events]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> tuple[Path, bytes]:
    """A cache where the tiny model was converted once, and the image it made on OpenVINO."""
    cache = tmp_path_factory.mktemp("openvino-links")
    result, _ = generate(cache)
    assert not result.warnings, result.warnings
    return cache, result.images[0]


@pytest.fixture
def cache(pristine, tmp_path) -> Path:
    copy = tmp_path / "cache"
    shutil.copytree(pristine[0], copy, symlinks=True)
    return copy


def model_folder(cache: Path) -> Path:
    (folder,) = (cache / "openvino").iterdir()
    return folder


def files_under(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_symlinked_compiled_folder_gets_nothing_written_where_it_points(cache, pristine, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    compiled = model_folder(cache) / "unet" / "compiled"
    shutil.rmtree(compiled, ignore_errors=True)
    compiled.symlink_to(outside, target_is_directory=True)
    result, _ = generate(cache)
    assert list(outside.iterdir()) == []
    assert compiled.is_dir() and not compiled.is_symlink() and any(compiled.iterdir())  # blobs went here
    assert not result.warnings, result.warnings
    assert pixels(result.images[0]) == pixels(pristine[1])  # still the OpenVINO image


@pytest.mark.parametrize("broken", [False, True], ids=["intact target", "broken target"])
def test_a_symlinked_entry_is_removed_for_real_and_converted_again_in_the_same_run(cache, pristine, tmp_path, broken):
    """Before: rmtree refused the link silently, every run said 'removed it' and stayed on torch."""
    outside = tmp_path / "outside-unet"
    entry = model_folder(cache) / "unet"
    shutil.move(entry, outside)
    if broken:
        (outside / "model.xml").write_text("not an IR")
    entry.symlink_to(outside, target_is_directory=True)
    before = files_under(outside)
    result, messages = generate(cache)
    assert "Converting the UNet of tiny to OpenVINO (its cache is out of date)" in messages, messages
    assert not result.warnings, result.warnings
    assert pixels(result.images[0]) == pixels(pristine[1])
    assert entry.is_dir() and not entry.is_symlink()
    assert files_under(outside) == before  # the link went, not what it pointed to
    again, messages = generate(cache)
    assert not [m for m in messages if m.startswith("Converting")] and not again.warnings


def test_a_symlinked_lock_file_is_not_truncated(cache, tmp_path):
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me\n")
    lock = model_folder(cache) / "unet.lock"
    lock.unlink(missing_ok=True)
    lock.symlink_to(precious)
    (model_folder(cache) / "unet" / "key.json").write_text("{}")  # stale: converted again, under the lock
    result, _ = generate(cache)
    assert not result.warnings
    assert precious.read_text() == "keep me\n"


def test_removing_an_entry_removes_a_link_and_never_its_target(tmp_path):
    target = tmp_path / "target"
    target.mkdir()
    (target / "file").write_text("x")
    link = tmp_path / "entry"
    link.symlink_to(target, target_is_directory=True)
    assert remove_entry(link) is None
    assert not link.exists() and not link.is_symlink() and (target / "file").read_text() == "x"
    assert remove_entry(target) is None and not target.exists()
    assert remove_entry(tmp_path / "never-there") is None
