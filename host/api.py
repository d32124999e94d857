"""Types that plugins use with the hooks in `dreamtray.hookspecs`. Light to import: no torch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from PIL.Image import Image

    from dreamtray.engine.client import Engine
    from dreamtray.request import Request


@dataclass(frozen=True)
class GeneratedImage:
    """An image that is already saved in the gallery, handed to actions."""

    path: Path
    request: Request
    """The request as generated, seed included."""

    def open(self) -> Image:
        from PIL import Image

        return Image.open(self.path)

    def png_bytes(self) -> bytes:
        return self.path.read_bytes()


@dataclass(frozen=True)
class Action:
    """Something to do with a finished image, offered by the tray, hotkeys, `trigger` and `generate --action`.

    `run` returns a short sentence for the notification (or None for the default one).
    `shape_request`, when given, adjusts the request first, for example to the screen's aspect ratio.
    """

    name: str
    label: str
    run: Callable[[GeneratedImage], str | None]
    shape_request: Callable[[Request], Request] | None = None


@dataclass(frozen=True)
class MenuItem:
    """A tray menu entry added by a plugin; `callback(host)` runs on a worker thread."""

    label: str
    callback: Callable[[Any], None]


class EngineFactory(Protocol):
    def __call__(self, settings: dict[str, Any]) -> Engine: ...
