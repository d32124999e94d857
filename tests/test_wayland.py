"""dreamtray on Wayland for real: a headless sway with two outputs of different sizes, its own bus and dunst,
an unprivileged user running sway and every client, `dreamtray run` in it, driven by `dreamtray trigger` (the
documented path on Wayland), the clipboard read back with wl-paste, the outputs' pixels with grim."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageChops
from xsession import SwaySession, wait_until

from dreamtray.desktop.hotkeys import WAYLAND_ADVICE
from dreamtray.images.metadata import read_metadata

OUTPUTS = ((800, 600), (640, 360))


@pytest.fixture(scope="module")
def sway():
    with SwaySession(outputs=OUTPUTS).start() as session:
        yield session


class WaylandTray:
    """`dreamtray run` as the sway session's user, with the tiny model and the first-party actions."""

    def __init__(self, session: SwaySession) -> None:
        self.session = session
        self.home = session.root / "home"
        self.gallery = self.home / "pictures" / "dreamtray"
        config = self.home / ".config" / "dreamtray" / "config.toml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text('model = "tiny"\n')
        session.give(self.home)
        self.env = {
            "DREAMTRAY_PLUGINS": "clipboard,wallpaper",
            "HF_HUB_OFFLINE": "1",
            "XDG_PICTURES_DIR": str(self.home / "pictures"),
        }
        self.log = session.root / "tray.log"
        with self.log.open("wb") as log:
            self.process = session.spawn(
                [sys.executable, "-m", "dreamtray", "run"], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )

    def dreamtray(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
        return self.session.run([sys.executable, "-m", "dreamtray", *args], env=self.env, text=True, timeout=timeout)

    def status(self) -> dict | None:
        done = self.dreamtray("trigger", "status", timeout=30)
        return json.loads(done.stdout) if done.returncode == 0 else None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="module")
def tray(sway):
    host = WaylandTray(sway)
    wait_until(host.status, 60, "the tray on sway to answer")
    yield host
    host.dreamtray("trigger", "quit", timeout=60)
    host.process.wait(timeout=60)


def wallpapers(tray: WaylandTray) -> list[dict]:
    return json.loads((tray.home / ".local/share/dreamtray/wallpapers/state.json").read_text())["current"]


def assert_outputs_show(sway: SwaySession, placements: list[dict]) -> None:
    """Each output shows exactly its saved picture (once dunst's notifications, drawn on top, are closed)."""
    assert [p["screen"]["name"] for p in placements] == ["HEADLESS-1", "HEADLESS-2"]
    sway.run(["dunstctl", "close-all"], check=True)
    for placement in placements:
        with Image.open(placement["path"]) as saved:
            expected = saved.convert("RGB")
        assert expected.size == (placement["screen"]["width"], placement["screen"]["height"])
        shown = wait_until(
            lambda: (shot := sway.screenshot(placement["screen"]["name"])) == expected and shot,
            5,
            f"{placement['screen']['name']} to show {placement['path']}",
        )
        assert ImageChops.difference(shown, expected).getbbox() is None


def test_the_tray_runs_on_sway_and_says_once_that_trigger_replaces_hotkeys(sway, tray):
    status = tray.status()
    assert status["hotkeys_listening"] is False and status["hotkeys"] == {}
    assert not status["torch_imported"]
    assert tray.log_text().count(WAYLAND_ADVICE) == 1
    title = "No global hotkeys on Wayland"
    shown = wait_until(lambda: [n for n in sway.notifications() if n["summary"] == title], 10, title)
    assert len(shown) == 1 and "dreamtray trigger clipboard" in shown[0]["body"]


