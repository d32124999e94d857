"""One small wallpaper setter per desktop, chosen by platform and $XDG_CURRENT_DESKTOP (as Variety does).

Every setter runs programs with argument lists, never through a shell. `current()` tells what the desktop
shows now where the desktop can be asked, so that it can be restored later.
"""

from __future__ import annotations

import ast
import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import unquote, urlparse

from dreamtray.api import display_server, write_atomically

from .layout import Placement
from .screens import Screen, bounding_box, xinerama_heads


class WallpaperError(RuntimeError):
    """The wallpaper could not be set; the message says why and what would help."""


def run(args: list[str], timeout: float = 15, env: Mapping[str, str] | None = None) -> str:
    """Run a program; its stdout, or WallpaperError with its complaint."""
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, env=env)
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
    """Sets the wallpaper of one kind of desktop: one file for every monitor (`set`), or one file per monitor
    (`set_each`) through the desktop's own per-monitor mechanism where it has one."""

    name = "base"

    def set(self, path: Path) -> None:
        raise NotImplementedError

    def set_each(self, placements: Sequence[Placement]) -> None:
        """Each file on its monitor. Without a per-monitor mechanism: the files composed into one picture of
        the whole desktop, shown across all monitors (`set_whole`)."""
        self.set_whole(write_composed(placements))

    def set_whole(self, path: Path) -> None:
        """`path`, as big as the whole desktop, across all monitors (each shows its part)."""
        self.set(path)

    def current(self) -> Path | None:
        """The wallpaper the desktop shows now, where the desktop can tell."""
        return None


def write_composed(placements: Sequence[Placement]) -> Path:
    """The monitors' files composed into one picture of the desktop, saved beside the first one."""
    from PIL import Image

    from .layout import compose

    pictures = []
    for placement in placements:
        assert placement.screen is not None, "only per-monitor files can be composed"
        with Image.open(placement.path) as opened:
            pictures.append((placement.screen, opened.convert("RGB")))
    desktop = bounding_box([screen for screen, _ in pictures])
    first = placements[0].path
    target = first.with_name(f"desktop-{first.stem}-{desktop.width}x{desktop.height}.png")
    buffer = io.BytesIO()
    compose(pictures).save(buffer, format="PNG", compress_level=1)
    write_atomically(target, buffer.getvalue())
    return target


class GSettingsSetter(Setter):
    """GNOME and its relatives keep the wallpaper in gsettings keys."""

    schema = "org.gnome.desktop.background"
    keys = ("picture-uri", "picture-uri-dark")
    optional_keys = ("picture-uri-dark",)  # GNOME before 42 has no dark key
    as_uri = True

    def __init__(self, name: str) -> None:
        self.name = name

    def set(self, path: Path, option: str = "zoom") -> None:
        value = path.resolve().as_uri() if self.as_uri else str(path.resolve())
        run(["gsettings", "set", self.schema, "picture-options", option])
        for key in self.keys:
            try:
                run(["gsettings", "set", self.schema, key, value])
            except WallpaperError:
                if key not in self.optional_keys:
                    raise

    def set_whole(self, path: Path) -> None:
        """GNOME, Cinnamon and MATE span one picture across all monitors with the `spanned` option."""
        self.set(path, option="spanned")

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
    """Plasma: `plasma-apply-wallpaperimage` for one picture; per screen, a desktop script over D-Bus that
    gives each desktop the picture of the screen with its geometry."""

    name = "kde"
    SCRIPT = """
const files = %s;
for (const desktop of desktops()) {
  const area = screenGeometry(desktop.screen);
  const key = [area.x, area.y, area.width, area.height].join(",");
  const file = files[key] || files["*"];
  if (!file) continue;
  desktop.wallpaperPlugin = "org.kde.image";
  desktop.currentConfigGroup = ["Wallpaper", "org.kde.image", "General"];
  desktop.writeConfig("Image", file);
}
"""

    CURRENT_SCRIPT = """
const desktop = desktops()[0];
desktop.currentConfigGroup = ["Wallpaper", "org.kde.image", "General"];
print(desktop.readConfig("Image"));
"""

    def set(self, path: Path) -> None:
        if shutil.which("plasma-apply-wallpaperimage"):
            run(["plasma-apply-wallpaperimage", str(path.resolve())])
            return
        self._evaluate(self.SCRIPT % json.dumps({"*": path.resolve().as_uri()}))

    def set_each(self, placements: Sequence[Placement]) -> None:
        files = {_geometry_key(p.screen): p.path.resolve().as_uri() for p in placements if p.screen}
        self._evaluate(self.SCRIPT % json.dumps(files))

    def current(self) -> Path | None:
        try:
            value = self._evaluate(self.CURRENT_SCRIPT).strip()
        except WallpaperError:
            return None
        return path_from_uri(value) if value else None

    def _evaluate(self, script: str) -> str:
        qdbus = shutil.which("qdbus6") or shutil.which("qdbus") or "qdbus"
        return run([qdbus, "org.kde.plasmashell", "/PlasmaShell", "org.kde.PlasmaShell.evaluateScript", script])


