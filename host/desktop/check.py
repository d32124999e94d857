"""What the desktop must provide for dreamtray: each piece found or missing, with how to fix what is missing.

Linux: a clipboard tool (xclip on X11, wl-clipboard on Wayland), PyGObject for the tray's GTK backend, and on
GNOME the AppIndicator extension (GNOME Shell shows no tray icons without it).
macOS: Accessibility permission, which the global hotkey needs. Windows needs nothing extra.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

APPINDICATOR_EXTENSIONS = ("appindicatorsupport@rgcjonas.gmail.com", "ubuntu-appindicators@ubuntu.com")

# Each package manager's install command and its names for what dreamtray needs.
PACKAGE_MANAGERS = {
    "apt-get": ("sudo apt install", {"gi": "python3-gi", "appindicator": "gnome-shell-extension-appindicator"}),
    "dnf": ("sudo dnf install", {"gi": "python3-gobject", "appindicator": "gnome-shell-extension-appindicator"}),
    "pacman": ("sudo pacman -S", {"gi": "python-gobject", "appindicator": "gnome-shell-extension-appindicator"}),
    "zypper": ("sudo zypper install", {"gi": "python3-gobject", "appindicator": "gnome-shell-extension-appindicator"}),
}


@dataclass(frozen=True)
class Finding:
    need: str
    ok: bool | None  # None: could not be checked from here
    fix: str = ""

    def line(self) -> str:
        mark = {True: "ok     ", False: "MISSING", None: "UNSURE "}[self.ok]
        return f"{mark} {self.need}" + (f"\n        -> {self.fix}" if self.fix and not self.ok else "")


def install_hint(need: str) -> str:
    """The command that installs `need` ("xclip", "wl-clipboard", "gi", "appindicator") on this system."""
    for manager, (command, names) in PACKAGE_MANAGERS.items():
        if shutil.which(manager):
            return f"{command} {names.get(need, need)}"
    return f"install the package that provides {need} with your system's package manager"


def _clipboard() -> Finding:
    if os.environ.get("WAYLAND_DISPLAY") or os.environ.get("XDG_SESSION_TYPE") == "wayland":
        found = bool(shutil.which("wl-copy") and shutil.which("wl-paste"))
        return Finding("clipboard tool for Wayland (wl-copy, wl-paste)", found, install_hint("wl-clipboard"))
    return Finding("clipboard tool for X11 (xclip)", bool(shutil.which("xclip")), install_hint("xclip"))


def _pygobject() -> Finding:
    return Finding(
        "PyGObject (gi), for the tray icon's menu",
        importlib.util.find_spec("gi") is not None,
        f"{install_hint('gi')}, then run the installer again: it builds dreamtray's environment on the system "
        "Python that has it",
    )


def _gnome_tray() -> Finding | None:
    desktops = os.environ.get("XDG_CURRENT_DESKTOP", "").upper().split(":")
    if "GNOME" not in desktops:
        return None
    need = "GNOME AppIndicator extension, so that GNOME Shell shows tray icons"
    fix = f"{install_hint('appindicator')}, log out and in, then: gnome-extensions enable {APPINDICATOR_EXTENSIONS[0]}"
    tool = shutil.which("gnome-extensions")
    try:
        listed = (
            subprocess.run([tool, "list", "--enabled"], capture_output=True, text=True, timeout=10) if tool else None
        )
    except (OSError, subprocess.TimeoutExpired):
        listed = None
    if listed is None or listed.returncode != 0:
        return Finding(need, None, f"could not ask GNOME Shell (gnome-extensions); make sure it is enabled: {fix}")
    enabled = set(listed.stdout.split())
    return Finding(need, any(uuid in enabled for uuid in APPINDICATOR_EXTENSIONS), fix)


def _mac_accessibility() -> Finding:
    need = "Accessibility permission, for the global hotkey"
    fix = (
        "System Settings > Privacy & Security > Accessibility: press +, add "
        f"{Path(sys.executable).resolve()} (Cmd+Shift+G lets you type the path) and switch it on"
    )
    try:
        services = ctypes.cdll.LoadLibrary(
            "/System/Library/Frameworks/ApplicationServices.framework/ApplicationServices"
        )
    except OSError:
        return Finding(need, None, fix)
    services.AXIsProcessTrusted.restype = ctypes.c_bool
    return Finding(need, bool(services.AXIsProcessTrusted()), fix)


def check() -> list[Finding]:
    """The desktop's needs on this platform, each found or not."""
    if sys.platform == "darwin":
        return [_mac_accessibility()]
    if sys.platform == "win32":
        return []
    return [finding for finding in (_clipboard(), _pygobject(), _gnome_tray()) if finding is not None]
