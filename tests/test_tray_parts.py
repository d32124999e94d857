"""The tray's parts on their own: hotkey strings, the control channel, the backend choice,
the Wayland advice, the progress icon and the merged drawing."""

from __future__ import annotations

import json
import socket
import stat
import threading

import pytest
from PIL import Image
from xsession import wait_until

from dreamtray.desktop import control as instance

# -- hotkeys ------------------------------------------------------------------------------------------


@pytest.fixture
def hotkeys(xsession):
    """pynput needs a display even to parse key names."""
    from dreamtray.desktop import hotkeys

    return hotkeys


def test_default_hotkeys_bind_their_actions(hotkeys):
    bindings = hotkeys.bindings_from_config(
        {"clipboard": "<ctrl>+<alt>+i", "wallpaper": "<ctrl>+<alt>+w"}, {"clipboard", "wallpaper"}
    )
    assert bindings.keys == {"<ctrl>+<alt>+i": "clipboard", "<ctrl>+<alt>+w": "wallpaper"}
    assert bindings.problems == []


@pytest.mark.parametrize(
    ("combo", "words"),
    [
        ("<ctrl>+<foo>+i", "'<foo>' is not a key name pynput knows"),
        ("ctrl+alt+i", "'ctrl' is not a key: special keys go in angle brackets, like '<ctrl>'"),
        ("<ctrl>++i", "empty part"),
        ("<ctrl>+<alt>+ii", "'ii' is not a key"),
        ("<ctrl>+<ctrl>+i", "'<ctrl>' is named twice"),
    ],
)
def test_a_malformed_hotkey_names_the_key_and_what_is_wrong(hotkeys, combo, words):
    bindings = hotkeys.bindings_from_config(
        {"clipboard": combo, "wallpaper": "<ctrl>+<alt>+w"}, {"clipboard", "wallpaper"}
    )
    assert bindings.keys == {"<ctrl>+<alt>+w": "wallpaper"}
    [problem] = bindings.problems
    assert problem.startswith(f"hotkeys.clipboard = {combo!r}: ")
    assert words in problem and problem.endswith("this hotkey is off")


def test_hotkeys_for_unknown_actions_or_taken_keys_are_reported(hotkeys):
    bindings = hotkeys.bindings_from_config(
        {"clipboard": "<ctrl>+<alt>+i", "wallpaper": "<alt>+<ctrl>+I", "print": "<ctrl>+p", "off": ""},
        {"clipboard", "wallpaper"},
    )
    assert bindings.keys == {"<ctrl>+<alt>+i": "clipboard"}
    assert bindings.problems == [
        "hotkeys.wallpaper = '<alt>+<ctrl>+I': the same keys already run 'clipboard'; this hotkey is off",
        "hotkeys.print = '<ctrl>+p': no action called 'print' (actions: clipboard, wallpaper); this hotkey is off",
    ]


@pytest.mark.parametrize(
    ("environ", "wayland"),
    [
        ({"XDG_SESSION_TYPE": "wayland", "DISPLAY": ":0", "WAYLAND_DISPLAY": "wayland-0"}, True),
        ({"WAYLAND_DISPLAY": "wayland-0"}, True),
        ({"WAYLAND_DISPLAY": "wayland-0", "DISPLAY": ":0"}, False),
        ({"XDG_SESSION_TYPE": "x11", "DISPLAY": ":0"}, False),
    ],
)
def test_wayland_is_told_apart(environ, wayland):
    from dreamtray.desktop.hotkeys import is_wayland

    assert is_wayland(environ) is wayland


def test_the_listener_fires_on_a_real_key_press(hotkeys, xsession):
    pressed = threading.Event()
    listener = hotkeys.HotkeyListener({"<ctrl>+<alt>+g": "clipboard"}, lambda action: pressed.set())
    listener.start()
    try:
        xsession.run(["xdotool", "key", "ctrl+alt+g"], check=True)
        assert pressed.wait(10)
    finally:
        listener.stop()
    assert not listener.running


def test_on_wayland_the_host_says_so_once_and_points_at_trigger(xsession, user_dirs, monkeypatch):
    from dreamtray.app import App
    from dreamtray.desktop.tray import TrayHost

    monkeypatch.setenv("XDG_SESSION_TYPE", "wayland")
    monkeypatch.setenv("DREAMTRAY_PLUGINS", "clipboard")
    xsession.run(["dunstctl", "close-all"], check=True)
    host = TrayHost(App())
    try:
        host.start_hotkeys()
    finally:
        host.queue.close()
    assert host.hotkeys is None
    title = "No global hotkeys on Wayland"
    shown = wait_until(lambda: [n for n in xsession.notifications() if n["summary"] == title], 10, title)
    assert len(shown) == 1 and "dreamtray trigger clipboard" in shown[0]["body"]


