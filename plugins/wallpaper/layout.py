"""From generated images to one picture per monitor, in each wallpaper mode.

- `per-monitor`: each monitor its own image, made at its aspect ratio from the same prompt with consecutive
  seeds (the first is the image the action was given, made for the primary monitor);
- `span`: one image made at the aspect of the whole desktop's bounding box, cut into each monitor's part;
- `same`: the one image on every monitor.

Every picture is scaled to cover its monitor exactly (see `fit.cover`), so that it can be shown pixel for pixel.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from .fit import cover
from .screens import Screen, bounding_box

if TYPE_CHECKING:
    from PIL.Image import Image

Mode = Literal["per-monitor", "span", "same"]
MODES: dict[Mode, str] = {
    "per-monitor": "Each monitor its own image",
    "span": "One image across all monitors",
    "same": "The same image on each monitor",
}
"""Each mode, as the tray's Wallpapers menu names it (the config's `[plugins.wallpaper]` `mode`)."""
DEFAULT_MODE: Mode = "per-monitor"
MakeImage = Callable[[int, Screen], Path]
"""`make(index, screen)`: a new image for the monitor at `index` (1, 2, ...), made at that monitor's aspect."""


@dataclass(frozen=True)
class Placement:
    """A wallpaper file for one monitor; `screen` None: the file for the whole desktop, scaled by the desktop."""

    screen: Screen | None
    path: Path


def aspect_for(mode: Mode, screens: Sequence[Screen]) -> float | None:
    """The aspect ratio the first image should be made at (None without a screen)."""
    if not screens:
        return None
    return bounding_box(screens).aspect if mode == "span" and len(screens) > 1 else screens[0].aspect


def pictures(mode: Mode, first: Path, screens: Sequence[Screen], make: MakeImage) -> list[tuple[Screen, Image]]:
    """One picture per monitor, each exactly its monitor's size, in the order of `screens`."""
    from PIL import Image

    with Image.open(first) as opened:
        image = opened.convert("RGB")
    if mode == "span" and len(screens) > 1:
        return span(image, screens)
    if mode == "per-monitor":
        sources = [image] + [_open_rgb(make(index, screen)) for index, screen in enumerate(screens) if index]
        return [(screen, cover(source, screen.width, screen.height)) for screen, source in zip(screens, sources)]
    return [(screen, cover(image, screen.width, screen.height)) for screen in screens]


def span(image: Image, screens: Sequence[Screen]) -> list[tuple[Screen, Image]]:
    """`image` scaled to cover the desktop's bounding box, then cut along each monitor."""
    desktop = bounding_box(screens)
    whole = cover(image, desktop.width, desktop.height)
    return [
        (screen, whole.crop((screen.x - desktop.x, screen.y - desktop.y, *_far_corner(screen, desktop))))
        for screen in screens
    ]


def compose(placements: Sequence[tuple[Screen, Image]]) -> Image:
    """One picture of the whole desktop's bounding box, each monitor's picture at its place (black between)."""
    from PIL import Image

    desktop = bounding_box([screen for screen, _ in placements])
    canvas = Image.new("RGB", (desktop.width, desktop.height))
    for screen, picture in placements:
        canvas.paste(picture, (screen.x - desktop.x, screen.y - desktop.y))
    return canvas


def _far_corner(screen: Screen, desktop: Screen) -> tuple[int, int]:
    return screen.x - desktop.x + screen.width, screen.y - desktop.y + screen.height


def _open_rgb(path: Path) -> Image:
    from PIL import Image

    with Image.open(path) as opened:
        return opened.convert("RGB")
