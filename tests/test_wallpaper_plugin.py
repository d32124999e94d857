"""The wallpaper plugin under Xvfb: scaling, the X11 root setters read back by screenshot, GNOME keys through
keyfile gsettings, undo, screen detection, and the choice of setter."""

from __future__ import annotations

import os
import stat
import sys

import pluggy
import pytest
from click.testing import CliRunner
from PIL import Image, ImageChops, ImageDraw, ImageGrab
from xsession import XSession

import dreamtray.hookspecs
from dreamtray import Action, GeneratedImage, Request
from dreamtray_plugins.wallpaper.commands import wallpaper as wallpaper_command
from dreamtray_plugins.wallpaper.screens import detect_screens
from dreamtray_plugins.wallpaper.setters import SwaySetter, X11RootSetter, pick_setter


def undo_command():
    """`dreamtray wallpaper --undo` as the command line runs it."""
    return CliRunner().invoke(wallpaper_command, ["--undo"])


@pytest.fixture
def plugin():
    """The wallpaper plugin as dreamtray loads it: through its entry point."""
    manager = pluggy.PluginManager("dreamtray")
    manager.add_hookspecs(dreamtray.hookspecs)
    assert manager.load_setuptools_entrypoints("dreamtray", name="wallpaper") == 1
    return manager


@pytest.fixture
def action(plugin) -> Action:
    actions: list[Action] = []
    plugin.hook.register_actions(register=actions.append)
    assert [a.name for a in actions] == ["wallpaper"]
    return actions[0]


@pytest.fixture
def desktop(xsession, user_dirs, monkeypatch):
    """The test X session with fresh user folders, as a plain X11 desktop unless a test says otherwise; no
    notification left open by an earlier test covers the root window."""
    monkeypatch.setenv("XDG_CURRENT_DESKTOP", "")
    xsession.run(["dunstctl", "close-all"], check=True)
    return xsession


def make_png(path, hue: int) -> GeneratedImage:
    """A 96x64 picture with edges and gradients, so that scaling and cropping show in the pixels."""
    image = Image.new("RGB", (96, 64))
    for x in range(96):
        for y in range(64):
            image.putpixel((x, y), ((x * 8 + hue) % 256, y * 4, (x * y + hue) % 256))
    ImageDraw.Draw(image).ellipse((30, 10, 70, 50), outline=(255, 255, 255), width=3)
    image.save(path)
    return GeneratedImage(path=path, request=Request(prompt="test pattern", seed=hue))


def root_window(session) -> Image.Image:
    return ImageGrab.grab(xdisplay=session.display).convert("RGB")


def saved_wallpapers(user_dirs) -> list:
    return sorted((user_dirs["XDG_DATA_HOME"] / "dreamtray" / "wallpapers").glob("wallpaper-*.png"))


def test_request_is_shaped_to_the_screen_aspect(desktop, action):
    shaped = action.shape_request(Request(prompt="a calm sea"))
    assert shaped.aspect == pytest.approx(800 / 600)
    sized = Request(prompt="a calm sea", width=512, height=512)
    assert action.shape_request(sized) == sized


def test_wallpaper_covers_the_screen_and_the_root_window_shows_it(desktop, action, user_dirs, tmp_path):
    generated = make_png(tmp_path / "00001-1.png", hue=0)
    message = action.run(generated)
    assert "--undo" in message
    [saved] = saved_wallpapers(user_dirs)
    with Image.open(saved) as scaled:
        assert scaled.size == (800, 600)
        # cover: 96x64 (3:2) onto 4:3 keeps the full height and crops 5.33 px off each side, Lanczos
        with generated.open() as source:
            expected = source.resize((800, 600), Image.Resampling.LANCZOS, box=(16 / 3, 0, 96 - 16 / 3, 64))
        assert max(high for _, high in ImageChops.difference(scaled, expected).getextrema()) <= 2
        assert ImageChops.difference(root_window(desktop), scaled.convert("RGB")).getbbox() is None


def test_feh_paints_the_same_pixels(desktop, user_dirs, tmp_path):
    from dreamtray_plugins.wallpaper.apply import apply, save_pictures

    [placement] = save_pictures("same", make_png(tmp_path / "00002-2.png", hue=90), detect_screens(), None)
    apply([placement], setter=X11RootSetter("feh"))
    with Image.open(placement.path) as scaled:
        assert ImageChops.difference(root_window(desktop), scaled.convert("RGB")).getbbox() is None


