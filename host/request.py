"""The values that travel through dreamtray: what to generate (Request) and what came back (Result).

Both are validated pydantic models, so a request read from JSON, the command line or a plugin is checked
the same way everywhere. Neither imports torch.
"""

from __future__ import annotations

import base64
import math
import random
import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, PlainValidator, field_validator

MAX_SEED = 2**32 - 1
MIN_SIDE = 64
MAX_SIDE = 4096
MAX_PROMPT_CHARS = 20_000
MAX_PIXELS_OVER_NATIVE = 16


class RequestError(ValueError):
    """A request that cannot be generated; the message says what is wrong and what is allowed."""


def _bytes_from_b64(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return base64.b64decode(value, validate=True)
    raise ValueError("expected PNG bytes or a base64 string")


B64Bytes = Annotated[
    bytes,
    PlainValidator(_bytes_from_b64),
    PlainSerializer(lambda b: base64.b64encode(b).decode("ascii"), when_used="json"),
]


class LoRA(BaseModel):
    """LoRA weights to apply: a .safetensors file or a hub id, with its scale."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str
    scale: float = Field(1.0, ge=-4.0, le=4.0)


class UserText(BaseModel):
    """The prompt and negative prompt as the user wrote them, before styles were applied."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    prompt: str = Field(max_length=MAX_PROMPT_CHARS)
    negative_prompt: str = Field("", max_length=MAX_PROMPT_CHARS)


SUBJECT_METHODS = ("shared-attention", "init-image", "ip-adapter")
"""How an image keeps the subject of a reference (docs/style-packs.md, "Same subject"); `auto` lets the engine
choose by model family and back end, and the result names the method it used."""
MAX_REFERENCE_BYTES = 20_000_000


class Subject(BaseModel):
    """Keep the subject of a reference: the series' first image (`reference`, its request) or a picture (`image`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: Literal["auto", "shared-attention", "init-image", "ip-adapter"] = "auto"
    reference: Request | None = None
    """The request that made the reference image (settled, with its seed); None with `image`, or for the first
    image itself, whose self-attention keys and values the others then share."""
    image: B64Bytes | None = Field(None, max_length=MAX_REFERENCE_BYTES)
    """A picture to keep the subject of (PNG, JPEG or WebP), instead of a generated first image."""
    image_name: str = Field("", max_length=300)
    """The picture's file name and SHA-256, for the metadata and messages."""
    strength: float = Field(0.55, gt=0.0, le=1.0)
    """init-image: how much of the reference may change; ip-adapter: the adapter's scale."""
    adapter: str | None = Field(None, max_length=4096)
    """ip-adapter: the adapter's weight file (`<folder>/<subfolder>/<file>.safetensors`, its CLIP image encoder
    in `<folder>/<subfolder>/image_encoder`); None: the family's published adapter when it is in the cache."""
    plugin: str | None = Field(None, max_length=200)
    """A method brought by a plugin (`subject_methods` hook), by name; `method` is then ignored."""

    @property
    def anchor(self) -> bool:
        """Whether this is the first image of a subject, which the others refer to."""
        return self.reference is None and self.image is None

    def describe(self) -> str:
        """'shared-attention, reference: seed 7 "a red fox"' and the like, for messages and the metadata."""
        if self.image is not None:
            source = f"reference: {self.image_name or 'a picture'}"
        elif self.reference is not None:
            source = f"reference: seed {self.reference.seed} {self.reference.prompt!r}"
        else:
            source = "the first image of its subject"
        return f"{self.plugin or self.method}, {source}"


class Request(BaseModel):
    """One generation job. Fields left as None take the model preset's defaults."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    prompt: str = Field(max_length=MAX_PROMPT_CHARS)
    negative_prompt: str = Field("", max_length=MAX_PROMPT_CHARS)
    styles: tuple[str, ...] = ()
    unstyled: UserText | None = None
    """Set once `styles` are applied: the user's own text, kept apart from the styled `prompt`."""
    expanded_from: str | None = Field(None, max_length=MAX_PROMPT_CHARS)
    """The user's own words when prompt expansion grew `prompt` from them (the expansion as shown and edited)."""
    width: int | None = Field(None, ge=MIN_SIDE, le=MAX_SIDE)
    height: int | None = Field(None, ge=MIN_SIDE, le=MAX_SIDE)
    aspect: float | None = Field(None, gt=0.1, lt=10.0)
    """Width/height ratio at the model's native pixel count; used when width and height are not given."""
    steps: int | None = Field(None, ge=1, le=150)
    guidance: float | None = Field(None, ge=0.0, le=30.0)
    seed: int | None = Field(None, ge=0, le=MAX_SEED)
    model: str | None = None
    sampler: str | None = None
    count: int = Field(1, ge=1, le=8)
    loras: tuple[LoRA, ...] = ()
    init_image: B64Bytes | None = None
    strength: float = Field(0.6, gt=0.0, le=1.0)
    quality: Literal["fast", "balanced", "best"] | None = None
    """fast: TAESD decoder (TAESD) and the fastest back end; balanced: full VAE, the hardware plan; best: full VAE,
    full precision, the reference pixels. None: the engine's default (`engine.quality`)."""
    preview_every: int = Field(0, ge=0, le=150)
    """Send a small preview image as a progress event every this many steps; 0 for none."""
    subject: Subject | None = None
    """Keep the subject of a reference image (a same-subject series); None for a plain image."""

    @field_validator("prompt")
    @classmethod
    def _prompt_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the prompt is empty: write what the image should show")
        from dreamtray.prompt_syntax import check

        problem = check(value)
        if problem:
            raise ValueError(f"{problem}: write what the image should show")
        return value.strip()

    @field_validator("sampler")
    @classmethod
    def _sampler_as_a1111_names_it(cls, value: str | None) -> str | None:
        from dreamtray.samplers import parse

        return None if value is None or not value.strip() else parse(value).label

    @field_validator("styles", mode="before")
    @classmethod
    def _styles_from_text(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(name.strip() for name in value.split(",") if name.strip())
        return value

    def pixel_size(self, native: int, multiple: int = 8) -> tuple[int, int]:
        """Width and height to generate: the request's (or its aspect at the native pixel count), at most 16x the
        native pixel count, snapped to the model's multiple. Every back end sizes images this one way."""
        if self.width is None and self.height is None:
            aspect = self.aspect or 1.0
            width, height = native * math.sqrt(aspect), native / math.sqrt(aspect)
        else:
            width = self.width or self.height * (self.aspect or 1.0)
            height = self.height or self.width / (self.aspect or 1.0)
        limit = native * native * MAX_PIXELS_OVER_NATIVE
        if width * height > limit:
            shrink = math.sqrt(limit / (width * height))
            width, height = width * shrink, height * shrink

        def snap(side: float) -> int:
            return max(multiple, int(round(side / multiple)) * multiple)

        return snap(width), snap(height)

    def with_seed(self) -> Request:
        """This request with a concrete seed: the given one, or a fresh random one to report back."""
        if self.seed is not None:
            return self
        return self.model_copy(update={"seed": random.randint(0, MAX_SEED)})

    @classmethod
    def parse(cls, **fields: object) -> Request:
        """Build a request, turning validation failures into one readable RequestError."""
        from pydantic import ValidationError

        try:
            return cls(**fields)
        except ValidationError as exc:
            raise RequestError(describe_validation_error(exc)) from None


Subject.model_rebuild()


_SIZE = re.compile(r"([0-9]{1,6}) *[xX×] *([0-9]{1,6})")
"""Digits 0-9 only: int() would also read other scripts' digits (٣) as numbers."""


def parse_size(text: str) -> tuple[int, int]:
    """`WIDTHxHEIGHT` (as in `512x768`) as two whole numbers; ValueError saying the form when it is not one. The
    one parser of sizes: the limits are the Request's to check."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text[:40]!r} is not WIDTHxHEIGHT, for example 512x512")
    return int(match[1]), int(match[2])


def describe_validation_error(exc: Exception) -> str:
    """One line per problem: 'field: what is wrong'."""
    lines = []
    for error in exc.errors():  # type: ignore[attr-defined]
        where = ".".join(str(part) for part in error["loc"]) or "request"
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"{where}: {message}")
    return "; ".join(lines)


class Result(BaseModel):
    """What a finished job returns: PNG images (one per seed) and the settings really used."""

    model_config = ConfigDict(frozen=True)

    request: Request
    images: list[B64Bytes]
    seeds: list[int]
    model: str
    sampler: str
    warnings: list[str] = []
    seconds: float = 0.0

    def request_for(self, seed: int) -> Request:
        """The request that made this job's image of `seed`: that seed, count 1, and the model really used when
        the request named none (what the gallery stores and hooks and actions see)."""
        return self.request.model_copy(update={"seed": seed, "count": 1, "model": self.request.model or self.model})
