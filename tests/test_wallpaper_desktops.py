"""Each desktop's own wallpaper store, for real, in the test X session: GNOME, MATE and Cinnamon keys through
their installed GSettings schemas (read back with gsettings), XFCE's properties in a running xfconfd (started
by D-Bus activation, read back with xfconf-query). One monitor, several monitors (GSettings desktops span one
composed picture; XFCE gets one picture per monitor property), and undo."""

from __future__ import annotations

import pytest
from PIL import Image, ImageChops, ImageDraw
from wallpaper_helpers import undo_command, wallpaper_action

from dreamtray import Action, GeneratedImage, Request
from dreamtray_plugins.wallpaper.apply import apply, undo
from dreamtray_plugins.wallpaper.layout import Placement
from dreamtray_plugins.wallpaper.screens import Screen
from dreamtray_plugins.wallpaper.setters import pick_setter

GSETTINGS_DESKTOPS = [
    # XDG_CURRENT_DESKTOP, schema, picture keys, whether the keys hold URIs (else plain paths)
    ("ubuntu:GNOME", "org.gnome.desktop.background", ("picture-uri", "picture-uri-dark"), True),
    ("MATE", "org.mate.background", ("picture-filename",), False),
    ("X-Cinnamon", "org.cinnamon.desktop.background", ("picture-uri",), True),
]
SCREENS = [
    Screen(0, 0, 320, 240, "Virtual-1"),
    Screen(320, 0, 160, 90, "Virtual-2"),
    Screen(480, 0, 120, 200, "Virtual-3"),
]


@pytest.fixture
def action() -> Action:
    return wallpaper_action()


@pytest.fixture
def desktop(xsession, user_dirs, monkeypatch):
    monkeypatch.setenv("XDG_CURRENT_DESKTOP", "")
    return xsession


def picture(path, size, hue: int):
    image = Image.new("RGB", size, (hue, 255 - hue, (hue * 7) % 256))
    ImageDraw.Draw(image).ellipse((2, 2, size[0] - 3, size[1] - 3), outline=(255, 255, 255), width=2)
    image.save(path)
    return path


def placements(tmp_path) -> list[Placement]:
    return [
        Placement(screen, picture(tmp_path / f"monitor-{i}.png", (screen.width, screen.height), 40 * i + 10))
        for i, screen in enumerate(SCREENS)
    ]


def as_stored(path, uri: bool) -> str:
    return path.resolve().as_uri() if uri else str(path.resolve())


# -- GNOME, MATE, Cinnamon ---------------------------------------------------------------------------


def gsetting(session, schema: str, key: str) -> str:
    return session.run(["gsettings", "get", schema, key], text=True, check=True).stdout.strip().strip("'")


@pytest.mark.parametrize(("name", "schema", "keys", "uri"), GSETTINGS_DESKTOPS, ids=["gnome", "mate", "cinnamon"])
def test_gsettings_desktops_take_the_picture_zoomed_and_undo_restores(
    name, schema, keys, uri, desktop, action, tmp_path, monkeypatch
):
    old = picture(tmp_path / "old wallpaper.png", (64, 64), 9)
    desktop.run(["gsettings", "set", schema, keys[0], as_stored(old, uri)], check=True)
    monkeypatch.setenv("XDG_CURRENT_DESKTOP", name)
    image = picture(tmp_path / "00001-1.png", (96, 64), 120)
    action.run(GeneratedImage(image, Request(prompt="a test", seed=1)))
    [saved] = (tmp_path / "home/.local/share/dreamtray/wallpapers").glob("wallpaper-*.png")
    assert [gsetting(desktop, schema, key) for key in keys] == [as_stored(saved, uri)] * len(keys)
    assert gsetting(desktop, schema, "picture-options") == "zoom"

    result = undo_command()
    assert result.exit_code == 0, result.output
    assert [gsetting(desktop, schema, key) for key in keys] == [as_stored(old, uri)] * len(keys)


