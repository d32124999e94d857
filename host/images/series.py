"""Consistent series: sets of images that share styles, seeds, size and model, kept together in one folder.

Seed policy: a series has one base seed (given, else the seed a style pins, else a random one). In every row
(one prompt, `count` images) image i uses seed base + i (wrapping at 2**32). Extending the series with a new
prompt makes a new row with the same seeds, so image i of every row starts from the same noise: with the same
styles, size and model this is what keeps compositions and palettes alike across prompts. Each image is
generated alone with its own seed, so any one of them can be made again from the manifest.

Pinning: after the first image, the series records the size, steps, guidance, sampler and model the engine
really used, and a copy of every style applied, so a later extension looks the same even when the style was
edited or removed since.

Same subject (`Manifest.subject`): every image keeps the subject of the series' first image, or of a picture
the user gave (kept as `reference.png`). The first image chooses the method (the engine decides by model and
back end when asked for `auto`); every later image, extensions included, names the first image's request (or
carries the picture) in its own request, so any one of them can be made again alone.

Folder layout: `NN-<prompt words>.png` (NN numbers every image of the series), `contact-sheet.png` (all
images as a grid, one row per prompt), and `series.json` (the manifest).
"""

from __future__ import annotations

import hashlib
import io
import random
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from dreamtray.atomic import write_atomically
from dreamtray.image_input import ImageInputError, open_rgb
from dreamtray.images.gallery import keep_elsewhere, slugify
from dreamtray.images.metadata import add_metadata
from dreamtray.request import MAX_REFERENCE_BYTES, MAX_SEED, LoRA, Request, Result, Subject
from dreamtray.styles import Style, apply_styles

MANIFEST_NAME = "series.json"
CONTACT_SHEET_NAME = "contact-sheet.png"
REFERENCE_NAME = "reference.png"
REFERENCE_SIDE = 1024
"""A reference picture is kept at most this many pixels a side (the engine sizes it to the image anyway)."""
MANIFEST_FORMAT = "dreamtray-series/1"
THUMBNAIL_SIDE = 256
GAP = 8


class SeriesError(ValueError):
    """A series that cannot be made or extended; the message says why."""


class Settings(BaseModel):
    """The shared settings of a series: explicit values, then the ones pinned from the first image."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    negative_prompt: str = ""
    width: int | None = None
    height: int | None = None
    aspect: float | None = None
    steps: int | None = None
    guidance: float | None = None
    sampler: str | None = None
    model: str | None = None
    loras: tuple[LoRA, ...] = ()


class SeriesImage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file: str
    prompt: str
    """The user's prompt, before styles."""
    row: int
    column: int
    seed: int
    request: Request
    """The request as the engine generated it, for making the image again."""


class Manifest(BaseModel):
    """What `series.json` holds."""

    model_config = ConfigDict(extra="forbid")

    format: str = MANIFEST_FORMAT
    created: str = Field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    count: int = Field(ge=1, le=64)
    base_seed: int = Field(ge=0, le=MAX_SEED)
    styles: tuple[Style, ...] = ()
    settings: Settings = Settings()
    subject: Subject | None = None
    """Same subject: the method (the one the first image used, once made), strength, adapter and reference
    picture; None for a series that shares only its look."""
    images: list[SeriesImage] = []

    @property
    def rows(self) -> int:
        return max((image.row for image in self.images), default=-1) + 1

    def seed_for(self, column: int) -> int:
        return (self.base_seed + column) % (MAX_SEED + 1)

    def request_for(self, prompt: str, column: int) -> Request:
        """The styled request for `prompt` in `column`, with that column's seed, the series' settings and, for a
        same-subject series, the subject to keep: the first image's (or the reference picture's)."""
        base = Request.parse(prompt=prompt, seed=self.seed_for(column), **self.settings.model_dump())
        styled = apply_styles(base, self.styles)
        if self.subject is None:
            return styled
        subject = self.subject
        if subject.image is None and self.images:
            subject = subject.model_copy(update={"reference": self.images[0].request})
        return styled.model_copy(update={"subject": subject})

    def pin(self, generated: Request, result: Result) -> None:
        """Record the settings the engine really used for the first image, so every later one matches."""
        self.settings = self.settings.model_copy(
            update={
                "width": generated.width,
                "height": generated.height,
                "aspect": None,
                "steps": generated.steps,
                "guidance": generated.guidance,
                "sampler": self.settings.sampler or result.sampler,
                "model": result.model,
            }
        )
        if self.subject is not None and generated.subject is not None:
            self.subject = self.subject.model_copy(update={"method": generated.subject.method})


def load_manifest(path: Path) -> tuple[Manifest, Path]:
    """The manifest at `path` (a series.json, or the folder holding one) and the series folder."""
    if path.is_dir():
        path = path / MANIFEST_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SeriesError(f"cannot read the series manifest {path}: {exc.strerror or exc}") from None
    try:
        manifest = Manifest.model_validate_json(text)
    except ValueError as exc:
        raise SeriesError(f"{path} is not a dreamtray series manifest: {exc}") from None
    if manifest.format != MANIFEST_FORMAT:
        raise SeriesError(f"{path}: unknown series format {manifest.format!r} (this dreamtray reads {MANIFEST_FORMAT})")
    return manifest, path.parent


