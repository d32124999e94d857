"""The one way dreamtray writes a file, and a folder of files: readers see the old one or the whole new one, never
a half-written one, and a crash right after the write loses neither the data nor the new name."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def write_atomically(path: Path, data: bytes | str, *, mode: int | None = None, replace: bool = True) -> Path:
    """Write `data` (str as UTF-8) to `path` and return it.

    The bytes go to a uniquely named temporary file in the same folder and are fsynced; then the file takes
    its name, by rename over any old file, or (`replace=False`) by a hard link that raises FileExistsError
    rather than overwrite; then the folder is fsynced. `mode` sets the permissions (default: owner only).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data.encode() if isinstance(data, str) else data)
            file.flush()
            os.fsync(file.fileno())
        if mode is not None:
            os.chmod(temporary, mode)
        if replace:
            os.replace(temporary, path)
        else:
            _link_without_overwriting(Path(temporary), path)
    finally:
        Path(temporary).unlink(missing_ok=True)
    _fsync_folder(path.parent)
    return path


@contextmanager
def staged_folder(folder: Path) -> Iterator[Path]:
    """Fill a folder whole or not at all: yields an empty staging folder beside it (`NAME.partial`) to write into;
    when the block ends without an error it takes `folder`'s place (replacing an older one), else it is removed
    and `folder` is left as it was. Callers hold a lock against a second writer of the same folder."""
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    _fsync_folder(folder.parent)


def _link_without_overwriting(temporary: Path, path: Path) -> None:
    try:
        os.link(temporary, path)
    except FileExistsError:
        raise
    except OSError:  # no hard links on this file system (FAT, some network shares)
        if path.exists():
            raise FileExistsError(path) from None
        os.replace(temporary, path)


def _fsync_folder(folder: Path) -> None:
    """Make the new directory entry durable too (POSIX; Windows has no directory handles to sync)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