def _geometry_key(screen: Screen) -> str:
    return f"{screen.x},{screen.y},{screen.width},{screen.height}"


class XfceSetter(Setter):
    """XFCE keeps `last-image` per monitor and workspace (`/backdrop/screen0/monitor<NAME>/workspace<N>/`):
    one picture goes to every such property; per monitor, each monitor's properties get its own."""

    name = "xfce"
    channel = ["xfconf-query", "--channel", "xfce4-desktop"]
    ZOOMED = "5"

    def _image_properties(self) -> list[str]:
        listed = run([*self.channel, "--list"]).split()
        return [prop for prop in listed if prop.startswith("/backdrop/screen0/") and prop.endswith("/last-image")]

    def _workspaces(self, listed: list[str]) -> list[str]:
        """The workspaces that have a picture already, and every workspace xfwm4 has."""
        return sorted(
            {prop.split("/")[4] for prop in listed} | {f"workspace{n}" for n in range(self._workspace_count())}
        )

    def set(self, path: Path) -> None:
        listed = self._image_properties()
        for monitor in sorted({prop.split("/")[3] for prop in listed}) or ["monitor0"]:
            for workspace in self._workspaces(listed):
                self._set_image(f"/backdrop/screen0/{monitor}/{workspace}/last-image", path)

    def set_each(self, placements: Sequence[Placement]) -> None:
        workspaces = self._workspaces(self._image_properties())
        for index, placement in enumerate(placements):
            monitor = f"monitor{placement.screen.name if placement.screen and placement.screen.name else index}"
            for workspace in workspaces:
                self._set_image(f"/backdrop/screen0/{monitor}/{workspace}/last-image", placement.path)

    def _workspace_count(self) -> int:
        """xfwm4's number of workspaces (1 when it cannot tell)."""
        try:
            return max(1, int(run(["xfconf-query", "--channel", "xfwm4", "--property", "/general/workspace_count"])))
        except (WallpaperError, ValueError):
            return 1

    def _set_image(self, prop: str, path: Path) -> None:
        run([*self.channel, "--property", prop, "--create", "--type", "string", "--set", str(path.resolve())])
        style = prop.removesuffix("last-image") + "image-style"
        run([*self.channel, "--property", style, "--create", "--type", "int", "--set", self.ZOOMED])

    def current(self) -> Path | None:
        try:
            properties = self._image_properties()
            return Path(run([*self.channel, "--property", properties[0]]).strip()) if properties else None
        except WallpaperError:
            return None


def sway_quoted(path: Path) -> str:
    """A path quoted for sway's own command parser (swaymsg joins its arguments into one command)."""
    return '"' + str(path.resolve()).replace("\\", "\\\\").replace('"', '\\"') + '"'


class SwaySetter(Setter):
    """sway: `output NAME bg FILE fill`, for every output (`*`) or each by name."""

    name = "sway"

    def set(self, path: Path) -> None:
        run(["swaymsg", "output", "*", "bg", sway_quoted(path), "fill"])

    def set_each(self, placements: Sequence[Placement]) -> None:
        if not all(p.screen and p.screen.name for p in placements):
            raise WallpaperError("sway did not name its outputs: cannot give each its own wallpaper.")
        for placement in placements:
            run(["swaymsg", "output", placement.screen.name, "bg", sway_quoted(placement.path), "fill"])  # type: ignore[union-attr]


