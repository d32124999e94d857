"""A real, private desktop session for tests: Xvfb, a D-Bus session bus, dunst, trayer, keyfile gsettings;
and `SwaySession`, a headless sway (Wayland) with its own bus, run as an unprivileged user.

Each session starts its parts on demand and `close()` stops everything it started, plus any process that
inherited its runtime folder (xclip or wl-copy keepers, notify-send, tray icons), so no process outlives the
tests. Missing programs raise `MissingProgram` naming the Debian package: tests that need a desktop fail,
never skip.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL.Image import Image

import psutil

PACKAGES = {
    "Xvfb": "xvfb",
    "dbus-daemon": "dbus",
    "dbus-send": "dbus",
    "dunst": "dunst",
    "dunstctl": "dunst",
    "trayer": "trayer",
    "sway": "sway",
    "swaymsg": "sway",
    "swaybg": "swaybg",
    "grim": "grim",
    "wl-copy": "wl-clipboard",
    "wl-paste": "wl-clipboard",
    "useradd": "passwd",
    "userdel": "passwd",
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


class DesktopSession:
    """What the X and sway sessions share: private HOME/XDG folders under `root` (exported in `env`), dunst as
    the notification daemon; `run` runs a program in the session."""

    root: Path
    env: dict[str, str]

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

    def run(self, args: list[str], **kwargs) -> subprocess.CompletedProcess:
        raise NotImplementedError

    def notifications(self) -> list[dict[str, str]]:
        """Close what dunst shows and return its history, newest first, as {summary, body, ...} strings."""
        self.run([need("dunstctl"), "close-all"], check=True)
        history = json.loads(self.run([need("dunstctl"), "history"], check=True, text=True).stdout)
        return [{key: value.get("data") for key, value in item.items()} for item in history["data"][0]]


@dataclass
class XSession(DesktopSession):
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
        super()._make_dirs()
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
        return _processes_in(runtime) if runtime else []

    def __enter__(self) -> XSession:
        return self if self.display else self.start()

    def __exit__(self, *exc) -> None:
        self.close()


SWAY_ENV = {"WLR_BACKENDS": "headless", "WLR_RENDERER": "pixman", "WLR_LIBINPUT_NO_DEVICES": "1"}
"""wlroots without a GPU, a seat or input devices: sway draws into memory."""


@dataclass
class SwaySession(DesktopSession):
    """A headless sway with outputs of the given sizes (HEADLESS-1, HEADLESS-2, ...), its own runtime folder,
    home, session bus and dunst; `env` is what Wayland clients in it should see (no DISPLAY).

    sway refuses to run as root: when the tests run as root, a throw-away system user is made for the
    session (and removed by `close()`), and sway and every program run through `run`/`spawn` run as that
    user. Files for those programs go under `root` (`give` hands them over).
    """

    outputs: tuple[tuple[int, int], ...] = ((800, 600),)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="dreamtray-sway-")))
    env: dict[str, str] = field(default_factory=dict)
    uid: int = field(default_factory=os.getuid)
    gid: int = field(default_factory=os.getgid)
    _user: str | None = None
    _processes: list[subprocess.Popen] = field(default_factory=list)
    _dbus_pid: int | None = None

    def start(self, dunst: bool = True) -> SwaySession:
        try:
            if os.geteuid() == 0:
                self._make_user()
            self._make_dirs()
            self._start_sway()
            for width, height in self.outputs[1:]:
                self.swaymsg("create_output")
                self.swaymsg("output", self.output_names()[-1], "resolution", f"{width}x{height}")
            self._start_dbus()
            if dunst:
                self.spawn([need("dunst")])
                wait_until(lambda: self.bus_name_has_owner("org.freedesktop.Notifications"), 10, "dunst on the bus")
        except BaseException:
            self.close()
            raise
        return self

    # -- parts -------------------------------------------------------------------------------------

    def _make_user(self) -> None:
        name = f"dreamtray-t{os.getpid()}"
        subprocess.run(
            [need("useradd"), "--system", "--no-create-home", "--home-dir", str(self.root / "home"),
             "--shell", "/usr/sbin/nologin", name],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip
        self._user = name
        entry = pwd.getpwnam(name)
        self.uid, self.gid = entry.pw_uid, entry.pw_gid

    def _make_dirs(self) -> None:
        super()._make_dirs()
        self.give(self.root)
        (self.root / "runtime").chmod(0o700)
        width, height = self.outputs[0]
        (self.root / "sway.conf").write_text(f"output HEADLESS-1 resolution {width}x{height}\n")
        keep = ("PATH", "LANG", "LC_ALL", "TZ")
        self.env.update({k: os.environ[k] for k in keep if k in os.environ})
        self.env.update(XDG_SESSION_TYPE="wayland", XDG_CURRENT_DESKTOP="sway", NO_AT_BRIDGE="1")

    def _start_sway(self) -> None:
        runtime = self.root / "runtime"
        log = (self.root / "sway.log").open("wb")
        self._processes.append(
            self._popen([need("sway"), "--config", str(self.root / "sway.conf")], SWAY_ENV, stdout=log, stderr=log)
        )
        wayland = wait_until(lambda: sorted(runtime.glob("wayland-*[0-9]")), 20, "sway's Wayland socket")
        ipc = wait_until(lambda: sorted(runtime.glob("sway-ipc.*.sock")), 20, "sway's IPC socket")
        self.env.update(WAYLAND_DISPLAY=wayland[0].name, SWAYSOCK=str(ipc[0]))
        wait_until(lambda: self.run([need("swaymsg"), "-t", "get_version"]).returncode == 0, 20, "sway to answer")

    def _start_dbus(self) -> None:
        out = self.run(
            [need("dbus-daemon"), "--session", "--fork", "--print-address=1", "--print-pid=1"], check=True, text=True
        ).stdout.split()
        self.env["DBUS_SESSION_BUS_ADDRESS"], self._dbus_pid = out[0], int(out[1])

    # -- helpers for tests -------------------------------------------------------------------------

    def give(self, *paths: Path) -> None:
        """Hand files and folders (recursively) to the session's user."""
        for path in paths:
            for item in [path, *(path.rglob("*") if path.is_dir() else [])]:
                os.chown(item, self.uid, self.gid, follow_symlinks=False)

    def environ(self, **extra: str) -> dict[str, str]:
        return {**self.env, **extra}

    def _popen(self, args: list[str], extra: dict[str, str] | None = None, **kwargs) -> subprocess.Popen:
        as_user = {"user": self.uid, "group": self.gid, "extra_groups": []} if self._user else {}
        return subprocess.Popen(args, env=self.environ(**(extra or {})), cwd=self.root / "home", **as_user, **kwargs)

    def run(self, args: list[str], **kwargs) -> subprocess.CompletedProcess:
        """Run a program as the session's user, in the session; like subprocess.run (output captured)."""
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("timeout", 20)
        extra = kwargs.pop("env", None)
        as_user = {"user": self.uid, "group": self.gid, "extra_groups": []} if self._user else {}
        return subprocess.run(args, env=self.environ(**(extra or {})), cwd=self.root / "home", **as_user, **kwargs)

    def spawn(self, args: list[str], **kwargs) -> subprocess.Popen:
        """Start a long-running program as the session's user; `close()` stops it."""
        kwargs.setdefault("stdout", subprocess.DEVNULL)
        kwargs.setdefault("stderr", subprocess.DEVNULL)
        proc = self._popen(args, kwargs.pop("env", None), **kwargs)
        self._processes.append(proc)
        return proc

    def copy(self, text: str, primary: bool = False) -> None:
        """Offer `text` with wl-copy (its keeper serves it until another client takes the selection)."""
        args = [need("wl-copy"), *(["--primary"] if primary else []), text]
        self.run(args, capture_output=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        read = [need("wl-paste"), *(["--primary"] if primary else []), "--no-newline"]
        wait_until(lambda: self.run(read, text=True).stdout == text, 10, "wl-copy to serve the text")

    def swaymsg(self, *command: str) -> object:
        done = self.run([need("swaymsg"), "--raw", *command], check=True, text=True)
        return json.loads(done.stdout) if done.stdout.strip() else None

    def output_names(self) -> list[str]:
        outputs = self.swaymsg("-t", "get_outputs")
        return [output["name"] for output in outputs]  # type: ignore[union-attr]

    def screenshot(self, output: str | None = None) -> Image:
        """The pixels sway shows, on one output or on all, read with grim."""
        from PIL import Image

        shot = self.root / "home" / "grim.png"
        self.run([need("grim"), *(["-o", output] if output else []), str(shot)], check=True)
        with Image.open(shot) as image:
            return image.convert("RGB")

    def bus_name_has_owner(self, name: str) -> bool:
        reply = self.run(
            [need("dbus-send"), "--session", "--print-reply", "--dest=org.freedesktop.DBus", "/org/freedesktop/DBus",
             "org.freedesktop.DBus.NameHasOwner", f"string:{name}"],
            text=True,
        )  # fmt: skip
        return reply.returncode == 0 and "boolean true" in reply.stdout

    # -- teardown ----------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop everything started here and any leftover process of this session; remove its user."""
        for proc in reversed(self._processes):
            _stop(proc)
        self._processes.clear()
        runtime = self.env.get("XDG_RUNTIME_DIR")
        for proc in _processes_in(runtime) if runtime else []:
            _terminate_pid(proc.pid)
        if self._dbus_pid is not None:
            _terminate_pid(self._dbus_pid)
            self._dbus_pid = None
        shutil.rmtree(self.root, ignore_errors=True)
        if self._user:
            subprocess.run([need("userdel"), self._user], capture_output=True, timeout=30)
            self._user = None

    def __enter__(self) -> SwaySession:
        return self if self.env.get("WAYLAND_DISPLAY") else self.start()

    def __exit__(self, *exc) -> None:
        self.close()


def _processes_in(runtime: str) -> list[psutil.Process]:
    """Our processes (and the session user's) whose environment points at `runtime`."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.pid != os.getpid() and proc.environ().get("XDG_RUNTIME_DIR") == runtime:
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


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