# -- single instance and the control channel ----------------------------------------------------------


def test_the_unix_socket_answers_and_is_private(runtime):
    server = instance.ControlServer(lambda message: {"ok": True, "echo": message})
    server.start()
    try:
        path = runtime / "dreamtray" / "control.sock"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert instance.send({"action": "status"}) == {"ok": True, "echo": {"action": "status"}}
        with socket.socket(socket.AF_UNIX) as raw:
            raw.connect(str(path))
            raw.sendall(b"not json\n")
            reply = json.loads(raw.makefile().readline())
            assert reply["ok"] is False
            assert reply["message"].startswith("dreamtray could not read the command: it is not JSON")
    finally:
        server.stop()
    assert not path.exists()
    with pytest.raises(instance.NotRunning, match="dreamtray is not running"):
        instance.send({"action": "status"})


def test_a_failing_handler_is_answered_not_raised(runtime):
    def handler(message):
        raise ValueError("no such thing")

    server = instance.ControlServer(handler)
    server.start()
    try:
        assert instance.send({"action": "x"}) == {"ok": False, "message": "dreamtray could not do that: no such thing"}
    finally:
        server.stop()


def test_loopback_tcp_with_a_per_user_token_where_there_are_no_unix_sockets(runtime, monkeypatch):
    monkeypatch.setattr(instance, "USE_UNIX_SOCKET", False)
    server = instance.ControlServer(lambda message: {"ok": True, "echo": message})
    server.start()
    try:
        info_file = runtime / "dreamtray" / "control.json"
        assert stat.S_IMODE(info_file.stat().st_mode) == 0o600
        info = json.loads(info_file.read_text())
        assert instance.send({"action": "status"}) == {"ok": True, "echo": {"action": "status"}}
        with socket.create_connection(("127.0.0.1", info["port"])) as raw:
            raw.sendall(json.dumps({"action": "quit", "token": "guess"}).encode() + b"\n")
            reply = json.loads(raw.makefile().readline())
        assert reply["ok"] is False and "token does not match" in reply["message"]
    finally:
        server.stop()
    assert not info_file.exists()


def test_only_one_instance_holds_the_lock(runtime):
    import subprocess
    import sys

    first = instance.SingleInstance()
    first.acquire()
    try:
        code = "from dreamtray.desktop import control as instance\ntry:\n    instance.SingleInstance().acquire()\nexcept instance.AlreadyRunning as e:\n    print(e)"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        assert out.strip() == "dreamtray is already running (see its icon in the tray)."
    finally:
        first.release()


# -- the backend and the icon ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "backend"),
    [
        ({"PYSTRAY_BACKEND": "xorg"}, "xorg"),
        ({"XDG_CURRENT_DESKTOP": ""}, "gtk"),
        ({"XDG_CURRENT_DESKTOP": "XFCE"}, "gtk"),
        ({"XDG_CURRENT_DESKTOP": "ubuntu:GNOME"}, "appindicator"),
        ({"XDG_CURRENT_DESKTOP": "KDE"}, "appindicator"),
    ],
)
def test_the_backend_is_chosen_for_the_desktop(environ, backend):
    from dreamtray.desktop.tray import choose_backend

    choose_backend(environ)
    assert environ["PYSTRAY_BACKEND"] == backend


def test_the_busy_icon_shows_progress_as_a_bar():
    from dreamtray.desktop.tray import tray_image

    def green(image: Image.Image) -> int:
        data = image.tobytes()
        return sum(1 for i in range(0, len(data), 4) if data[i : i + 4] == bytes((46, 160, 67, 255)))

    assert green(tray_image("busy", 0)) == 0
    half, full = green(tray_image("busy", 50)), green(tray_image("busy", 100))
    assert 0 < half < full and abs(full / half - 2) < 0.15
    assert tray_image("idle").tobytes() != tray_image("error").tobytes()
    assert tray_image("idle").size == (64, 64)