def test_undo_on_x11_brings_back_the_previous_picture(desktop, action, user_dirs, tmp_path):
    action.run(make_png(tmp_path / "00003-3.png", hue=10))
    action.run(make_png(tmp_path / "00004-4.png", hue=200))
    first, second = saved_wallpapers(user_dirs)
    result = undo_command()
    assert result.exit_code == 0, result.output
    assert str(first) in result.output
    with Image.open(first) as expected:
        assert ImageChops.difference(root_window(desktop), expected.convert("RGB")).getbbox() is None
    assert undo_command().exit_code == 0  # undoing the undo
    with Image.open(second) as expected:
        assert ImageChops.difference(root_window(desktop), expected.convert("RGB")).getbbox() is None


def gsetting(session, key: str) -> str:
    return session.run(["gsettings", "get", "org.gnome.desktop.background", key], text=True, check=True).stdout.strip()


def test_gnome_gets_both_keys_and_undo_restores_the_old_picture(desktop, action, user_dirs, tmp_path, monkeypatch):
    old = tmp_path / "old wallpaper.jpg"
    Image.new("RGB", (64, 64), (9, 9, 9)).save(old)
    desktop.run(["gsettings", "set", "org.gnome.desktop.background", "picture-uri", old.as_uri()], check=True)
    monkeypatch.setenv("XDG_CURRENT_DESKTOP", "ubuntu:GNOME")

    action.run(make_png(tmp_path / "00005-5.png", hue=50))
    [saved] = saved_wallpapers(user_dirs)
    assert gsetting(desktop, "picture-uri") == f"'{saved.as_uri()}'"
    assert gsetting(desktop, "picture-uri-dark") == f"'{saved.as_uri()}'"
    assert gsetting(desktop, "picture-options") == "'zoom'"

    result = undo_command()
    assert result.exit_code == 0, result.output
    assert gsetting(desktop, "picture-uri") == f"'{old.as_uri()}'"
    assert gsetting(desktop, "picture-uri-dark") == f"'{old.as_uri()}'"


def test_undo_with_no_history_says_so(desktop):
    result = undo_command()
    assert result.exit_code == 1
    assert "no previous wallpaper" in result.output


def test_two_monitors_are_detected_with_their_positions(monkeypatch):
    with XSession(screens=((960, 480),)).start(dunst=False) as wide:
        # one X screen shown on two monitors, as RandR 1.5 describes a side-by-side pair
        wide.run(["xrandr", "--setmonitor", "left", "640/169x480/127+0+0", "screen"], check=True)
        wide.run(["xrandr", "--setmonitor", "right", "320/85x240/64+640+0", "none"], check=True)
        monkeypatch.setenv("DISPLAY", wide.display)
        screens = detect_screens()
    assert [(s.x, s.y, s.width, s.height) for s in screens] == [(0, 0, 640, 480), (640, 0, 320, 240)]


def test_one_screen_is_detected_in_the_test_session(desktop):
    assert [(s.x, s.y, s.width, s.height) for s in detect_screens()] == [(0, 0, 800, 600)]


@pytest.mark.parametrize(
    ("environ", "platform", "name"),
    [
        ({"XDG_CURRENT_DESKTOP": "ubuntu:GNOME", "DISPLAY": ":1"}, "linux", "gnome"),
        ({"XDG_CURRENT_DESKTOP": "Budgie:GNOME"}, "linux", "gnome"),
        ({"XDG_CURRENT_DESKTOP": "KDE"}, "linux", "kde"),
        ({"XDG_CURRENT_DESKTOP": "XFCE"}, "linux", "xfce"),
        ({"XDG_CURRENT_DESKTOP": "MATE"}, "linux", "mate"),
        ({"XDG_CURRENT_DESKTOP": "X-Cinnamon"}, "linux", "cinnamon"),
        ({"XDG_CURRENT_DESKTOP": "sway"}, "linux", "sway"),
        ({"SWAYSOCK": "/run/sway.sock", "WAYLAND_DISPLAY": "wayland-1"}, "linux", "sway"),
        ({"DISPLAY": ":1"}, "linux", "xwallpaper"),
        ({}, "win32", "windows"),
        ({}, "darwin", "macos"),
    ],
)
def test_setter_is_chosen_by_platform_and_desktop(environ, platform, name):
    assert pick_setter(environ, platform).name == name


