"""Wallpapers on three monitors of different sizes and aspects, for real: one Xvfb screen cut into three RandR
monitors, `dreamtray generate --action wallpaper` with the tiny model in each mode, the root window read back.

Every mode must leave, in each monitor's region of the root window, exactly that monitor's saved picture;
`--undo` brings back the previous pictures on every monitor.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from cli_env import DreamtrayHome
from PIL import Image, ImageChops, ImageGrab, ImageOps
from xsession import XSession

from dreamtray.images.metadata import read_metadata

# (name, width, height, x): 4:3, 16:9 and a portrait 4:7 side by side on a 1840x700 screen
MONITORS = [("left", 800, 600, 0), ("middle", 640, 360, 800), ("right", 400, 700, 1440)]


@pytest.fixture(scope="module")
def three_monitors():
    with XSession(screens=((1840, 700),)).start(dunst=False) as session:
        for index, (name, width, height, x) in enumerate(MONITORS):
            output = "screen" if index == 0 else "none"
            geometry = f"{width}/{width // 4}x{height}/{height // 4}+{x}+0"
            session.run(["xrandr", "--setmonitor", name, geometry, output], check=True)
        yield session


@pytest.fixture(scope="module")
def home(three_monitors, tmp_path_factory):
    root = tmp_path_factory.mktemp("monitors-home")
    runtime = root / "runtime"
    runtime.mkdir(mode=0o700)
    home = DreamtrayHome.create(
        root,
        plugins="wallpaper",
        DISPLAY=three_monitors.display,
        XDG_RUNTIME_DIR=str(runtime),
        XDG_SESSION_TYPE="x11",
        XDG_CURRENT_DESKTOP="",
    )
    yield home
    home.stop_engine()


def make_wallpaper(home: DreamtrayHome, mode: str, seed: int) -> list[dict]:
    """Set the mode, make a wallpaper from a fixed prompt; the placements the plugin recorded."""
    home.run("config", "set", "wallpaper_mode", mode, check=True)
    result = home.run("generate", "--seed", str(seed), "--action", "wallpaper", "a lighthouse on a cliff", check=True)
    assert f"on 3 monitors ({mode})" in result.stderr
    return json.loads((home.root / "data/dreamtray/wallpapers/state.json").read_text())["current"]


def root_window(session: XSession) -> Image.Image:
    return ImageGrab.grab(xdisplay=session.display).convert("RGB")


def assert_monitors_show(session: XSession, placements: list[dict]) -> None:
    shown = root_window(session)
    assert [(p["screen"]["width"], p["screen"]["height"], p["screen"]["x"]) for p in placements] == [
        (w, h, x) for _, w, h, x in MONITORS
    ]
    for placement in placements:
        screen = placement["screen"]
        box = (screen["x"], screen["y"], screen["x"] + screen["width"], screen["y"] + screen["height"])
        with Image.open(placement["path"]) as saved:
            assert saved.size == (screen["width"], screen["height"])
            assert ImageChops.difference(shown.crop(box), saved.convert("RGB")).getbbox() is None, placement


def gallery_image(home: DreamtrayHome, seed: int) -> Path:
    [path] = [p for p in sorted(home.gallery.glob("*.png")) if read_metadata(p).parameters.seed == seed]
    return path


def close_enough(a: Image.Image, b: Image.Image) -> bool:
    """Equal up to rounding in the scaling (at most 2 levels a channel)."""
    return max(high for _, high in ImageChops.difference(a, b).getextrema()) <= 2


def test_the_three_monitors_are_detected_left_to_right(three_monitors, monkeypatch):
    from dreamtray_plugins.wallpaper.screens import detect_screens

    monkeypatch.setenv("DISPLAY", three_monitors.display)
    assert [(s.x, s.y, s.width, s.height) for s in detect_screens()] == [(x, 0, w, h) for _, w, h, x in MONITORS]


def test_per_monitor_makes_one_image_per_monitor_at_its_aspect_with_consecutive_seeds(three_monitors, home):
    placements = make_wallpaper(home, "per-monitor", seed=100)
    assert_monitors_show(three_monitors, placements)
    for index, (placement, (_, width, height, _)) in enumerate(zip(placements, MONITORS, strict=True)):
        source = gallery_image(home, 100 + index)
        with Image.open(source) as generated, Image.open(placement["path"]) as saved:
            assert abs(math.log((generated.width / generated.height) / (width / height))) < 0.2, generated.size
            expected = ImageOps.fit(generated.convert("RGB"), (width, height), Image.Resampling.LANCZOS)
            assert close_enough(saved.convert("RGB"), expected)
        assert read_metadata(source).parameters.prompt == "a lighthouse on a cliff"


def test_span_cuts_one_desktop_wide_image_along_the_monitors(three_monitors, home):
    placements = make_wallpaper(home, "span", seed=200)
    assert_monitors_show(three_monitors, placements)
    with Image.open(gallery_image(home, 200)) as generated:
        assert abs(math.log((generated.width / generated.height) / (1840 / 700))) < 0.2, generated.size
        whole = ImageOps.fit(generated.convert("RGB"), (1840, 700), Image.Resampling.LANCZOS)
    shown = root_window(three_monitors)
    for _, width, height, x in MONITORS:
        assert close_enough(shown.crop((x, 0, x + width, height)), whole.crop((x, 0, x + width, height)))
    assert not [p for p in home.gallery.glob("*.png") if read_metadata(p).parameters.seed == 201]


def test_same_puts_the_one_image_on_every_monitor(three_monitors, home):
    placements = make_wallpaper(home, "same", seed=300)
    assert_monitors_show(three_monitors, placements)
    with Image.open(gallery_image(home, 300)) as generated:
        for placement, (_, width, height, _) in zip(placements, MONITORS, strict=True):
            expected = ImageOps.fit(generated.convert("RGB"), (width, height), Image.Resampling.LANCZOS)
            with Image.open(placement["path"]) as saved:
                assert close_enough(saved.convert("RGB"), expected)


def test_undo_brings_back_every_monitor_and_undoing_again_redoes(three_monitors, home):
    first = make_wallpaper(home, "same", seed=400)  # three files, one per monitor, as in every mode
    second = make_wallpaper(home, "span", seed=500)
    undone = home.run("wallpaper", "--undo", check=True)
    assert all(p["path"] in undone.stdout for p in first)
    assert_monitors_show(three_monitors, first)
    home.run("wallpaper", "--undo", check=True)
    assert_monitors_show(three_monitors, second)


def test_feh_gives_each_xinerama_head_its_own_file(three_monitors, tmp_path, monkeypatch):
    from dreamtray_plugins.wallpaper.layout import Placement
    from dreamtray_plugins.wallpaper.screens import detect_screens
    from dreamtray_plugins.wallpaper.setters import X11RootSetter

    monkeypatch.setenv("DISPLAY", three_monitors.display)
    placements = []
    for index, screen in enumerate(detect_screens()):
        path = tmp_path / f"{index}.png"
        Image.linear_gradient("L").resize((screen.width, screen.height)).convert("RGB").rotate(index * 90).save(path)
        placements.append(Placement(screen, path))
    X11RootSetter("feh").set_each(placements)
    assert_monitors_show(three_monitors, [{"screen": p.screen.as_data(), "path": p.path} for p in placements])
    assert not list(tmp_path.glob("desktop-*.png")), "feh took one file per head: nothing was composed"
