"""Files dreamtray writes for itself (the engine's token, its lock, state and log; the tray's lock and socket) in
a read-only folder: a message naming the folder, never a traceback. Real read-only mounts (tests/hostile_fs.py)."""

from __future__ import annotations

import sys

import pytest
from cli_env import DreamtrayHome
from hostile_fs import run_on_hostile_folder


@pytest.fixture
def home(tmp_path):
    env = DreamtrayHome.create(tmp_path, plugins="clipboard")
    yield env
    env.stop_engine()


@pytest.mark.parametrize(("folder", "file"), [("data", "engine-token"), ("state", "engine.lock")])
@pytest.mark.parametrize("kind", ["readonly", "full"])
def test_generate_names_the_folder_it_cannot_write(home, folder, file, kind):
    target = home.root / folder / "dreamtray"
    result = run_on_hostile_folder(
        kind,
        target,
        [sys.executable, "-m", "dreamtray", "generate", "a fox", "--size", "64x64", "--steps", "1"],
        env=home.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    if kind == "readonly":
        assert f"dreamtray cannot write {target / file} (Read-only file system)" in result.stderr
        assert f"the folder {target} must be writable by you" in result.stderr
    elif folder == "data":
        assert f"dreamtray cannot write {target / file} (No space left on device)" in result.stderr
    else:  # the lock fits, the engine's state file does not: its log (in that folder) says so
        assert f"The engine service exited at start (code 1); see {target / 'engine.log'}" in result.stderr


def test_run_names_the_folder_of_its_lock(home):
    target = home.root / "state" / "dreamtray"
    env = {key: value for key, value in home.env.items() if key != "XDG_RUNTIME_DIR"}
    command = [sys.executable, "-m", "dreamtray", "run"]
    result = run_on_hostile_folder("readonly", target, command, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"dreamtray cannot write {target} (Read-only file system): the folder {target} must be" in result.stderr
