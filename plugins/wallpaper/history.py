"""Where wallpapers are kept, and which were set before: enough to undo, on every monitor."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dreamtray.api import write_atomically

from .layout import Placement
from .screens import Screen

KEEP_FILES = 10
"""Wallpaper files kept besides the current and the previous ones."""

Wallpapers = tuple[Placement, ...]
"""What the desktop shows: one file per monitor, or one file (screen None) for all of them."""


def wallpaper_dir() -> Path:
    """dreamtray's data folder for wallpapers (created on first use)."""
    from platformdirs import PlatformDirs

    folder = PlatformDirs("dreamtray", appauthor=False).user_data_path / "wallpapers"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@dataclass
class WallpaperHistory:
    """The wallpapers dreamtray set last and those the desktop had before, kept in `state.json`."""

    folder: Path
    current: Wallpapers = ()
    previous: Wallpapers = ()

    @classmethod
    def load(cls, folder: Path | None = None) -> WallpaperHistory:
        folder = folder or wallpaper_dir()
        try:
            state = json.loads((folder / "state.json").read_text())
        except (OSError, ValueError):
            state = {}
        if not isinstance(state, dict):
            state = {}
        return cls(folder, _read(state.get("current")), _read(state.get("previous")))

    def record(self, new: Sequence[Placement], previous: Sequence[Placement]) -> None:
        """Remember that `new` replaced `previous`, and drop old wallpaper files."""
        new, previous = tuple(new), tuple(previous)
        if _files(previous) == _files(new):
            previous = self.previous
        self.current, self.previous = new, previous
        state = {"current": _write(new), "previous": _write(previous)}
        write_atomically(self.folder / "state.json", json.dumps(state, indent=2).encode())
        self._prune()

    def _prune(self) -> None:
        keep = _files(self.current) | _files(self.previous)
        images = [p for pattern in ("wallpaper-*.png", "desktop-*.png") for p in self.folder.glob(pattern)]
        images.sort(key=lambda p: p.stat().st_mtime, reverse=True)
        for old in images[KEEP_FILES:]:
            if old.resolve() not in keep:
                old.unlink(missing_ok=True)


def _files(wallpapers: Sequence[Placement]) -> set[Path]:
    return {placement.path.resolve() for placement in wallpapers}


def _write(wallpapers: Sequence[Placement]) -> list[dict[str, Any]]:
    return [{"screen": p.screen.as_data() if p.screen else None, "path": str(p.path)} for p in wallpapers]


def _read(value: Any) -> Wallpapers:
    """Placements from state.json; a plain path (as older versions wrote) is one file for every monitor."""
    if isinstance(value, str) and value:
        return (Placement(None, Path(value)),)
    if not isinstance(value, list):
        return ()
    placements = []
    for item in value:
        try:
            screen = Screen.from_data(item["screen"]) if item.get("screen") else None
            placements.append(Placement(screen, Path(item["path"])))
        except (KeyError, TypeError, ValueError, AttributeError):
            return ()
    return tuple(placements)
