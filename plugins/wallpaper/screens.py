"""The screens of this desktop (size and position), through screeninfo."""

from __future__ import annotations

import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Screen:
    x: int
    y: int
    width: int
    height: int
    name: str | None = None
    primary: bool = False

    @property
    def aspect(self) -> float:
        return self.width / self.height


def detect_screens() -> list[Screen]:
    """Every monitor, primary first; [] when no screen can be found (no display, headless)."""
    import screeninfo

    try:
        monitors = screeninfo.get_monitors()
    except screeninfo.ScreenInfoError:
        monitors = []
    if len(monitors) <= 1 and sys.platform.startswith("linux"):  # some X servers tell of heads only via Xinerama
        try:
            monitors = max(monitors, screeninfo.get_monitors(screeninfo.Enumerator.Xinerama), key=len)
        except (screeninfo.ScreenInfoError, NotImplementedError, OSError, ImportError):
            pass
    screens = [Screen(m.x, m.y, m.width, m.height, m.name, bool(m.is_primary)) for m in monitors]
    return sorted(screens, key=lambda s: (not s.primary, (s.x, s.y) != (0, 0), s.y, s.x))


def primary_screen() -> Screen | None:
    screens = detect_screens()
    return screens[0] if screens else None
