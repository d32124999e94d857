"""Which display server is in use, told from the session and not from a leftover variable: a stale
`WAYLAND_DISPLAY` (its compositor gone) on an X11 session must leave every desktop tool on X11. Checked against
real sockets, and end to end with the tray's hotkey under Xvfb."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from tray_process import TrayProcess, newest, press, read_clipboard_png, serve_primary, tray_home
from xsession import wait_until

from dreamtray.display import display_server
from dreamtray.images.metadata import read_metadata
from dreamtray_plugins.wallpaper.setters import pick_setter


def stale_socket(folder: Path, name: str = "wayland-0") -> Path:
    """A socket file no one listens on any more, as a compositor that died leaves behind."""
    path = folder / name
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(path))
    return path


@pytest.fixture
def live_socket(tmp_path):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(tmp_path / "wayland-1"))
        sock.listen()
        yield tmp_path / "wayland-1"


def test_a_live_compositor_is_wayland_even_with_xwayland_display(live_socket):
    env = {"WAYLAND_DISPLAY": "wayland-1", "XDG_RUNTIME_DIR": str(live_socket.parent), "DISPLAY": ":0"}
    assert display_server(env) == "wayland"
    assert display_server({**env, "WAYLAND_DISPLAY": str(live_socket), "XDG_RUNTIME_DIR": ""}) == "wayland"


def test_a_stale_or_missing_wayland_socket_with_display_is_x11(tmp_path):
    stale_socket(tmp_path)
    for name in ("wayland-0", "wayland-9"):  # a dead socket file, and no file at all
        assert display_server({"WAYLAND_DISPLAY": name, "XDG_RUNTIME_DIR": str(tmp_path), "DISPLAY": ":0"}) == "x11"


def test_the_declared_session_type_wins(live_socket):
    env = {"WAYLAND_DISPLAY": "wayland-1", "XDG_RUNTIME_DIR": str(live_socket.parent), "DISPLAY": ":0"}
    assert display_server({**env, "XDG_SESSION_TYPE": "x11"}) == "x11"
    assert display_server({"XDG_SESSION_TYPE": "wayland", "WAYLAND_DISPLAY": "wayland-5", "DISPLAY": ":0"}) == "wayland"
    assert display_server({"WAYLAND_DISPLAY": "wayland-5"}) == "wayland"  # nothing else to go by
    assert display_server({"XDG_SESSION_TYPE": "tty"}) is None


def test_the_wallpaper_setter_follows_the_session_in_use(tmp_path):
    stale_socket(tmp_path)
    env = {"WAYLAND_DISPLAY": "wayland-0", "XDG_RUNTIME_DIR": str(tmp_path), "DISPLAY": ":0"}
    assert pick_setter(env, "linux").name == "xwallpaper"
    assert pick_setter({**env, "SWAYSOCK": str(tmp_path / "gone.sock")}, "linux").name == "xwallpaper"


@pytest.fixture(scope="module")
def stale_host(tray, tmp_path_factory):
    """A tray on the X11 test session whose environment still names a dead Wayland compositor."""
    root = tmp_path_factory.mktemp("stale-wayland")
    home = tray_home(root, tray, XDG_SESSION_TYPE="")
    stale_socket(Path(home.env["XDG_RUNTIME_DIR"]))
    home.env["WAYLAND_DISPLAY"] = "wayland-0"
    process = TrayProcess(home)
    process.wait_docked()
    process.wait_started()
    yield process
    process.stop()
    home.stop_engine()
    tray.run(["dunstctl", "close-all"], check=True)  # its notifications must not cover later tests' screens


def test_with_a_stale_wayland_display_the_hotkey_reads_primary_and_copies_through_x11(stale_host, tray):
    assert stale_host.status()["hotkeys_listening"]
    serve_primary(tray, "a red kite over the dunes")
    before = newest(stale_host.home.gallery)
    press(tray, "ctrl+alt+i")
    made = wait_until(lambda: [p for p in newest(stale_host.home.gallery) if p not in before], 180, "a new image", 0.1)
    stale_host.wait_idle()
    assert read_metadata(made[-1]).parameters.prompt == "a red kite over the dunes"
    assert wait_until(lambda: read_clipboard_png(tray) == made[-1].read_bytes(), 10, "the PNG on the X11 clipboard")
    log = stale_host.log_text()
    assert "wl-paste" not in log and "Wayland" not in log, log
