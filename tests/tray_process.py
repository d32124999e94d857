"""A real `dreamtray run` in a private home inside the test X session, and ways to look at it from outside:
its icon docked in trayer, its title, the clipboard, the gallery, `dreamtray trigger`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
from cli_env import DreamtrayHome
from xsession import XSession, wait_until

PLUGINS = "clipboard,wallpaper,styles"


@dataclass(frozen=True)
class Docked:
    """The icon's window inside the tray: id and absolute geometry."""

    window: int
    x: int
    y: int
    width: int
    height: int

    @property
    def center(self) -> tuple[int, int]:
        return self.x + self.width // 2, self.y + self.height // 2


def tray_home(root: Path, session: XSession, config: str = "", plugins: str = PLUGINS, **extra: str) -> DreamtrayHome:
    """A private home for a tray host in `session`: tiny model, first-party plugins, its own runtime folder."""
    runtime = root / "runtime"
    runtime.mkdir(parents=True, exist_ok=True, mode=0o700)
    desktop = {
        key: session.env[key] for key in ("DISPLAY", "DBUS_SESSION_BUS_ADDRESS", "GSETTINGS_BACKEND", "NO_AT_BRIDGE")
    }
    settings = {
        **desktop,
        "XDG_RUNTIME_DIR": str(runtime),
        "XDG_SESSION_TYPE": "x11",
        "XDG_CURRENT_DESKTOP": "",
        "PYSTRAY_BACKEND": "gtk",
        **extra,
    }
    home = DreamtrayHome.create(root, plugins=plugins, **settings)
    home.env.pop("WAYLAND_DISPLAY", None)
    if config:
        path = root / "config" / "dreamtray" / "config.toml"
        path.write_text(path.read_text() + config)
    return home


