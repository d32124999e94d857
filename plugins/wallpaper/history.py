"""Where wallpapers are kept, and which one was set before: enough to undo."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from dreamtray.api import write_atomically

KEEP_FILES = 10
"""Scaled wallpapers kept besides the current and the previous one."""


def wallpaper_dir() -> Path:
    """dreamtray's data folder for wallpapers (created on first use)."""
    from platformdirs import PlatformDirs

    folder = PlatformDirs("dreamtray", appauthor=False).user_data_path / "wallpapers"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@dataclass
class WallpaperHistory:
    """The wallpaper dreamtray set last and the one the desktop had before, kept in `state.json`."""

    folder: Path
    current: Path | None = None
    previous: Path | None = None

    @classmethod
    def load(cls, folder: Path | None = None) -> WallpaperHistory:
        folder = folder or wallpaper_dir()
        try:
            state = json.loads((folder / "state.json").read_text())
        except (OSError, ValueError):
            state = {}
        as_path = lambda value: Path(value) if isinstance(value, str) and value else None  # noqa: E731
        return cls(folder, as_path(state.get("current")), as_path(state.get("previous")))

    def record(self, new: Path, previous: Path | None) -> None:
        """Remember that `new` replaced `previous`, and drop old scaled wallpapers."""
        if previous is not None and previous.resolve() == new.resolve():
            previous = self.previous
        self.current, self.previous = new, previous
        state = {"current": str(new), "previous": str(previous) if previous else None}
        write_atomically(self.folder / "state.json", json.dumps(state, indent=2).encode())
        self._prune()

    def _prune(self) -> None:
        keep = {p.resolve() for p in (self.current, self.previous) if p is not None}
        images = sorted(self.folder.glob("wallpaper-*.png"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in images[KEEP_FILES:]:
            if old.resolve() not in keep:
                old.unlink(missing_ok=True)
