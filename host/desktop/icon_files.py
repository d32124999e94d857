"""The icon files shipped inside the package, drawn by icons/make_icons.py from one source."""

from __future__ import annotations

from pathlib import Path

ICON_DIR = Path(__file__).resolve().parent.parent / "icons"
APP_SIZES = (16, 22, 24, 32, 48, 64, 128, 256, 512)
TRAY_SIZES = (22, 64)
TRAY_STATES = ("idle", "busy", "error")


def app_png(size: int) -> Path:
    """The app icon as a square PNG of `size` px (one of APP_SIZES)."""
    if size not in APP_SIZES:
        raise ValueError(f"no {size} px app icon; sizes drawn: {', '.join(map(str, APP_SIZES))}")
    return ICON_DIR / f"dreamtray-{size}.png"


def app_ico() -> Path:
    """The multi-size Windows icon."""
    return ICON_DIR / "dreamtray.ico"


def app_icns() -> Path:
    """The macOS icon family."""
    return ICON_DIR / "dreamtray.icns"


def tray_png(state: str = "idle", size: int = 64) -> Path:
    """The tray icon for `state` ("idle", "busy" or "error") at 22 or 64 px."""
    if state not in TRAY_STATES:
        raise ValueError(f"unknown tray state {state!r}; known: {', '.join(TRAY_STATES)}")
    if size not in TRAY_SIZES:
        raise ValueError(f"no {size} px tray icon; sizes drawn: {', '.join(map(str, TRAY_SIZES))}")
    return ICON_DIR / f"tray-{state}-{size}.png"