class TrayProcess:
    """`python -m dreamtray run`, its log in a file; `stop()` ends it (and fails loudly if it had to be killed)."""

    def __init__(self, home: DreamtrayHome) -> None:
        self.home = home
        self.log = home.root / "tray.log"
        self.started_at = time.monotonic()
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "dreamtray", "run"],
                env=home.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_docked(self, timeout: float = 30) -> tuple[Docked, float]:
        """The docked icon, and the seconds from launch until it was there."""

        def docked() -> Docked | None:
            if self.process.poll() is not None:
                raise AssertionError(f"dreamtray run exited {self.process.returncode}:\n{self.log_text()}")
            return find_docked_icon(self.home.env["DISPLAY"], self.pid)

        found = wait_until(docked, timeout, "the dreamtray icon in the tray", interval=0.01)
        return found, time.monotonic() - self.started_at

    def wait_started(self, timeout: float = 30) -> dict:
        """The status once the host has finished starting: hotkeys listening, the engine on its way.

        The icon docks first, and the rest of the start-up follows in the icon's setup, so tests wait for it.
        """
        return wait_until(
            lambda: (s := self.status())["hotkeys_listening"] and s, timeout, "the tray to finish starting"
        )

    def trigger(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        return self.home.run("trigger", *args, timeout=timeout)

    def status(self) -> dict:
        result = self.trigger("status", timeout=30)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def wait_idle(self, timeout: float = 180) -> dict:
        return wait_until(
            lambda: (s := self.status())["pending"] == 0 and s, timeout, "the tray to finish its jobs", 0.2
        )

    def descendants(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def quit(self) -> None:
        """Quit through `dreamtray trigger quit`, as a user would; SIGTERM when it has not ended in 90 s."""
        self.trigger("quit", timeout=60)
        try:
            self.process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            self.stop()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError("dreamtray run did not stop on SIGTERM within 60 s")


def find_docked_icon(display: str, pid: int) -> Docked | None:
    """The viewable window of process `pid` embedded in the system tray's window, else None."""
    from Xlib import X
    from Xlib import display as xdisplay
    from Xlib.error import XError

    conn = xdisplay.Display(display)
    try:
        tray = conn.get_selection_owner(conn.intern_atom("_NET_SYSTEM_TRAY_S0"))
        if not tray:
            return None
        pid_atom = conn.intern_atom("_NET_WM_PID")
        root = conn.screen().root
        stack = [root]
        while stack:
            window = stack.pop()
            try:
                stack.extend(window.query_tree().children)
                owner = window.get_full_property(pid_atom, X.AnyPropertyType)
                if not owner or owner.value[0] != pid or not _inside_tray(conn, window):
                    continue
                if window.get_attributes().map_state != X.IsViewable:
                    continue
                geometry = window.get_geometry()
                where = window.translate_coords(root, 0, 0)
                return Docked(window.id, -where.x, -where.y, geometry.width, geometry.height)
            except XError:
                continue
        return None
    finally:
        conn.close()


def _inside_tray(conn, window) -> bool:
    """Whether the window is embedded in the tray (trayer reparents icons into its panel)."""
    node = window.query_tree().parent
    root = conn.screen().root
    while node and node.id != root.id:
        wm_class = node.get_wm_class() or ()
        if "trayer" in wm_class or "panel" in wm_class:
            return True
        node = node.query_tree().parent
    return False


def window_title(display: str, window: int) -> str:
    from Xlib import display as xdisplay

    conn = xdisplay.Display(display)
    try:
        return conn.create_resource_object("window", window).get_wm_name() or ""
    finally:
        conn.close()


def read_clipboard_png(session: XSession) -> bytes:
    done = session.run(["xclip", "-selection", "clipboard", "-t", "image/png", "-o"], timeout=10)
    return done.stdout if done.returncode == 0 else b""


def serve_primary(session: XSession, text: str) -> subprocess.Popen:
    """Own the PRIMARY selection with `text` (xclip keeps serving it until another owner takes it)."""
    keeper = session.spawn(["xclip", "-quiet", "-selection", "primary"], stdin=subprocess.PIPE)
    keeper.stdin.write(text.encode())
    keeper.stdin.close()
    wait_until(lambda: session.run(["xclip", "-o", "-selection", "primary"]).stdout == text.encode(), 10, "PRIMARY")
    return keeper


def press(session: XSession, keys: str) -> None:
    session.run(["xdotool", "key", keys], check=True)


def open_menu_and_pick(session: XSession, icon: Docked, keys: list[str]) -> None:
    """Right-click the icon, then walk its GTK menu with the keyboard."""
    session.run(["dunstctl", "close-all"], check=True)  # a notification must not cover the icon
    x, y = icon.center
    session.run(["xdotool", "mousemove", str(x), str(y), "click", "3"], check=True)
    wait_until(lambda: _menu_is_open(session), 10, "the tray menu to open")
    session.run(["xdotool", "key", "--delay", "60", *keys], check=True)
    session.run(["xdotool", "mousemove", "0", "0"], check=True)  # off the icon: its tooltip must not linger


def _menu_is_open(session: XSession) -> bool:
    from Xlib import X
    from Xlib import display as xdisplay

    conn = xdisplay.Display(session.display)
    try:
        type_atom = conn.intern_atom("_NET_WM_WINDOW_TYPE")
        menu_types = {
            conn.intern_atom("_NET_WM_WINDOW_TYPE_POPUP_MENU"),
            conn.intern_atom("_NET_WM_WINDOW_TYPE_DROPDOWN_MENU"),
        }
        for window in conn.screen().root.query_tree().children:
            kind = window.get_full_property(type_atom, X.AnyPropertyType)
            if kind and set(kind.value) & menu_types and window.get_attributes().map_state == X.IsViewable:
                return True
        return False
    finally:
        conn.close()


def newest(folder: Path, pattern: str = "*.png") -> list[Path]:
    return sorted(folder.glob(pattern), key=lambda p: p.stat().st_mtime_ns) if folder.is_dir() else []


def wait_gone(pids: list[int], timeout: float = 60) -> None:
    def gone() -> bool:
        return not [
            pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        ]

    wait_until(gone, timeout, f"processes {pids} to end")


def processes_using(root: Path) -> list[psutil.Process]:
    """Processes whose command line or environment mentions `root` (the private home)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.pid == os.getpid():
                continue
            if any(str(root) in part for part in proc.cmdline()) or str(root) in proc.environ().get(
                "XDG_STATE_HOME", ""
            ):
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


def shown_window(session: XSession, title: str) -> int:
    """The id of a top-level window named `title` that is on screen, else 0 (the session runs no window manager,
    so top-level windows are the root's children)."""
    from Xlib import X
    from Xlib import display as xdisplay
    from Xlib.error import XError

    conn = xdisplay.Display(session.display)
    try:
        for window in conn.screen().root.query_tree().children:
            try:
                if window.get_wm_name() == title and window.get_attributes().map_state == X.IsViewable:
                    return window.id
            except XError:
                continue
        return 0
    finally:
        conn.close()


def primary_text(session: XSession) -> str:
    done = session.run(["xclip", "-o", "-selection", "primary"], timeout=10)
    return done.stdout.decode(errors="replace") if done.returncode == 0 else ""