def bus_call(sway: SwaySession, destination: str, path: str, method: str, *args: str) -> str:
    done = sway.run(
        ["dbus-send", "--session", "--print-reply", f"--dest={destination}", path, method, *args], text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_icon_registers_with_a_status_notifier_host_when_one_appears(sway, tray, tmp_path):
    config = sway.root / "waybar.json"
    config.write_text(json.dumps({"layer": "top", "position": "bottom", "modules-right": ["tray"]}))
    sway.give(config)
    waybar = sway.spawn(["waybar", "--config", str(config)])  # a panel whose tray is a StatusNotifier host
    try:
        watcher = ("org.kde.StatusNotifierWatcher", "/StatusNotifierWatcher")
        get = "org.freedesktop.DBus.Properties.Get"

        def registered() -> list[str]:
            if not sway.bus_name_has_owner(watcher[0]):
                return []
            reply = bus_call(sway, *watcher, get, f"string:{watcher[0]}", "string:RegisteredStatusNotifierItems")
            return [line.split('"')[1] for line in reply.splitlines() if "dreamtray" in line]

        [item] = wait_until(registered, 20, "the dreamtray icon to register with the panel")
        bus_name, _, path = item.partition("/")
        owner_pid = bus_call(
            sway, "org.freedesktop.DBus", "/org/freedesktop/DBus",
            "org.freedesktop.DBus.GetConnectionUnixProcessID", f"string:{bus_name}",
        )  # fmt: skip
        assert f"uint32 {tray.process.pid}" in owner_pid
        sni = "string:org.kde.StatusNotifierItem"
        folder = bus_call(sway, bus_name, f"/{path}", get, sni, "string:IconThemePath").split('"')[1]
        icon = bus_call(sway, bus_name, f"/{path}", get, sni, "string:IconName").split('"')[1]
        files = [Path(icon)] if Path(icon).is_absolute() else list(Path(folder).glob(f"{icon}.*"))
        assert files and files[0].is_file(), f"the panel is told of an icon that exists: {folder!r} {icon!r}"
        with Image.open(files[0]) as picture:
            assert picture.size[0] >= 16
    finally:
        waybar.terminate()
        waybar.wait(timeout=10)


def test_trigger_clipboard_turns_the_primary_selection_into_a_png_on_the_wayland_clipboard(sway, tray):
    sway.copy("a lighthouse at dusk, oil painting", primary=True)
    done = tray.dreamtray("trigger", "clipboard", "--wait")
    assert done.returncode == 0, done.stderr
    image = Path(done.stdout.strip().splitlines()[-1])
    assert image.parent == tray.gallery
    assert read_metadata(image).parameters.prompt == "a lighthouse at dusk, oil painting"
    types = sway.run(["wl-paste", "--list-types"], text=True).stdout.split()
    assert "image/png" in types
    assert sway.run(["wl-paste", "--type", "image/png"]).stdout == image.read_bytes()


def test_trigger_wallpaper_gives_each_output_its_own_picture(sway, tray):
    sway.copy("a quiet harbour at night", primary=True)
    done = tray.dreamtray("trigger", "wallpaper", "--wait")
    assert done.returncode == 0, done.stderr
    placements = wallpapers(tray)
    assert_outputs_show(sway, placements)
    seeds = sorted(
        read_metadata(p).parameters.seed
        for p in tray.gallery.glob("*.png")
        if read_metadata(p).parameters.prompt == "a quiet harbour at night"
    )
    assert len(seeds) == 2 and seeds[1] == seeds[0] + 1


def test_span_on_sway_then_undo_brings_back_both_outputs(sway, tray):
    before = wallpapers(tray)
    assert tray.dreamtray("config", "set", "wallpaper_mode", "span").returncode == 0
    done = tray.dreamtray("trigger", "wallpaper", "--wait", "--prompt", "a long mountain ridge")
    assert done.returncode == 0, done.stderr
    spanned = wallpapers(tray)
    assert_outputs_show(sway, spanned)
    undone = tray.dreamtray("wallpaper", "--undo")
    assert undone.returncode == 0, undone.stderr
    assert_outputs_show(sway, before)