def new_manifest(
    count: int, styles: list[Style], settings: Settings, seed: int | None, subject: Subject | None = None
) -> Manifest:
    """A new, empty series; the base seed is `seed`, else the one the styles pin, else a random one."""
    if seed is None:
        seed = apply_styles(Request(prompt="series"), styles).seed
    if seed is None:
        seed = random.randint(0, MAX_SEED)
    return Manifest(count=count, base_seed=seed, styles=tuple(styles), settings=settings, subject=subject)


def reference_picture(path: Path) -> tuple[bytes, str]:
    """A user's reference picture as PNG bytes (at most REFERENCE_SIDE a side) and its name with its SHA-256;
    SeriesError, saying why, for a file that is too large, unreadable or no image (read as every image handed in
    is: `image_input`)."""
    from dreamtray.image_input import ImageInputError, open_rgb, read_image_file

    label = f"{path}: the reference"
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise SeriesError(f"{label} cannot be read ({exc.strerror or exc})") from None
    if size > MAX_REFERENCE_BYTES:
        raise SeriesError(f"{label} is {size:,} bytes; give a picture of at most {MAX_REFERENCE_BYTES:,} bytes")
    try:
        data = read_image_file(path, label)
        picture, _ = open_rgb(data, label)
    except ImageInputError as exc:
        raise SeriesError(str(exc)) from None
    picture.thumbnail((REFERENCE_SIDE, REFERENCE_SIDE))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue(), f"{path.name} (sha256 {hashlib.sha256(data).hexdigest()[:16]})"


def save_reference(manifest: Manifest, folder: Path) -> None:
    """Keep the user's reference picture in the series folder, beside the images it shaped."""
    if manifest.subject is None or manifest.subject.image is None:
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_atomically(folder / REFERENCE_NAME, manifest.subject.image)
    except OSError as exc:
        raise SeriesError(f"The series cannot start: {folder} cannot take {REFERENCE_NAME} ({exc.strerror or exc})")


FOLDER_SLUG_CHARS = 24
"""A series folder's name keeps the prompt's first words, shorter than an image's (the time stamp comes first)."""


def series_folder(parent: Path, prompt: str) -> Path:
    """A new folder for a series under `parent`, named by time and prompt."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = parent / f"{stamp}-{slugify(prompt, FOLDER_SLUG_CHARS)}"
    suffix = 1
    while folder.exists():
        suffix += 1
        folder = parent / f"{stamp}-{slugify(prompt, FOLDER_SLUG_CHARS)}-{suffix}"
    return folder


def add_image(
    manifest: Manifest,
    folder: Path,
    prompt: str,
    row: int,
    column: int,
    result: Result,
    texts: Mapping[str, str] | None = None,
) -> SeriesImage:
    """Save a generated image into the series folder (with its metadata, and `texts`: further PNG text chunks such
    as the request as the user gave it) and record it in the manifest."""
    generated = result.request_for(result.seeds[0])
    number = len(manifest.images) + 1
    name = f"{number:02d}-{slugify(prompt)}.png"
    png = add_metadata(result.images[0], generated, model=result.model, sampler=result.sampler, texts=texts)
    try:
        write_atomically(folder / name, png)
    except OSError as exc:  # the image is made: never lose it
        problem = f"the series folder {folder} cannot take {name} ({exc.strerror or exc})"
        kept = keep_elsewhere(png, name, problem, warn=lambda message: None)
        raise SeriesError(f"The series stopped: {problem}. The image is kept at {kept}.") from None
    image = SeriesImage(file=name, prompt=prompt, row=row, column=column, seed=generated.seed, request=generated)
    manifest.images.append(image)
    return image


def save_manifest(manifest: Manifest, folder: Path) -> Path:
    path = folder / MANIFEST_NAME
    try:
        write_atomically(path, manifest.model_dump_json(indent=2).encode("utf-8"))
    except OSError as exc:
        raise SeriesError(f"The series stopped: {path} cannot be written ({exc.strerror or exc}).") from None
    return path


def contact_sheet(manifest: Manifest, folder: Path) -> bytes:
    """A PNG grid of every image of the series: one row per prompt, one column per seed."""
    from PIL import Image

    thumbnails = {}
    for entry in manifest.images:
        try:
            image = open_rgb(folder / entry.file, entry.file)[0]
        except ImageInputError as exc:
            raise SeriesError(f"the contact sheet cannot show {exc}") from None
        image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
        thumbnails[entry.row, entry.column] = image
    if not thumbnails:
        raise SeriesError("the series has no images yet")
    cell_w = max(image.width for image in thumbnails.values())
    cell_h = max(image.height for image in thumbnails.values())
    columns = max(manifest.count, max(column for _, column in thumbnails) + 1)
    rows = max(row for row, _ in thumbnails) + 1
    sheet = Image.new("RGB", (columns * (cell_w + GAP) + GAP, rows * (cell_h + GAP) + GAP), (24, 24, 24))
    for (row, column), image in thumbnails.items():
        x = GAP + column * (cell_w + GAP) + (cell_w - image.width) // 2
        y = GAP + row * (cell_h + GAP) + (cell_h - image.height) // 2
        sheet.paste(image, (x, y))
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    return buffer.getvalue()


def save_contact_sheet(manifest: Manifest, folder: Path) -> Path:
    path = folder / CONTACT_SHEET_NAME
    write_atomically(path, contact_sheet(manifest, folder))
    return path
