"""Consistent series: sets of images that share styles, seeds, size and model, kept together in one folder.

Seed policy: a series has one base seed (given, else the seed a style pins, else a random one). In every row
(one prompt, `count` images) image i uses seed base + i (wrapping at 2**32). Extending the series with a new
prompt makes a new row with the same seeds, so image i of every row starts from the same noise: with the same
styles, size and model this is what keeps compositions and palettes alike across prompts. Each image is
generated alone with its own seed, so any one of them can be made again from the manifest.

Pinning: after the first image, the series records the size, steps, guidance, sampler and model the engine
really used, and a copy of every style applied, so a later extension looks the same even when the style was
edited or removed since.

Folder layout: `NN-<prompt words>.png` (NN numbers every image of the series), `contact-sheet.png` (all
images as a grid, one row per prompt), and `series.json` (the manifest).
"""

from __future__ import annotations

import io
import random
import re
from datetime import datetime, timezone
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from dreamtray.atomic import write_atomically
from dreamtray.image_input import ImageInputError, open_rgb
from dreamtray.images.gallery import keep_elsewhere
from dreamtray.images.metadata import add_metadata
from dreamtray.request import MAX_SEED, LoRA, Request, Result
from dreamtray.styles import Style, apply_styles

MANIFEST_NAME = "series.json"
CONTACT_SHEET_NAME = "contact-sheet.png"
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
    images: list[SeriesImage] = []

    @property
    def rows(self) -> int:
        return max((image.row for image in self.images), default=-1) + 1

    def seed_for(self, column: int) -> int:
        return (self.base_seed + column) % (MAX_SEED + 1)

    def request_for(self, prompt: str, column: int) -> Request:
        """The styled request for `prompt` in `column`, with that column's seed and the series' settings."""
        base = Request.parse(prompt=prompt, seed=self.seed_for(column), **self.settings.model_dump())
        return apply_styles(base, self.styles)

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


def new_manifest(count: int, styles: list[Style], settings: Settings, seed: int | None) -> Manifest:
    """A new, empty series; the base seed is `seed`, else the one the styles pin, else a random one."""
    if seed is None:
        seed = apply_styles(Request(prompt="series"), styles).seed
    if seed is None:
        seed = random.randint(0, MAX_SEED)
    return Manifest(count=count, base_seed=seed, styles=tuple(styles), settings=settings)


def slug(prompt: str, words: int = 6) -> str:
    """A short file-name-safe form of the prompt."""
    parts = re.findall(r"[a-z0-9]+", prompt.lower())[:words]
    return "-".join(parts) or "image"


def series_folder(parent: Path, prompt: str) -> Path:
    """A new folder for a series under `parent`, named by time and prompt."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = parent / f"{stamp}-{slug(prompt, 4)}"
    suffix = 1
    while folder.exists():
        suffix += 1
        folder = parent / f"{stamp}-{slug(prompt, 4)}-{suffix}"
    return folder


def add_image(manifest: Manifest, folder: Path, prompt: str, row: int, column: int, result: Result) -> SeriesImage:
    """Save a generated image into the series folder (with its metadata) and record it in the manifest."""
    generated = result.request.model_copy(update={"seed": result.seeds[0], "count": 1})
    number = len(manifest.images) + 1
    name = f"{number:02d}-{slug(prompt)}.png"
    png = add_metadata(result.images[0], generated, model=result.model, sampler=result.sampler)
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
