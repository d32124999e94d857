"""The launcher that starts dreamtray from the desktop's menu, installed for this user.

Linux: a .desktop file in the XDG applications folder, with the icon in the hicolor icon theme.
Windows: a Start menu shortcut (.lnk), written through PowerShell's WScript.Shell.
macOS: a small app bundle in ~/Applications that starts the tray.
"""

from __future__ import annotations

import os
import plistlib
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from dreamtray.atomic import write_atomically
from dreamtray.desktop import icon_files

APP_ID = "dreamtray"
BUNDLE_ID = "org.dreamtray.dreamtray"
TRAY_ARGS = ("run",)
SUMMARY = "Select text, press a key, get an image"


def launch_command() -> list[str]:
    """The command line that starts the tray, taken from the environment dreamtray runs in."""
    bin_dir = Path(sys.executable).parent
    if sys.platform == "win32":
        # pythonw has no console window; a console script would open one.
        return [str(bin_dir / "pythonw.exe"), "-m", "dreamtray", *TRAY_ARGS]
    return [str(bin_dir / "dreamtray"), *TRAY_ARGS]


# --- Linux: freedesktop.org desktop entries --------------------------------------------------------------

_RESERVED = re.compile(r"[\s\"'\\><~|&;$*?#()`]")


def exec_value(command: Sequence[str]) -> str:
    """`command` as the Exec key of a desktop entry, quoted and escaped as the specification says."""
    quoted = []
    for arg in command:
        arg = arg.replace("%", "%%")
        if _RESERVED.search(arg):
            arg = '"' + re.sub(r'(["`$\\])', r"\\\1", arg) + '"'
        quoted.append(arg.replace("\\", "\\\\"))  # the string escape, applied on top of the quoting
    return " ".join(quoted)


def desktop_entry(command: Sequence[str], *, autostart: bool = False) -> str:
    """The text of dreamtray's desktop entry; `autostart` adds the keys read at login."""
    lines = [
        "[Desktop Entry]",
        "Type=Application",
        "Version=1.4",
        f"Name={APP_ID}",
        "GenericName=Text to image",
        f"Comment={SUMMARY}",
        f"Exec={exec_value(command)}",
        f"Icon={APP_ID}",
        "Terminal=false",
        "Categories=Graphics;",
        "Keywords=image;picture;diffusion;wallpaper;clipboard;",
        "StartupNotify=false",
    ]
    if autostart:
        lines.append("X-GNOME-Autostart-enabled=true")
    return "\n".join(lines) + "\n"


class LinuxLauncher:
    """The XDG applications entry and the hicolor icons under $XDG_DATA_HOME."""

    def __init__(self) -> None:
        import platformdirs

        self.data = platformdirs.user_data_path()

    @property
    def entry(self) -> Path:
        return self.data / "applications" / f"{APP_ID}.desktop"

    def icons(self) -> dict[Path, Path]:
        """Where each shipped PNG goes in the hicolor theme."""
        theme = self.data / "icons" / "hicolor"
        return {theme / f"{s}x{s}" / "apps" / f"{APP_ID}.png": icon_files.app_png(s) for s in icon_files.APP_SIZES}

    def install(self, command: Sequence[str]) -> list[Path]:
        for target, source in self.icons().items():
            write_atomically(target, source.read_bytes(), mode=0o644)
        write_atomically(self.entry, desktop_entry(command), mode=0o644)
        return [self.entry, *self.icons()]

    def remove(self) -> list[Path]:
        return [path for path in (self.entry, *self.icons()) if remove_file(path)]

    def installed(self) -> bool:
        return self.entry.exists()


# --- macOS: an app bundle ----------------------------------------------------------------------------------


def info_plist(app_version: str) -> bytes:
    """Info.plist of the bundle; LSUIElement keeps a tray app out of the Dock."""
    return plistlib.dumps(
        {
            "CFBundleName": APP_ID,
            "CFBundleDisplayName": APP_ID,
            "CFBundleIdentifier": BUNDLE_ID,
            "CFBundleExecutable": APP_ID,
            "CFBundleIconFile": APP_ID,
            "CFBundlePackageType": "APPL",
            "CFBundleShortVersionString": app_version,
            "CFBundleVersion": app_version,
            "LSUIElement": True,
            "LSMinimumSystemVersion": "11.0",
        }
    )


