"""A real, private desktop session for tests: Xvfb, a D-Bus session bus, dunst, trayer, keyfile gsettings.

`XSession` starts each part on demand and `close()` stops everything it started, plus any process that
inherited its display (xclip keepers, notify-send, tray icons), so no process outlives the tests.
Missing programs raise `MissingProgram` naming the Debian package: tests that need a desktop fail, never skip.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

PACKAGES = {
    "Xvfb": "xvfb",
    "dbus-daemon": "dbus",
    "dbus-send": "dbus",
    "dunst": "dunst",
    "dunstctl": "dunst",
    "trayer": "trayer",
}

DUNST_CONFIG = """\
[global]
    history_length = 100
    sticky_history = yes
    idle_threshold = 0
    show_age_threshold = -1
[urgency_low]
    timeout = 0
[urgency_normal]
    timeout = 0
[urgency_critical]
    timeout = 0
"""


class MissingProgram(RuntimeError):
    """A program the desktop tests need is not installed."""


def need(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        package = PACKAGES.get(program, program)
        raise MissingProgram(f"{program} is not installed; the desktop tests need it (apt install {package})")
    return path


def wait_until(check, timeout: float, what: str, interval: float = 0.02):
    """Poll `check()` until it returns something truthy; raise TimeoutError naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


