"""The gallery: every generated image, saved atomically with its metadata, named from time, prompt and seed.

A file appears in the gallery complete or not at all: it is written to a hidden temporary file in the same
folder, flushed to disk, then linked under its final name, which never replaces an existing file.
An image the gallery cannot take (read-only, full, a file in its place) is kept in a fallback folder.
"""

from __future__ import annotations

import itertools
import logging
import re
import stat
import tempfile
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from dreamtray import paths
from dreamtray.atomic import write_atomically
from dreamtray.images.metadata import ImageMetadata, MetadataError, add_metadata, read_metadata
from dreamtray.request import Request, Result

SLUG_CHARS = 40
"""Longest prompt slug in a file name, in characters (the whole name stays far below 255 bytes)."""
MAX_COLLISIONS = 10_000
FALLBACK_NAME = "unsaved"
log = logging.getLogger("dreamtray.gallery")


class GalleryError(RuntimeError):
    """An image could not be saved; the message names the folder and the reason."""


def fallback_folders() -> Iterator[Path]:
    """Where an image goes when the gallery cannot take it: the user's data folder, the cache, and last a new
    private temporary folder (made only when reached)."""
    yield paths.data_dir() / FALLBACK_NAME
    yield paths.cache_dir() / FALLBACK_NAME
    try:
        yield Path(tempfile.mkdtemp(prefix=f"dreamtray-{FALLBACK_NAME}-"))
    except OSError:
        return


def keep_elsewhere(data: bytes, name: str, problem: str, warn: Callable[[str], None] = log.warning) -> Path:
    """Write a finished PNG that could not go where it belonged into the first fallback folder that takes it,
    under `name` (with -2, -3... rather than overwrite); `warn` says where and repeats `problem`."""
    problems = [problem]
    stem = Path(name).stem
    for folder in fallback_folders():
        for number in range(1, MAX_COLLISIONS + 1):
            path = folder / (f"{stem}.png" if number == 1 else f"{stem}-{number}.png")
            try:
                write_atomically(path, data, replace=False)
            except FileExistsError:
                continue
            except OSError as exc:
                problems.append(f"{folder}: {exc.strerror or exc}")
                break
            warn(f"{problem}; the image is kept at {path} instead.")
            return path
    raise GalleryError("the image could not be saved anywhere: " + "; ".join(problems))


def default_gallery_folder() -> Path:
    """`dreamtray` inside the user's pictures folder (XDG pictures dir, ~/Pictures, My Pictures...)."""
    return paths.pictures_dir()


def slugify(text: str, limit: int = SLUG_CHARS) -> str:
    """A short, safe file-name part from a prompt: lower-case letters and digits joined by '-'.

    Anything else (separators, dots, control characters, NUL, quotes) only splits words, so the slug can
    never name a path, start with a dot or be empty ("image" then).
    """
    words = re.findall(r"[^\W_]+", unicodedata.normalize("NFKC", text).casefold())
    slug = ""
    for word in words:
        candidate = f"{slug}-{word}" if slug else word
        if len(candidate) > limit:
            slug = slug or word[:limit]
            break
        slug = candidate
    return slug or "image"


def image_stem(when: datetime, prompt: str, seed: int | None) -> str:
    """`YYYYMMDD-HHMMSS-<slug>-<seed>`; the timestamp first keeps names sortable and never reserved."""
    stem = f"{when:%Y%m%d-%H%M%S}-{slugify(prompt)}"
    return stem if seed is None else f"{stem}-{seed}"


@dataclass(frozen=True)
class HistoryEntry:
    """One gallery image with what its metadata says (or why it cannot be read)."""

    path: Path
    modified: datetime
    metadata: ImageMetadata | None
    error: str | None = None


