"""One small wallpaper setter per desktop, chosen by platform and $XDG_CURRENT_DESKTOP (as Variety does).

Every setter runs programs with argument lists, never through a shell. `current()` tells what the desktop
shows now where the desktop can be asked, so that it can be restored later.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse


class WallpaperError(RuntimeError):
    """The wallpaper could not be set; the message says why and what would help."""


def run(args: list[str], timeout: float = 15) -> str:
    """Run a program; its stdout, or WallpaperError with its complaint."""
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise WallpaperError(f"{args[0]} is not installed: it is needed to set the wallpaper here.") from None
    except subprocess.TimeoutExpired:
        raise WallpaperError(f"{args[0]} did not finish within {timeout:.0f} s.") from None
    if done.returncode != 0:
        complaint = (done.stderr or done.stdout).strip() or f"exit code {done.returncode}"
        raise WallpaperError(f"{args[0]} could not set the wallpaper: {complaint}")
    return done.stdout


def path_from_uri(value: str) -> Path | None:
    parsed = urlparse(value)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if not parsed.scheme and value.startswith("/"):
        return Path(value)
    return None


class Setter:
    name = "base"

    def set(self, path: Path) -> None:
        raise NotImplementedError

    def current(self) -> Path | None:
        """The wallpaper the desktop shows now, where the desktop can tell."""
        return None


class GSettingsSetter(Setter):
    """GNOME and its relatives keep the wallpaper in gsettings keys."""

    schema = "org.gnome.desktop.background"
    keys = ("picture-uri", "picture-uri-dark")
    optional_keys = ("picture-uri-dark",)  # GNOME before 42 has no dark key
    as_uri = True

    def __init__(self, name: str) -> None:
        self.name = name

    def set(self, path: Path) -> None:
        value = path.resolve().as_uri() if self.as_uri else str(path.resolve())
        run(["gsettings", "set", self.schema, "picture-options", "zoom"])
        for key in self.keys:
            try:
                run(["gsettings", "set", self.schema, key, value])
            except WallpaperError:
                if key not in self.optional_keys:
                    raise

    def current(self) -> Path | None:
        try:
            value = ast.literal_eval(run(["gsettings", "get", self.schema, self.keys[0]]).strip())
        except (WallpaperError, ValueError, SyntaxError):
            return None
        return path_from_uri(value) if isinstance(value, str) and value else None


class CinnamonSetter(GSettingsSetter):
    schema = "org.cinnamon.desktop.background"
    keys = ("picture-uri",)


class MateSetter(GSettingsSetter):
    schema = "org.mate.background"
    keys = ("picture-filename",)
    as_uri = False


class KdeSetter(Setter):
    name = "kde"

    def set(self, path: Path) -> None:
        if shutil.which("plasma-apply-wallpaperimage"):
            run(["plasma-apply-wallpaperimage", str(path.resolve())])
            return
        script = (
            "for (const desktop of desktops()) {"
            " desktop.wallpaperPlugin = 'org.kde.image';"
            " desktop.currentConfigGroup = ['Wallpaper', 'org.kde.image', 'General'];"
            f" desktop.writeConfig('Image', {json.dumps(path.resolve().as_uri())}); }}"
        )
        qdbus = shutil.which("qdbus6") or shutil.which("qdbus") or "qdbus"
        run([qdbus, "org.kde.plasmashell", "/PlasmaShell", "org.kde.PlasmaShell.evaluateScript", script])


class XfceSetter(Setter):
    """XFCE keeps one `last-image` property per monitor and workspace: set them all."""

    name = "xfce"
    channel = ["xfconf-query", "--channel", "xfce4-desktop"]

    def _image_properties(self) -> list[str]:
        listed = run([*self.channel, "--list"]).split()
        return [prop for prop in listed if prop.endswith("/last-image")]

    def set(self, path: Path) -> None:
        properties = self._image_properties() or ["/backdrop/screen0/monitor0/workspace0/last-image"]
        for prop in properties:
            run([*self.channel, "--property", prop, "--create", "--type", "string", "--set", str(path.resolve())])
            style = prop.removesuffix("last-image") + "image-style"
            run([*self.channel, "--property", style, "--create", "--type", "int", "--set", "5"])  # 5 = zoomed

    def current(self) -> Path | None:
        try:
            properties = self._image_properties()
            return Path(run([*self.channel, "--property", properties[0]]).strip()) if properties else None
        except WallpaperError:
            return None


class SwaySetter(Setter):
    name = "sway"

    def set(self, path: Path) -> None:
        # swaymsg joins its arguments into one sway command: quote the path for sway's own parser.
        quoted = '"' + str(path.resolve()).replace("\\", "\\\\").replace('"', '\\"') + '"'
        run(["swaymsg", "output", "*", "bg", quoted, "fill"])


class X11RootSetter(Setter):
    """Any X11 desktop without its own wallpaper service: paint the root window (xwallpaper, else feh)."""

    def __init__(self, program: str) -> None:
        self.name = program

    def set(self, path: Path) -> None:
        if self.name == "xwallpaper":
            run(["xwallpaper", "--zoom", str(path.resolve())])
        else:
            run(["feh", "--no-fehbg", "--bg-fill", str(path.resolve())])


class WindowsSetter(Setter):
    name = "windows"
    SPI_GETDESKWALLPAPER = 0x0073
    SPI_SETDESKWALLPAPER = 0x0014
    SPIF_UPDATEINIFILE_SENDCHANGE = 0x01 | 0x02

    def set(self, path: Path) -> None:
        import ctypes

        ok = ctypes.windll.user32.SystemParametersInfoW(  # type: ignore[attr-defined]
            self.SPI_SETDESKWALLPAPER, 0, str(path.resolve()), self.SPIF_UPDATEINIFILE_SENDCHANGE
        )
        if not ok:
            raise WallpaperError(f"Windows refused the wallpaper (error {ctypes.GetLastError()}).")  # type: ignore[attr-defined]

    def current(self) -> Path | None:
        import ctypes

        buffer = ctypes.create_unicode_buffer(1024)
        if ctypes.windll.user32.SystemParametersInfoW(self.SPI_GETDESKWALLPAPER, len(buffer), buffer, 0):  # type: ignore[attr-defined]
            return Path(buffer.value) if buffer.value else None
        return None


class MacSetter(Setter):
    name = "macos"
    SCRIPT = [
        "on run argv",
        'tell application "System Events" to tell every desktop to set picture to (item 1 of argv)',
        "end run",
    ]

    def set(self, path: Path) -> None:
        lines = [arg for line in self.SCRIPT for arg in ("-e", line)]
        run(["osascript", *lines, str(path.resolve())])


def pick_setter(environ: dict[str, str] | None = None, platform: str | None = None) -> Setter:
    """The setter for this desktop: by platform, then $XDG_CURRENT_DESKTOP, then sway, then the X11 root."""
    environ = os.environ if environ is None else environ
    platform = platform or sys.platform
    if platform.startswith("win"):
        return WindowsSetter()
    if platform == "darwin":
        return MacSetter()
    desktops = [part.strip().lower() for part in environ.get("XDG_CURRENT_DESKTOP", "").split(":")]
    for desktop in desktops:
        if desktop in ("gnome", "gnome-classic", "gnome-flashback", "unity", "ubuntu", "budgie", "pantheon"):
            return GSettingsSetter("gnome")
        if desktop in ("x-cinnamon", "cinnamon"):
            return CinnamonSetter("cinnamon")
        if desktop == "mate":
            return MateSetter("mate")
        if desktop == "kde":
            return KdeSetter()
        if desktop == "xfce":
            return XfceSetter()
        if desktop == "sway":
            return SwaySetter()
    if environ.get("SWAYSOCK"):
        return SwaySetter()
    if environ.get("DISPLAY") and not environ.get("WAYLAND_DISPLAY"):
        for program in ("xwallpaper", "feh"):
            if shutil.which(program):
                return X11RootSetter(program)
        raise WallpaperError("Setting the wallpaper on X11 needs xwallpaper or feh: please install one of them.")
    raise WallpaperError(
        "dreamtray cannot set the wallpaper on this desktop "
        f"(XDG_CURRENT_DESKTOP={environ.get('XDG_CURRENT_DESKTOP', '')!r}); "
        "supported: GNOME, KDE Plasma, XFCE, MATE, Cinnamon, sway, X11 with xwallpaper or feh, Windows, macOS."
    )
