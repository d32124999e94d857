"""Where dreamtray keeps its files, as the platform expects (platformdirs; XDG variables on Linux)."""

from __future__ import annotations

from pathlib import Path

from platformdirs import PlatformDirs

APP = "dreamtray"


def _dirs() -> PlatformDirs:
    # Made on each call so that changes to XDG_* variables (tests, portable set-ups) are honoured.
    return PlatformDirs(APP, appauthor=False)


def config_dir() -> Path:
    return Path(_dirs().user_config_dir)


def data_dir() -> Path:
    return Path(_dirs().user_data_dir)


def cache_dir() -> Path:
    return Path(_dirs().user_cache_dir)


def state_dir() -> Path:
    return Path(_dirs().user_state_dir)


def pictures_dir() -> Path:
    return Path(_dirs().user_pictures_dir) / APP


def cannot_write(exc: OSError, path: Path) -> str:
    """A sentence for a file dreamtray could not write for itself (a token, a lock, state, a log): the file
    (`exc`'s, else `path`), why, and which folder must be writable."""
    target = Path(exc.filename) if isinstance(exc.filename, str) else path
    folder = target if target.is_dir() else target.parent
    return (
        f"dreamtray cannot write {target} ({file_problem(exc)}): the folder {folder} must be writable by you "
        "and have free space."
    )


def private_file(path: Path) -> Path:
    """Make sure `path`'s folder exists and that the file, when created, is readable by the user alone."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    return path


def file_problem(exc: OSError | ValueError) -> str:
    """Why a file operation failed, in words: the system's reason, never Python's own wording for a bad path."""
    if isinstance(exc, ValueError):  # what os functions raise for a path holding a NUL character
        return "the path holds a NUL character, which no file name can"
    return exc.strerror or str(exc)