class X11RootSetter(Setter):
    """Any X11 desktop without its own wallpaper service: paint the root window (xwallpaper, else feh).

    Per monitor: xwallpaper's `--output` for RandR outputs, feh's one file per Xinerama head; else the
    monitors' files composed into one picture of the screen."""

    def __init__(self, program: str) -> None:
        self.name = program

    def set(self, path: Path) -> None:
        if self.name == "xwallpaper":
            run(["xwallpaper", "--zoom", str(path.resolve())])
        else:
            run(["feh", "--no-fehbg", "--bg-fill", str(path.resolve())])

    def set_each(self, placements: Sequence[Placement]) -> None:
        if self.name == "xwallpaper" and all(p.screen and p.screen.name for p in placements):
            run(
                [
                    "xwallpaper",
                    *[a for p in placements for a in ("--output", p.screen.name, "--zoom", str(p.path.resolve()))],
                ]
            )  # type: ignore[union-attr]
            return
        if self.name == "feh":
            by_box = {p.screen.box: p.path for p in placements if p.screen}
            heads = xinerama_heads()
            if heads and all(head.box in by_box for head in heads):
                run(["feh", "--no-fehbg", "--bg-fill", *[str(by_box[head.box].resolve()) for head in heads]])
                return
        super().set_each(placements)

    def set_whole(self, path: Path) -> None:
        if self.name == "xwallpaper":
            run(["xwallpaper", "--no-randr", "--center", str(path.resolve())])
        else:
            run(["feh", "--no-fehbg", "--no-xinerama", "--bg-center", str(path.resolve())])


class WindowsSetter(Setter):
    """Windows: one picture through SystemParametersInfo; per monitor, IDesktopWallpaper::SetWallpaper for
    the monitor with each picture's rectangle (a PowerShell script, the pictures in $env:DREAMTRAY_WALLPAPERS)."""

    name = "windows"
    SPI_GETDESKWALLPAPER = 0x0073
    SPI_SETDESKWALLPAPER = 0x0014
    SPIF_UPDATEINIFILE_SENDCHANGE = 0x01 | 0x02
    PER_MONITOR_SCRIPT = """
$ErrorActionPreference = "Stop"
Add-Type -TypeDefinition @"
using System;
using System.Runtime.InteropServices;
[StructLayout(LayoutKind.Sequential)]
public struct DreamtrayRect { public int Left; public int Top; public int Right; public int Bottom; }
[ComImport, Guid("B92B56A9-8B55-4E14-9A89-0199BBB6F93B"), InterfaceType(ComInterfaceType.InterfaceIsIUnknown)]
public interface IDesktopWallpaper {
    void SetWallpaper([MarshalAs(UnmanagedType.LPWStr)] string monitorID,
                      [MarshalAs(UnmanagedType.LPWStr)] string wallpaper);
    [return: MarshalAs(UnmanagedType.LPWStr)] string GetWallpaper([MarshalAs(UnmanagedType.LPWStr)] string monitorID);
    [return: MarshalAs(UnmanagedType.LPWStr)] string GetMonitorDevicePathAt(uint monitorIndex);
    uint GetMonitorDevicePathCount();
    DreamtrayRect GetMonitorRECT([MarshalAs(UnmanagedType.LPWStr)] string monitorID);
}
[ComImport, Guid("C2CF3110-460E-4fc1-B9D0-8A1C0C9CC4BD")]
public class DreamtrayDesktopWallpaper {}
"@
$wallpaper = [IDesktopWallpaper](New-Object DreamtrayDesktopWallpaper)
$files = $env:DREAMTRAY_WALLPAPERS | ConvertFrom-Json
for ($i = 0; $i -lt $wallpaper.GetMonitorDevicePathCount(); $i++) {
    $monitor = $wallpaper.GetMonitorDevicePathAt($i)
    $r = $wallpaper.GetMonitorRECT($monitor)
    $key = "{0},{1},{2},{3}" -f $r.Left, $r.Top, ($r.Right - $r.Left), ($r.Bottom - $r.Top)
    $file = $files.$key
    if ($file) { $wallpaper.SetWallpaper($monitor, $file) }
}
"""

    def set(self, path: Path) -> None:
        import ctypes

        ok = ctypes.windll.user32.SystemParametersInfoW(  # type: ignore[attr-defined]
            self.SPI_SETDESKWALLPAPER, 0, str(path.resolve()), self.SPIF_UPDATEINIFILE_SENDCHANGE
        )
        if not ok:
            raise WallpaperError(f"Windows refused the wallpaper (error {ctypes.GetLastError()}).")  # type: ignore[attr-defined]

    def set_each(self, placements: Sequence[Placement]) -> None:
        run(*self.per_monitor_call(placements))

    def per_monitor_call(self, placements: Sequence[Placement]) -> tuple[list[str], float, dict[str, str]]:
        """The PowerShell command, its time limit and its environment for one picture per monitor."""
        files = {_geometry_key(p.screen): str(p.path.resolve()) for p in placements if p.screen}
        args = ["powershell", "-NoProfile", "-NonInteractive", "-Command", self.PER_MONITOR_SCRIPT]
        return args, 30, {**os.environ, "DREAMTRAY_WALLPAPERS": json.dumps(files)}

    def current(self) -> Path | None:
        import ctypes

        buffer = ctypes.create_unicode_buffer(1024)
        if ctypes.windll.user32.SystemParametersInfoW(self.SPI_GETDESKWALLPAPER, len(buffer), buffer, 0):  # type: ignore[attr-defined]
            return Path(buffer.value) if buffer.value else None
        return None


