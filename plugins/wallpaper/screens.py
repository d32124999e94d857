"""The monitors of this desktop (position, size, name): sway's outputs on sway, else screeninfo (X11,
Windows, macOS)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Screen:
    """One monitor: its place on the desktop in pixels, and its name where the system gives one."""

    x: int
    y: int
    width: int
    height: int
    name: str | None = None
    primary: bool = False

    @property
    def aspect(self) -> float:
        return self.width / self.height

    @property
    def box(self) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) on the desktop."""
        return self.x, self.y, self.x + self.width, self.y + self.height

    def as_data(self) -> dict[str, object]:
        return {"x": self.x, "y": self.y, "width": self.width, "height": self.height, "name": self.name}

    @classmethod
    def from_data(cls, data: dict[str, object]) -> Screen:
        name = data.get("name")
        return cls(
            int(data["x"]),
            int(data["y"]),
            int(data["width"]),
            int(data["height"]),
            name if isinstance(name, str) else None,
        )


def bounding_box(screens: Sequence[Screen]) -> Screen:
    """The smallest rectangle holding every monitor (the whole desktop)."""
    left, top = min(s.x for s in screens), min(s.y for s in screens)
    right, bottom = max(s.x + s.width for s in screens), max(s.y + s.height for s in screens)
    return Screen(left, top, right - left, bottom - top, "desktop")


def detect_screens() -> list[Screen]:
    """Every monitor, primary first; [] when no screen can be found (no display, headless)."""
    screens = _sway_outputs() if os.environ.get("SWAYSOCK") else None
    if screens is None:
        screens = _screeninfo_monitors()
    return sorted(screens, key=lambda s: (not s.primary, (s.x, s.y) != (0, 0), s.y, s.x))


def primary_screen() -> Screen | None:
    screens = detect_screens()
    return screens[0] if screens else None


def xinerama_heads() -> list[Screen]:
    """The X server's Xinerama heads in the server's order (the order feh gives its files to)."""
    import screeninfo

    try:
        monitors = screeninfo.get_monitors(screeninfo.Enumerator.Xinerama)
    except (screeninfo.ScreenInfoError, NotImplementedError, OSError, ImportError):
        return []
    return [Screen(m.x, m.y, m.width, m.height) for m in monitors]


def _screeninfo_monitors() -> list[Screen]:
    import screeninfo

    try:
        monitors = screeninfo.get_monitors()
    except screeninfo.ScreenInfoError:
        monitors = []
    screens = [Screen(m.x, m.y, m.width, m.height, m.name, bool(m.is_primary)) for m in monitors]
    if len(screens) <= 1 and sys.platform.startswith("linux"):
        # RandR monitors that are not outputs (xrandr --setmonitor) show only through Xinerama, nameless
        heads = xinerama_heads()
        if len(heads) > len(screens):
            screens = heads
    return screens


def _sway_outputs() -> list[Screen] | None:
    """sway's active outputs (None when swaymsg cannot tell)."""
    try:
        done = subprocess.run(
            ["swaymsg", "--raw", "--type", "get_outputs"], capture_output=True, text=True, timeout=10, check=True
        )
        outputs = json.loads(done.stdout)
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    screens = []
    for output in outputs:
        if not output.get("active"):
            continue
        rect, mode = output["rect"], output.get("current_mode") or output["rect"]
        screens.append(
            Screen(rect["x"], rect["y"], mode["width"], mode["height"], output["name"], bool(output.get("focused")))
        )
    return screens