def test_the_busy_icon_shows_the_image_as_it_forms_under_the_bar():
    import io

    from dreamtray.desktop.tray import tray_image

    forming = io.BytesIO()
    Image.new("RGB", (256, 128), (200, 30, 40)).save(forming, format="PNG")
    icon = tray_image("busy", 50, forming.getvalue())
    assert icon.size == (64, 64)
    assert icon.getpixel((32, 20)) == (200, 30, 40, 255)
    assert icon.getpixel((10, 59)) == (46, 160, 67, 255), "the progress bar is drawn over it"
    assert tray_image("idle", None, forming.getvalue()).tobytes() == tray_image("idle").tobytes()


def test_merged_work_runs_once_for_the_asks_made_while_it_waits():
    from dreamtray.desktop.merged import Merged

    posted: list = []
    seen: list[int] = []
    state = {"value": 0}
    merged = Merged(lambda: seen.append(state["value"]), posted.append)
    for value in range(1, 6):  # five changes before the toolkit gets to the work
        state["value"] = value
        merged()
    assert len(posted) == 1 and seen == []
    assert posted.pop()() is False, "GLib.idle_add must not run it again"
    assert seen == [5], "it ran once, with the state as it was when it ran"
    merged()
    assert len(posted) == 1, "an ask after the run posts the work again"


def test_an_ask_during_the_run_runs_the_work_again():
    from dreamtray.desktop.merged import Merged

    started, release = threading.Event(), threading.Event()
    runs: list[str] = []

    def work() -> None:
        runs.append(threading.current_thread().name)
        started.set()
        release.wait(10)

    posted: list = []
    merged = Merged(work, posted.append)
    merged()
    runner = threading.Thread(target=posted.pop(), name="toolkit")
    runner.start()
    assert started.wait(10)
    merged()  # the state changed while the work ran: it must run once more
    release.set()
    runner.join(10)
    assert len(posted) == 1
    posted.pop()()
    assert runs == ["toolkit", threading.current_thread().name]


def test_asks_within_the_gap_wait_it_out_and_an_urgent_ask_does_not():
    from dreamtray.desktop.merged import Merged

    posted: list = []
    later: list[tuple[float, object]] = []
    runs: list[str] = []
    state = {"now": "busy 0%"}
    merged = Merged(lambda: runs.append(state["now"]), posted.append, min_gap=30.0)
    merged.post_later = lambda seconds, work: later.append((seconds, work))
    merged(urgent=True)  # a new state
    posted.pop()()
    state["now"] = "busy 50%"
    merged()  # the first progress after a new state: at once
    assert len(posted) == 1 and later == []
    posted.pop()()
    state["now"] = "busy 50%, a preview"
    merged()  # right after a drawing: it waits out the gap
    assert posted == [] and len(later) == 1 and 29 < later[0][0] <= 30
    state["now"] = "busy 100%"
    merged()
    assert len(later) == 1, "merged into the waiting run"
    state["now"] = "idle"
    merged(urgent=True)  # the job ended: shown at once, not after the gap
    assert len(posted) == 1
    posted.pop()()
    later.pop()[1]()
    assert runs == ["busy 0%", "busy 50%", "idle", "idle"]


def test_without_a_toolkit_loop_the_work_runs_at_once():
    from dreamtray.desktop.merged import Merged

    runs: list[int] = []
    merged = Merged(lambda: runs.append(1))
    merged()
    merged()
    assert runs == [1, 1]


# -- the menu, built in this process ------------------------------------------------------------------


class ExtraItems:
    """A plugin that adds a tray item, and one whose hook raises."""

    def __init__(self) -> None:
        self.called_with = []
        self.called = threading.Event()

    @property
    def good(self):
        from dreamtray import hookimpl
        from dreamtray.api import MenuItem

        plugin = self

        class Good:
            @hookimpl
            def tray_menu_items(self, host):
                def callback(tray_host):
                    plugin.called_with.append(tray_host)
                    plugin.called.set()

                return [MenuItem("Say hello", callback)]

        return Good()

    @property
    def broken(self):
        from dreamtray import hookimpl

        class Broken:
            @hookimpl
            def tray_menu_items(self, host):
                raise RuntimeError("no menu today")

        return Broken()