class MacSetter(Setter):
    """macOS: System Events for one picture; per screen, NSWorkspace's desktop image for the NSScreen with
    each picture's size and left edge (JavaScript for Automation)."""

    name = "macos"
    SCRIPT = [
        "on run argv",
        'tell application "System Events" to tell every desktop to set picture to (item 1 of argv)',
        "end run",
    ]
    PER_SCREEN_SCRIPT = """
ObjC.import("AppKit");
function run(argv) {
  const files = JSON.parse(argv[0]);
  const screens = $.NSScreen.screens;
  for (let i = 0; i < screens.count; i++) {
    const screen = screens.objectAtIndex(i);
    const f = screen.frame;
    const file = files[[f.origin.x, f.size.width, f.size.height].join(",")];
    if (!file) continue;
    const url = $.NSURL.fileURLWithPath(file);
    $.NSWorkspace.sharedWorkspace.setDesktopImageURLForScreenOptionsError(url, screen, $({}), null);
  }
}
"""

    def set(self, path: Path) -> None:
        lines = [arg for line in self.SCRIPT for arg in ("-e", line)]
        run(["osascript", *lines, str(path.resolve())])

    def set_each(self, placements: Sequence[Placement]) -> None:
        run(self.per_screen_args(placements))

    def per_screen_args(self, placements: Sequence[Placement]) -> list[str]:
        files = {
            f"{p.screen.x},{p.screen.width},{p.screen.height}": str(p.path.resolve()) for p in placements if p.screen
        }
        return ["osascript", "-l", "JavaScript", "-e", self.PER_SCREEN_SCRIPT, json.dumps(files)]


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
    server = display_server(environ)
    if environ.get("SWAYSOCK") and server == "wayland":
        return SwaySetter()
    if server == "x11":
        for program in ("xwallpaper", "feh"):
            if shutil.which(program):
                return X11RootSetter(program)
        raise WallpaperError("Setting the wallpaper on X11 needs xwallpaper or feh: please install one of them.")
    raise WallpaperError(
        "dreamtray cannot set the wallpaper on this desktop "
        f"(XDG_CURRENT_DESKTOP={environ.get('XDG_CURRENT_DESKTOP', '')!r}); "
        "supported: GNOME, KDE Plasma, XFCE, MATE, Cinnamon, sway, X11 with xwallpaper or feh, Windows, macOS."
    )
