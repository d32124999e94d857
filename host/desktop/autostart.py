"""Start dreamtray at login, for this user; switched on and off from the tray and `dreamtray autostart`.

Linux: an XDG autostart entry ($XDG_CONFIG_HOME/autostart/dreamtray.desktop).
Windows: a value under HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run.
macOS: a LaunchAgent (~/Library/LaunchAgents/org.dreamtray.dreamtray.plist).
"""

from __future__ import annotations

import configparser
import plistlib
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from dreamtray.atomic import write_atomically
from dreamtray.desktop.launcher import APP_ID, BUNDLE_ID, desktop_entry, launch_command, remove_file

RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"


class LinuxAutostart:
    """The XDG autostart entry; also honours a desktop's own switch (Hidden, X-GNOME-Autostart-enabled)."""

    @property
    def where(self) -> Path:
        import platformdirs

        return platformdirs.user_config_path() / "autostart" / f"{APP_ID}.desktop"

    def is_enabled(self) -> bool:
        entry = configparser.ConfigParser(interpolation=None, strict=False)
        entry.optionxform = str  # keys are case-sensitive
        try:
            entry.read_string(self.where.read_text(encoding="utf-8"))
            section = entry["Desktop Entry"]
        except (OSError, configparser.Error, KeyError):
            return False
        return section.get("Hidden", "false") != "true" and section.get("X-GNOME-Autostart-enabled", "true") != "false"

    def enable(self, command: Sequence[str]) -> None:
        write_atomically(self.where, desktop_entry(command, autostart=True), mode=0o644)

    def disable(self) -> bool:
        return remove_file(self.where)


def launch_agent(command: Sequence[str], log_dir: Path) -> bytes:
    """The LaunchAgent plist that starts `command` at login and restarts it only after a crash."""
    return plistlib.dumps(
        {
            "Label": BUNDLE_ID,
            "ProgramArguments": list(command),
            "RunAtLoad": True,
            "KeepAlive": {"SuccessfulExit": False},
            "ProcessType": "Interactive",
            "StandardOutPath": str(log_dir / "dreamtray.log"),
            "StandardErrorPath": str(log_dir / "dreamtray.log"),
        }
    )


class MacAutostart:
    """A LaunchAgent plist; launchd reads it at the next login (loading it now would start a second tray)."""

    @property
    def where(self) -> Path:
        return Path.home() / "Library" / "LaunchAgents" / f"{BUNDLE_ID}.plist"

    def is_enabled(self) -> bool:
        try:
            agent = plistlib.loads(self.where.read_bytes())
        except (OSError, plistlib.InvalidFileException):
            return False
        return not agent.get("Disabled", False)

    def enable(self, command: Sequence[str]) -> None:
        log_dir = Path.home() / "Library" / "Logs" / APP_ID
        log_dir.mkdir(parents=True, exist_ok=True)
        write_atomically(self.where, launch_agent(command, log_dir), mode=0o644)

    def disable(self) -> bool:
        return remove_file(self.where)


def run_value(command: Sequence[str]) -> str:
    """The Run key's data for `command`: one command line, quoted the way Windows parses it."""
    return subprocess.list2cmdline(command)


class WindowsAutostart:
    """The value "dreamtray" under the current user's Run key."""

    where = f"HKCU\\{RUN_KEY}\\{APP_ID}"

    def is_enabled(self) -> bool:
        import winreg

        try:
            with winreg.OpenKey(winreg.HKEY_CURRENT_USER, RUN_KEY) as key:
                winreg.QueryValueEx(key, APP_ID)
        except FileNotFoundError:
            return False
        return True

    def enable(self, command: Sequence[str]) -> None:
        import winreg

        with winreg.CreateKey(winreg.HKEY_CURRENT_USER, RUN_KEY) as key:
            winreg.SetValueEx(key, APP_ID, 0, winreg.REG_SZ, run_value(command))

    def disable(self) -> bool:
        import winreg

        try:
            with winreg.OpenKey(winreg.HKEY_CURRENT_USER, RUN_KEY, 0, winreg.KEY_SET_VALUE) as key:
                winreg.DeleteValue(key, APP_ID)
        except FileNotFoundError:
            return False
        return True


def for_this_platform() -> LinuxAutostart | MacAutostart | WindowsAutostart:
    if sys.platform == "win32":
        return WindowsAutostart()
    if sys.platform == "darwin":
        return MacAutostart()
    return LinuxAutostart()


def is_enabled() -> bool:
    """Whether dreamtray starts at login."""
    return for_this_platform().is_enabled()


def enable() -> str:
    """Start dreamtray at login from now on; returns where that is recorded."""
    autostart = for_this_platform()
    autostart.enable(launch_command())
    return str(autostart.where)


def disable() -> bool:
    """Stop starting dreamtray at login; True when there was something to remove."""
    return for_this_platform().disable()


def where() -> str:
    """Where the start at login is recorded on this platform."""
    return str(for_this_platform().where)