def test_unknown_wayland_desktop_is_refused_with_the_supported_list():
    with pytest.raises(Exception, match="supported: GNOME, KDE Plasma"):
        pick_setter({"WAYLAND_DISPLAY": "wayland-0", "XDG_CURRENT_DESKTOP": "Hyprland"}, "linux")


@pytest.fixture
def recording_path(tmp_path, monkeypatch):
    """Put recorders named like desktop tools first on PATH; each writes its argv, one argument a line."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.txt"

    def recorder(name: str, prints: str = "") -> None:
        script = bin_dir / name
        script.write_text(
            f"#!{sys.executable}\nimport sys\n"
            f"open({str(log)!r}, 'a').write('\\n'.join(sys.argv[1:]) + '\\n--\\n')\nprint({prints!r}, end='')\n"
        )
        script.chmod(script.stat().st_mode | stat.S_IEXEC)

    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return recorder, log


def calls(log) -> list[list[str]]:
    return [chunk.strip("\n").split("\n") for chunk in log.read_text().split("--\n") if chunk.strip()]


def test_sway_gets_the_path_quoted_for_its_command_parser(recording_path, tmp_path):
    recorder, log = recording_path
    recorder("swaymsg")
    picture = tmp_path / 'a "quoted" name.png'
    SwaySetter().set(picture)
    quoted = '"' + str(picture).replace('"', '\\"') + '"'
    assert calls(log) == [["output", "*", "bg", quoted, "fill"]]


def test_wallpaper_command_joins_the_dreamtray_command_line(plugin, desktop):
    import click

    cli = click.Group("dreamtray")
    plugin.hook.register_commands(cli=cli)
    result = CliRunner().invoke(cli, ["wallpaper", "--undo"])
    assert (result.exit_code, "no previous wallpaper" in result.output) == (1, True)
    assert "--schedule" in CliRunner().invoke(cli, ["wallpaper", "--help"]).output


def test_undo_names_a_previous_wallpaper_that_was_deleted(desktop, action, user_dirs, tmp_path):
    action.run(make_png(tmp_path / "00006-6.png", hue=30))
    action.run(make_png(tmp_path / "00007-7.png", hue=60))
    first, _ = saved_wallpapers(user_dirs)
    first.unlink()
    result = undo_command()
    assert result.exit_code == 1
    assert f"The previous wallpaper {first} no longer exists" in result.output


def test_windows_per_monitor_script_parses_and_gets_each_monitor_rectangle(tmp_path):
    import json

    from test_windows_scripts import syntax_errors

    from dreamtray_plugins.wallpaper.layout import Placement
    from dreamtray_plugins.wallpaper.screens import Screen
    from dreamtray_plugins.wallpaper.setters import WindowsSetter

    left, right = tmp_path / "left.png", tmp_path / "right.png"
    placements = [Placement(Screen(0, 0, 1920, 1080), left), Placement(Screen(1920, -200, 1080, 1920), right)]
    args, _, env = WindowsSetter().per_monitor_call(placements)
    assert args[:4] == ["powershell", "-NoProfile", "-NonInteractive", "-Command"]
    assert syntax_errors(args[4]) == []
    assert "SetWallpaper($monitor, $file)" in args[4] and "GetMonitorRECT" in args[4]
    # the script's key: left, top, width, height of the monitor's rectangle
    assert json.loads(env["DREAMTRAY_WALLPAPERS"]) == {"0,0,1920,1080": str(left), "1920,-200,1080,1920": str(right)}


def test_macos_per_screen_script_gets_each_screen_by_size_and_left_edge(tmp_path):
    import json

    from dreamtray_plugins.wallpaper.layout import Placement
    from dreamtray_plugins.wallpaper.screens import Screen
    from dreamtray_plugins.wallpaper.setters import MacSetter

    placements = [
        Placement(Screen(0, 0, 1512, 982), tmp_path / "a.png"),
        Placement(Screen(1512, 0, 2560, 1440), tmp_path / "b.png"),
    ]
    args = MacSetter().per_screen_args(placements)
    assert args[:4] == ["osascript", "-l", "JavaScript", "-e"]
    assert "setDesktopImageURLForScreenOptionsError" in args[4]
    assert json.loads(args[5]) == {"0,1512,982": str(tmp_path / "a.png"), "1512,2560,1440": str(tmp_path / "b.png")}