class MacLauncher:
    """~/Applications/dreamtray.app: a shell stub that runs the tray from dreamtray's environment."""

    @property
    def bundle(self) -> Path:
        return Path.home() / "Applications" / f"{APP_ID}.app"

    def install(self, command: Sequence[str]) -> list[Path]:
        contents = self.bundle / "Contents"
        write_atomically(contents / "Info.plist", info_plist(_app_version()), mode=0o644)
        write_atomically(contents / "MacOS" / APP_ID, f"#!/bin/sh\nexec {shlex.join(command)}\n", mode=0o755)
        write_atomically(contents / "Resources" / f"{APP_ID}.icns", icon_files.app_icns().read_bytes(), mode=0o644)
        return [self.bundle]

    def remove(self) -> list[Path]:
        if not self.bundle.exists():
            return []
        shutil.rmtree(self.bundle)
        return [self.bundle]

    def installed(self) -> bool:
        return self.bundle.exists()


# --- Windows: a Start menu shortcut -------------------------------------------------------------------------

SHORTCUT_SCRIPT = (
    "$shortcut = (New-Object -ComObject WScript.Shell).CreateShortcut($env:DREAMTRAY_LINK); "
    "$shortcut.TargetPath = $env:DREAMTRAY_TARGET; "
    "$shortcut.Arguments = $env:DREAMTRAY_ARGUMENTS; "
    "$shortcut.IconLocation = $env:DREAMTRAY_ICON; "
    "$shortcut.WorkingDirectory = $env:DREAMTRAY_WORKDIR; "
    "$shortcut.Description = $env:DREAMTRAY_DESCRIPTION; "
    "$shortcut.Save()"
)
"""Fixed PowerShell text; every value reaches it through the environment, never spliced into the script."""


def shortcut_values(command: Sequence[str], link: Path, icon: Path, workdir: Path) -> dict[str, str]:
    """The environment SHORTCUT_SCRIPT reads to write `link`, a shortcut that runs `command`."""
    return {
        "DREAMTRAY_LINK": str(link),
        "DREAMTRAY_TARGET": command[0],
        "DREAMTRAY_ARGUMENTS": subprocess.list2cmdline(command[1:]),
        "DREAMTRAY_ICON": f"{icon},0",
        "DREAMTRAY_WORKDIR": str(workdir),
        "DREAMTRAY_DESCRIPTION": SUMMARY,
    }


class WindowsLauncher:
    """dreamtray.lnk in the user's Start menu programs folder."""

    @property
    def link(self) -> Path:
        return Path(os.environ["APPDATA"]) / "Microsoft" / "Windows" / "Start Menu" / "Programs" / f"{APP_ID}.lnk"

    def install(self, command: Sequence[str]) -> list[Path]:
        self.link.parent.mkdir(parents=True, exist_ok=True)
        values = shortcut_values(command, self.link, icon_files.app_ico(), Path.home())
        written = subprocess.run(
            [
                "powershell.exe",
                "-NoProfile",
                "-NonInteractive",
                "-ExecutionPolicy",
                "Bypass",
                "-Command",
                SHORTCUT_SCRIPT,
            ],
            env={**os.environ, **values},
            capture_output=True,
            text=True,
        )
        if written.returncode != 0:
            raise OSError(f"PowerShell could not write the shortcut {self.link}: {written.stderr.strip()}")
        return [self.link]

    def remove(self) -> list[Path]:
        return [self.link] if remove_file(self.link) else []

    def installed(self) -> bool:
        return self.link.exists()


# --- the platform's launcher --------------------------------------------------------------------------------


def remove_file(path: Path) -> bool:
    """Remove `path` if it is there; True when it was."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def _app_version() -> str:
    try:
        return version("dreamtray")
    except PackageNotFoundError:
        return "0"


def for_this_platform() -> LinuxLauncher | MacLauncher | WindowsLauncher:
    if sys.platform == "win32":
        return WindowsLauncher()
    if sys.platform == "darwin":
        return MacLauncher()
    return LinuxLauncher()


def install() -> list[Path]:
    """Install (or refresh) the launcher for the environment dreamtray runs in; return what was written."""
    return for_this_platform().install(launch_command())


def remove() -> list[Path]:
    """Remove the launcher; return what was removed."""
    return for_this_platform().remove()