class Gallery:
    """The folder where images are kept."""

    def __init__(self, folder: Path | str | None = None) -> None:
        self.folder = Path(folder).expanduser() if folder is not None else default_gallery_folder()

    def save(
        self,
        png: bytes,
        request: Request,
        *,
        model: str,
        sampler: str,
        when: datetime | None = None,
        texts: Mapping[str, str] | None = None,
    ) -> Path:
        """Save one generated PNG with its metadata and return its path.

        `request` is the one that made this very image (its seed, the settings really used); `model` and
        `sampler` are the names the engine reports; `texts` are further PNG text chunks to carry.
        Raises GalleryError when the folder cannot take the file.
        """
        data = add_metadata(png, request, model=model, sampler=sampler, texts=texts)
        stem = image_stem(when or datetime.now(), request.prompt, request.seed)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise GalleryError(f"cannot save images in {self.folder}: {exc.strerror or exc}") from None
        for number in itertools.count(1):
            if number > MAX_COLLISIONS:
                raise GalleryError(f"{self.folder} already holds {MAX_COLLISIONS} images named {stem}*.png")
            path = self.folder / (f"{stem}.png" if number == 1 else f"{stem}-{number}.png")
            try:
                return write_atomically(path, data, replace=False)
            except FileExistsError:
                continue
            except OSError as exc:
                raise GalleryError(f"cannot save {path.name} in {self.folder}: {exc.strerror or exc}") from None
        raise AssertionError("unreachable")

    def save_result(
        self,
        result: Result,
        when: datetime | None = None,
        warn: Callable[[str], None] = log.warning,
        texts: Mapping[str, str] | None = None,
    ) -> list[Path]:
        """Save every image of a finished job, each with the request for its own seed (`texts`: further PNG text
        chunks for each, such as the request as the user gave it).

        An image the gallery cannot take is kept in a fallback folder instead (`warn` is told where, and why
        the gallery failed); GalleryError only when no folder at all could take it.
        """
        saved = []
        for png, seed in zip(result.images, result.seeds, strict=True):
            request = result.request_for(seed)
            kept = self.keep(
                png, request, model=result.model, sampler=result.sampler, when=when, warn=warn, texts=texts
            )
            saved.append(kept)
        return saved

    def keep(
        self,
        png: bytes,
        request: Request,
        *,
        model: str,
        sampler: str,
        when: datetime | None = None,
        warn: Callable[[str], None] = log.warning,
        texts: Mapping[str, str] | None = None,
    ) -> Path:
        """`save`, falling back to the first of `fallback_folders()` that takes the image."""
        try:
            return self.save(png, request, model=model, sampler=sampler, when=when, texts=texts)
        except GalleryError as exc:
            problems = [str(exc)]
        for folder in fallback_folders():
            try:
                path = Gallery(folder).save(png, request, model=model, sampler=sampler, when=when, texts=texts)
            except GalleryError as exc:
                problems.append(str(exc))
                continue
            warn(f"The gallery failed ({problems[0]}); the image is kept at {path} instead.")
            return path
        raise GalleryError("the image could not be saved anywhere: " + "; ".join(problems))

    def images(self) -> list[tuple[Path, datetime]]:
        """The gallery's PNG files with their modification times, newest first."""
        if not self.folder.is_dir():
            return []
        found = []
        for path in self.folder.glob("*.png"):
            try:
                status = path.stat()
            except OSError:  # removed meanwhile, or a dangling link
                continue
            if stat.S_ISREG(status.st_mode) and not path.name.startswith("."):
                found.append((status.st_mtime_ns, path.name, path))
        found.sort(reverse=True)
        return [(path, datetime.fromtimestamp(mtime_ns / 1e9)) for mtime_ns, _, path in found]

    def history(self, limit: int = 20) -> list[HistoryEntry]:
        """The `limit` most recent images, newest first, each with its metadata."""
        if limit < 1:
            raise ValueError(f"limit must be 1 or more, not {limit}")
        entries = []
        for path, modified in self.images()[:limit]:
            try:
                entries.append(HistoryEntry(path, modified, read_metadata(path, name=path.name)))
            except MetadataError as exc:
                entries.append(HistoryEntry(path, modified, None, str(exc)))
        return entries
