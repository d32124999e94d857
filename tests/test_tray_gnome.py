"""A tray host on a desktop that says it is GNOME, with a malformed hotkey in its config and third-party
plugins (one adds a menu item, two are broken): the wallpaper lands in GNOME's gsettings keys (keyfile back
end), the bad hotkey is reported by name, the plugin's item works from the real menu, SIGTERM quits cleanly."""

from __future__ import annotations

import ast
import json
import signal
import subprocess

import pytest
from cli_env import install_test_plugins
from tray_process import PLUGINS, TrayProcess, newest, open_menu_and_pick, tray_home, wait_gone
from xsession import wait_until

BAD_HOTKEY = '[hotkeys]\nwallpaper = "<ctrl>+<foo>+w"\n'


@pytest.fixture(scope="module")
def gnome_host(tray, tmp_path_factory):
    root = tmp_path_factory.mktemp("gnome-home")
    site = install_test_plugins(root / "site")
    tray.run(["dunstctl", "close-all"], check=True)
    home = tray_home(
        root,
        tray,
        config=BAD_HOTKEY,
        plugins=f"{PLUGINS},hello,broken_import,broken_hooks",
        XDG_CURRENT_DESKTOP="GNOME",
        PYTHONPATH=str(site),
        HELLO_LOG=str(root / "hello.log"),
    )
    process = TrayProcess(home)
    process.docked, _ = process.wait_docked()
    process.wait_started()
    yield process
    process.stop()
    home.stop_engine()


def gsettings_get(host, key: str) -> str:
    done = subprocess.run(
        ["gsettings", "get", "org.gnome.desktop.background", key],
        env=host.home.env,
        capture_output=True,
        text=True,
        check=True,
        timeout=20,
    )
    return ast.literal_eval(done.stdout.strip())


def test_a_malformed_hotkey_is_reported_by_key_and_left_off(gnome_host, tray):
    status = gnome_host.status()
    assert status["hotkeys"] == {"<ctrl>+<alt>+i": "clipboard"}
    shown = wait_until(
        lambda: [n for n in tray.notifications() if n["summary"] == "Some hotkeys are off"], 10, "the report"
    )
    assert "hotkeys.wallpaper = '<ctrl>+<foo>+w': '<foo>' is not a key name" in shown[0]["body"]
    assert "hotkeys.wallpaper" in gnome_host.log_text()


def test_the_wallpaper_sets_both_gnome_keys(gnome_host):
    result = gnome_host.trigger("wallpaper", "--prompt", "a misty forest", "--wait")
    assert result.returncode == 0, result.stderr
    [wallpaper] = newest(gnome_host.home.root / "data/dreamtray/wallpapers", "wallpaper-*.png")
    assert gsettings_get(gnome_host, "picture-uri") == wallpaper.resolve().as_uri()
    assert gsettings_get(gnome_host, "picture-uri-dark") == wallpaper.resolve().as_uri()


def test_a_plugin_menu_item_runs_from_the_real_menu_next_to_broken_plugins(gnome_host, tray):
    log = gnome_host.home.root / "hello.log"
    # Plugins' items come in plugin-name order above Quit: hello's "Say hello", then wallpaper's "Wallpapers".
    open_menu_and_pick(tray, gnome_host.docked, ["Up", "Up", "Up", "Return"])
    wait_until(
        lambda: log.is_file() and {"menu": "hello"} in [json.loads(line) for line in log.read_text().splitlines()],
        10,
        "the plugin's menu item to run",
    )
    assert gnome_host.process.poll() is None
    assert "broken_hooks raised in tray_menu_items" in gnome_host.log_text()


def test_sigterm_quits_and_stops_the_engine(gnome_host):
    info = json.loads((gnome_host.home.root / "state/dreamtray/engine.json").read_text())
    children = [p.pid for p in gnome_host.descendants()]
    assert info["pid"] in children
    gnome_host.process.send_signal(signal.SIGTERM)
    assert gnome_host.process.wait(timeout=90) == 0
    wait_gone(children)
    assert not (gnome_host.home.root / "runtime/dreamtray/control.sock").exists()