@pytest.mark.parametrize(("name", "schema", "keys", "uri"), GSETTINGS_DESKTOPS, ids=["gnome", "mate", "cinnamon"])
def test_gsettings_desktops_span_one_composed_picture_over_several_monitors(
    name, schema, keys, uri, desktop, tmp_path, monkeypatch
):
    monkeypatch.setenv("XDG_CURRENT_DESKTOP", name)
    each = placements(tmp_path)
    apply(each)
    assert gsetting(desktop, schema, "picture-options") == "spanned"
    stored = gsetting(desktop, schema, keys[0])
    composed = tmp_path / "desktop-monitor-0-600x240.png"
    assert stored == as_stored(composed, uri)
    with Image.open(composed) as whole:
        assert whole.size == (600, 240)
        for placement in each:
            with Image.open(placement.path) as part:
                assert ImageChops.difference(whole.crop(placement.screen.box).convert("RGB"), part).getbbox() is None

    apply([Placement(p.screen, picture(tmp_path / f"next-{i}.png", (8, 8), 99)) for i, p in enumerate(each)])
    undo()
    assert gsetting(desktop, schema, "picture-options") == "spanned"
    assert gsetting(desktop, schema, keys[0]) == as_stored(composed, uri)


# -- XFCE ----------------------------------------------------------------------------------------------


def xfconf(session, *args: str) -> str:
    return session.run(["xfconf-query", *args], text=True, check=True).stdout.strip()


def backdrop(session) -> dict[str, str]:
    """Every property under /backdrop in xfconfd, with its value."""
    listed = xfconf(session, "--channel", "xfce4-desktop", "--list").split()
    return {prop: xfconf(session, "--channel", "xfce4-desktop", "--property", prop) for prop in listed}


@pytest.fixture
def xfce(desktop, monkeypatch):
    """xfconfd with an empty desktop channel and three workspaces; XFCE named as the desktop."""
    desktop.run(["xfconf-query", "--channel", "xfce4-desktop", "--property", "/backdrop", "--reset", "--recursive"])
    xfconf(
        desktop,
        "--channel",
        "xfwm4",
        "--property",
        "/general/workspace_count",
        "--create",
        "--type",
        "int",
        "--set",
        "3",
    )
    monkeypatch.setenv("XDG_CURRENT_DESKTOP", "XFCE")
    assert pick_setter().name == "xfce"
    return desktop


def test_xfce_one_picture_reaches_every_workspace_of_every_monitor(xfce, action, tmp_path):
    old = picture(tmp_path / "old.png", (64, 64), 9)
    for monitor in ("monitorVirtual-1", "monitorHDMI-2"):  # as xfdesktop writes them for two outputs
        prop = f"/backdrop/screen0/{monitor}/workspace0/last-image"
        xfconf(
            xfce, "--channel", "xfce4-desktop", "--property", prop, "--create", "--type", "string", "--set", str(old)
        )
    action.run(GeneratedImage(picture(tmp_path / "00002-2.png", (96, 64), 60), Request(prompt="a test", seed=2)))
    [saved] = (tmp_path / "home/.local/share/dreamtray/wallpapers").glob("wallpaper-*.png")
    expected = {}
    for monitor in ("monitorHDMI-2", "monitorVirtual-1"):
        for workspace in range(3):
            where = f"/backdrop/screen0/{monitor}/workspace{workspace}/"
            expected |= {where + "image-style": "5", where + "last-image": str(saved.resolve())}
    assert backdrop(xfce) == expected

    undo()
    assert {prop: value for prop, value in backdrop(xfce).items() if prop.endswith("last-image")} == {
        prop: str(old) for prop in expected if prop.endswith("last-image")
    }


def test_xfce_gives_each_monitor_its_picture_on_every_workspace_and_undo_restores(xfce, tmp_path):
    first = placements(tmp_path)
    apply(first)
    expected = {}
    for placement in first:
        for workspace in range(3):
            where = f"/backdrop/screen0/monitor{placement.screen.name}/workspace{workspace}/"
            expected |= {where + "image-style": "5", where + "last-image": str(placement.path.resolve())}
    assert backdrop(xfce) == expected

    second = [Placement(p.screen, picture(tmp_path / f"second-{i}.png", (8, 8), 200 + i)) for i, p in enumerate(first)]
    apply(second)
    assert backdrop(xfce)["/backdrop/screen0/monitorVirtual-3/workspace2/last-image"] == str(second[2].path.resolve())
    undo()
    assert backdrop(xfce) == expected
