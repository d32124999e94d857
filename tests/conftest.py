"""Shared fixtures: a private X session (Xvfb, D-Bus, dunst) and private user folders for each test."""

from __future__ import annotations

import os

# No test may reach the Hugging Face hub: the library reads this once, when it is first imported.
os.environ["HF_HUB_OFFLINE"] = "1"

import pytest  # noqa: E402
from xsession import XSession  # noqa: E402

pytest_plugins = ["fixtures_engine"]  # the tiny model, an in-process runner, a running engine service


@pytest.fixture(scope="session")
def xsession():
    """One X display with a session bus and dunst for the whole run, exported to this process's environment.

    Fails (never skips) when Xvfb, dbus or dunst are missing.
    """
    session = XSession().start()
    saved = dict(os.environ)
    os.environ.pop("WAYLAND_DISPLAY", None)
    os.environ.pop("SWAYSOCK", None)
    os.environ.update(session.env)
    try:
        yield session
    finally:
        os.environ.clear()
        os.environ.update(saved)
        session.close()


@pytest.fixture(scope="module")
def tray(xsession):
    """The session with trayer running as the system tray, for one test module (then its panel goes)."""
    trayer = xsession.start_tray()
    yield xsession
    xsession.stop_tray(trayer)


@pytest.fixture
def notifications(tray):
    """Read what dunst shows from now on (older notifications are closed and skipped)."""
    tray.run(["dunstctl", "close-all"], check=True)
    seen = {n.get("id") for n in tray.notifications()}
    return lambda: [n for n in tray.notifications() if n.get("id") not in seen]


@pytest.fixture
def fresh_home(tmp_path, monkeypatch):
    """A fresh HOME with its XDG data and config folders inside it (`data/`, `config/`)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return tmp_path


@pytest.fixture
def user_dirs(tmp_path, monkeypatch):
    """Fresh HOME and XDG folders for one test (config, data, cache, state; gsettings keyfile lives in config)."""
    dirs = {
        "HOME": tmp_path / "home",
        "XDG_CONFIG_HOME": tmp_path / "home/.config",
        "XDG_DATA_HOME": tmp_path / "home/.local/share",
        "XDG_CACHE_HOME": tmp_path / "home/.cache",
        "XDG_STATE_HOME": tmp_path / "home/.local/state",
    }
    for name, path in dirs.items():
        path.mkdir(parents=True, exist_ok=True)
        monkeypatch.setenv(name, str(path))
    return dirs


@pytest.fixture(scope="session")
def site(tmp_path_factory):
    """The test plugin distributions (tests/plugins), pip-installed once into a folder to put on PYTHONPATH."""
    from cli_env import install_test_plugins

    return install_test_plugins(tmp_path_factory.mktemp("plugin-site"))


@pytest.fixture
def runtime(tmp_path, monkeypatch):
    """A private runtime folder (the tray's lock and control socket), state and data folders."""
    folder = tmp_path / "run"
    folder.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(folder))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    return folder
