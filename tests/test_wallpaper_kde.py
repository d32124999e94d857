"""KDE Plasma for real: plasmashell runs headless on its own Xvfb display with a session bus; the wallpaper is
set through `plasma-apply-wallpaperimage` and through the per-screen desktop script over D-Bus, read back from
Plasma's own config (a script) and from the pixels plasmashell draws."""

from __future__ import annotations

import pytest
from PIL import Image, ImageChops, ImageDraw, ImageGrab
from wallpaper_helpers import undo_command, wallpaper_action
from xsession import XSession, need, wait_until

from dreamtray import Action, GeneratedImage, Request
from dreamtray_plugins.wallpaper.layout import Placement
from dreamtray_plugins.wallpaper.screens import Screen
from dreamtray_plugins.wallpaper.setters import KdeSetter, pick_setter

DESKTOP_AREA = (0, 0, 800, 480)
"""The part of the 800x600 screen that Plasma's default bottom panel never covers."""


@pytest.fixture(scope="module")
def plasma():
    with XSession().start(dunst=False) as session:
        session.env.update(XDG_CURRENT_DESKTOP="KDE", KDE_FULL_SESSION="true", KDE_SESSION_VERSION="5")
        session.spawn([need("plasmashell"), "--no-respawn"])
        wait_until(lambda: session.bus_name_has_owner("org.kde.plasmashell"), 60, "plasmashell on the bus")
        wait_until(lambda: evaluate(session, "print(desktops().length)") == "1", 60, "Plasma's desktop")
        yield session


@pytest.fixture
def kde(plasma, user_dirs, monkeypatch):
    """This process as a client of the Plasma session, with fresh dreamtray folders."""
    for key in ("DISPLAY", "DBUS_SESSION_BUS_ADDRESS", "XDG_CURRENT_DESKTOP"):
        monkeypatch.setenv(key, plasma.env[key])
    assert pick_setter().name == "kde"
    return plasma


def evaluate(session: XSession, script: str) -> str:
    done = session.run(
        ["qdbus", "org.kde.plasmashell", "/PlasmaShell", "org.kde.PlasmaShell.evaluateScript", script], text=True
    )
    return done.stdout.strip() if done.returncode == 0 else ""


def plasma_image(session: XSession) -> str:
    return evaluate(session, KdeSetter.CURRENT_SCRIPT)


def picture(path, size, hue: int):
    image = Image.new("RGB", size, (hue, 255 - hue, (hue * 5) % 256))
    ImageDraw.Draw(image).rectangle((100, 100, 300, 250), fill=(255 - hue, hue, 30))
    image.save(path)
    return path


def assert_desktop_shows(session: XSession, path) -> None:
    """What plasmashell draws (above its panel) is the picture, once it has faded in."""
    with Image.open(path) as saved:
        expected = saved.convert("RGB").crop(DESKTOP_AREA)

    def shown() -> bool:
        grabbed = ImageGrab.grab(xdisplay=session.display).convert("RGB").crop(DESKTOP_AREA)
        return ImageChops.difference(grabbed, expected).getbbox() is None

    wait_until(shown, 15, f"Plasma to show {path}", interval=0.2)


@pytest.fixture
def action() -> Action:
    return wallpaper_action()


def test_plasma_shows_the_wallpaper_and_undo_brings_back_the_one_before(kde, action, tmp_path):
    old = picture(tmp_path / "old.png", (800, 600), 20)
    done = kde.run(["plasma-apply-wallpaperimage", str(old)], text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert_desktop_shows(kde, old)

    action.run(GeneratedImage(picture(tmp_path / "00001-1.png", (800, 600), 150), Request(prompt="a test", seed=1)))
    [saved] = (tmp_path / "home/.local/share/dreamtray/wallpapers").glob("wallpaper-*.png")
    assert plasma_image(kde) == saved.resolve().as_uri()
    assert_desktop_shows(kde, saved)

    result = undo_command()
    assert result.exit_code == 0, result.output
    assert plasma_image(kde) == old.resolve().as_uri()
    assert_desktop_shows(kde, old)


def test_the_per_screen_script_finds_the_screen_by_its_geometry(kde, tmp_path):
    mine = picture(tmp_path / "screen.png", (800, 600), 90)
    other = picture(tmp_path / "elsewhere.png", (640, 480), 200)
    KdeSetter().set_each([Placement(Screen(0, 0, 800, 600), mine), Placement(Screen(800, 0, 640, 480), other)])
    assert plasma_image(kde) == mine.resolve().as_uri()
    assert_desktop_shows(kde, mine)


def test_without_plasmashell_the_setter_says_what_failed(xsession, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(Exception, match="qdbus is not installed"):
        KdeSetter().set(tmp_path / "x.png")
    assert KdeSetter().current() is None