@dataclass
class XSession:
    """One private X display with its own bus and home; `env` is what programs in it should see."""

    screens: tuple[tuple[int, int], ...] = ((800, 600),)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="dreamtray-x-")))
    env: dict[str, str] = field(default_factory=dict)
    _processes: list[subprocess.Popen] = field(default_factory=list)
    _dbus_pid: int | None = None
    display: str = ""

    def start(self, dunst: bool = True) -> XSession:
        try:
            self._start_xvfb()
            self._make_dirs()
            self._start_dbus()
            if dunst:
                self._start_dunst()
        except BaseException:
            self.close()
            raise
        return self

    # -- parts -------------------------------------------------------------------------------------

    def _start_xvfb(self) -> None:
        xvfb = need("Xvfb")
        read_end, write_end = os.pipe()
        args = [xvfb, "-displayfd", str(write_end), "-nolisten", "tcp", "-noreset"]
        for number, (width, height) in enumerate(self.screens):
            args += ["-screen", str(number), f"{width}x{height}x24"]
        proc = subprocess.Popen(args, pass_fds=(write_end,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(write_end)
        self._processes.append(proc)
        with os.fdopen(read_end) as reader:
            number = reader.readline().strip()
        if not number:
            raise RuntimeError(f"Xvfb exited with code {proc.poll()} before reporting its display")
        self.display = f":{number}"

    def _make_dirs(self) -> None:
        dirs = {
            "HOME": "home",
            "XDG_CONFIG_HOME": "home/.config",
            "XDG_DATA_HOME": "home/.local/share",
            "XDG_CACHE_HOME": "home/.cache",
            "XDG_STATE_HOME": "home/.local/state",
            "XDG_RUNTIME_DIR": "runtime",
        }
        for name, relative in dirs.items():
            path = self.root / relative
            path.mkdir(parents=True, exist_ok=True)
            self.env[name] = str(path)
        (self.root / "runtime").chmod(0o700)
        self.env.update(
            DISPLAY=self.display,
            GSETTINGS_BACKEND="keyfile",
            XDG_SESSION_TYPE="x11",
            XDG_CURRENT_DESKTOP="",
            NO_AT_BRIDGE="1",  # GTK programs would otherwise start an accessibility bus
        )
        self.env.pop("WAYLAND_DISPLAY", None)

    def _start_dbus(self) -> None:
        out = subprocess.run(
            [need("dbus-daemon"), "--session", "--fork", "--print-address=1", "--print-pid=1"],
            env=self.environ(),
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.split()
        self.env["DBUS_SESSION_BUS_ADDRESS"], self._dbus_pid = out[0], int(out[1])

    def _start_dunst(self) -> None:
        config = self.root / "dunstrc"
        config.write_text(DUNST_CONFIG)
        self.spawn([need("dunst"), "-config", str(config)])
        wait_until(lambda: self.bus_name_has_owner("org.freedesktop.Notifications"), 10, "dunst on the bus")

    def start_tray(self) -> subprocess.Popen:
        """Start trayer, the system tray that icons dock into, and wait for it to own the tray selection."""
        trayer = self.spawn(
            [need("trayer"), "--edge", "top", "--align", "right", "--widthtype", "pixel", "--width", "200"]
        )
        wait_until(lambda: self.selection_owned("_NET_SYSTEM_TRAY_S0"), 10, "trayer to own the tray")
        return trayer

    def stop_tray(self, trayer: subprocess.Popen) -> None:
        """Stop trayer, so that its panel no longer covers part of the root window."""
        trayer.terminate()
        trayer.wait(timeout=10)
        wait_until(lambda: not self.selection_owned("_NET_SYSTEM_TRAY_S0"), 10, "trayer to leave")

    # -- helpers for tests -------------------------------------------------------------------------

    def environ(self, **extra: str) -> dict[str, str]:
        """The process environment for a program in this session.

        When this session is the one exported to `os.environ`, that environment is used as it is, so that
        per-test changes (fresh HOME and XDG folders) reach the programs too.
        """
        env = {k: v for k, v in os.environ.items() if k not in ("WAYLAND_DISPLAY", "SWAYSOCK")}
        if env.get("DISPLAY") != self.display:
            env.update(self.env)
        env.update(extra)
        return env

    def run(self, args: list[str], **kwargs) -> subprocess.CompletedProcess:
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("timeout", 20)
        return subprocess.run(args, env=self.environ(), **kwargs)

    def spawn(self, args: list[str], **kwargs) -> subprocess.Popen:
        """Start a long-running program in this session; `close()` stops it."""
        kwargs.setdefault("stdout", subprocess.DEVNULL)
        kwargs.setdefault("stderr", subprocess.DEVNULL)
        proc = subprocess.Popen(args, env=self.environ(), **kwargs)
        self._processes.append(proc)
        return proc

    def bus_name_has_owner(self, name: str) -> bool:
        reply = self.run(
            [
                need("dbus-send"),
                "--session",
                "--print-reply",
                "--dest=org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus.NameHasOwner",
                f"string:{name}",
            ],
            text=True,
        )
        return reply.returncode == 0 and "boolean true" in reply.stdout

    def selection_owned(self, selection: str) -> bool:
        """Whether some X client owns the selection named `selection`."""
        from Xlib import display as xdisplay  # python-xlib comes with pynput

        conn = xdisplay.Display(self.display)
        try:
            return conn.get_selection_owner(conn.intern_atom(selection)) != 0
        finally:
            conn.close()

    def notifications(self) -> list[dict[str, str]]:
        """Close what dunst shows and return its history, newest first, as {summary, body, ...} strings."""
        import json

        self.run([need("dunstctl"), "close-all"], check=True)
        history = json.loads(self.run([need("dunstctl"), "history"], check=True, text=True).stdout)
        return [{key: value.get("data") for key, value in item.items()} for item in history["data"][0]]

    # -- teardown ----------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop everything started here, and any leftover process that runs on this display."""
        for proc in reversed(self._processes):
            _stop(proc)
        self._processes.clear()
        for proc in self._strays():
            _terminate_pid(proc.pid)
        if self._dbus_pid is not None:
            _terminate_pid(self._dbus_pid)
            self._dbus_pid = None
        shutil.rmtree(self.root, ignore_errors=True)

    def _strays(self) -> list[psutil.Process]:
        """Our own processes whose environment points at this session's runtime directory."""
        runtime = self.env.get("XDG_RUNTIME_DIR")
        if not runtime:
            return []
        strays = []
        for proc in psutil.process_iter():
            try:
                if proc.pid != os.getpid() and proc.environ().get("XDG_RUNTIME_DIR") == runtime:
                    strays.append(proc)
            except (psutil.Error, OSError):
                continue
        return strays

    def __enter__(self) -> XSession:
        return self if self.display else self.start()

    def __exit__(self, *exc) -> None:
        self.close()


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def _terminate_pid(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        psutil.Process(pid).wait(timeout=5)
    except psutil.TimeoutExpired:
        os.kill(pid, signal.SIGKILL)
    except psutil.Error:
        pass