def test_the_menu_offers_everything_and_plugin_items_run_isolated(xsession, user_dirs, monkeypatch):
    from dreamtray.app import App
    from dreamtray.desktop.tray import TrayHost

    monkeypatch.setenv("DREAMTRAY_PLUGINS", "clipboard,wallpaper,styles")
    monkeypatch.setenv("PYSTRAY_BACKEND", "gtk")
    from dreamtray.desktop.menu import build_menu

    extra = ExtraItems()
    host = TrayHost(App())
    host.app.plugins.register(extra.good, name="good")
    host.app.plugins.register(extra.broken, name="broken")
    try:
        menu = build_menu(host)
        texts = [item.text for item in menu.items if item.visible]
        assert texts == [
            "From selection: Copy image to clipboard",
            "From selection: Set as wallpaper",
            "Refine last image with selection",
            "Type a prompt…",
            "Last prompt again",
            "More like this",
            "Queue: empty",
            "- - - -",
            "Style",
            "Engine",
            "Open gallery",
            "Pause hotkeys",
            "Unload model",
            "Start at login",
            "Plugins",
            "Say hello",
            "Wallpapers",
            "- - - -",
            "Quit",
        ]
        items = {item.text: item for item in menu}
        host.download_line = "downloading someone/model: 45% of 2.1 GB, 35.2 MB/s"
        shown = list(menu)
        assert [item.text for item in shown[:3]] == [host.download_line, "Cancel download", texts[0]]
        assert shown[0].enabled is False and shown[1].enabled
        host.download_line = ""
        assert items["From selection: Copy image to clipboard"].default, "the config's default action"
        assert not items["From selection: Set as wallpaper"].default
        assert items["Last prompt again"].enabled is False, "no prompt yet"
        host.history = ["a lighthouse"]
        again = [entry.text for entry in items["Last prompt again"].submenu.items]
        assert items["Last prompt again"].enabled and again == ["Copy image to clipboard", "Set as wallpaper"]
        assert items["Pause hotkeys"].checked is False and items["Start at login"].checked is False
        styles = list(items["Style"].submenu.items)
        assert [s.text for s in styles] == ["None", "Illustration", "Photography", "Wallpaper"]
        assert styles[0].checked is True and styles[0].radio
        wallpaper_pack = [s.text for s in styles[3].submenu.items]
        assert len(wallpaper_pack) > 3 and all(s.radio for s in styles[3].submenu.items)
        modes = list(items["Wallpapers"].submenu.items)
        assert [m.text for m in modes] == [
            "Each monitor its own image",
            "One image across all monitors",
            "The same image on each monitor",
        ]
        assert [m.checked for m in modes] == [True, False, False] and all(m.radio for m in modes)
        engines = list(items["Engine"].submenu.items)
        assert [e.text for e in engines] == ["local"] and engines[0].checked and engines[0].radio
        plugins = [p.text for p in items["Plugins"].submenu.items]
        assert "clipboard 0.1.0 (ok)" in plugins and "wallpaper 0.1.0 (ok)" in plugins
        assert any(p.startswith("broken") and p.endswith("(errors)") for p in plugins)
        assert any("no menu today" in e for e in host.app.plugins.records["broken"].errors)
        items["Say hello"](None)
        assert extra.called.wait(10) and extra.called_with == [host]
    finally:
        host.queue.close()


def test_run_without_a_desktop_says_what_it_needs(tmp_path):
    import subprocess
    import sys

    from cli_env import DreamtrayHome

    home = DreamtrayHome.create(tmp_path, plugins="clipboard", XDG_RUNTIME_DIR=str(tmp_path))
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "PYSTRAY_BACKEND"):
        home.env.pop(name, None)
    result = subprocess.run(
        [sys.executable, "-m", "dreamtray", "run"], env=home.env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert "The tray icon cannot be shown here" in result.stderr and "needs a desktop session" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_menu_offers_only_the_actions_that_are_installed(xsession, user_dirs, monkeypatch):
    from dreamtray.app import App
    from dreamtray.desktop.tray import TrayHost

    monkeypatch.setenv("DREAMTRAY_PLUGINS", "clipboard")
    monkeypatch.setenv("PYSTRAY_BACKEND", "gtk")
    from dreamtray.desktop.menu import build_menu

    host = TrayHost(App())
    try:
        texts = [item.text for item in build_menu(host).items if item.visible]
        assert texts[:4] == [
            "From selection: Copy image to clipboard",
            "Refine last image with selection",
            "Type a prompt…",
            "Last prompt again",
        ]
        assert not any("allpaper" in text for text in texts), texts
        reply = host.from_selection("wallpaper", "trigger")
        assert reply == {"ok": False, "message": "No action called 'wallpaper'. Actions: clipboard."}
    finally:
        host.queue.close()
