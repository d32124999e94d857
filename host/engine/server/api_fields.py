"""What the served API does with the fields of a request before and after the engine: styles, the model
name, OpenAI's `style` values and `output_format`.

- `style`/`styles` name dreamtray styles; the serving machine's styles apply to a request that is not styled
  yet (a dreamtray client sends requests it styled itself, with their `unstyled` text: those pass as they are).
  An unknown name is a 400 that gives the three closest names.
- OpenAI's own `style` values, `vivid` and `natural`, are accepted: dreamtray has no such switch, so they change
  nothing (a warning says so) unless a dreamtray style has that name.
- A model that is no preset, hub id, model folder or file is a 404 (`model_not_found`), as OpenAI answers.
- `output_format` `png` (default), `jpeg` or `webp`, with `output_compression` 0-100 for the lossy two.
"""

from __future__ import annotations

import io
from typing import Protocol

from dreamtray.engine.presets import AUTO
from dreamtray.request import Request

OPENAI_STYLES = ("vivid", "natural")
OUTPUT_FORMATS = {"png": "PNG", "jpeg": "JPEG", "jpg": "JPEG", "webp": "WEBP"}


class FieldError(ValueError):
    """A field the API refuses; `status` is the HTTP status to answer with and `code` OpenAI's error code."""

    def __init__(self, message: str, status: int = 400, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class Styles(Protocol):
    """What the API needs of the style registry (`dreamtray.styles.StyleRegistry` is one)."""

    def __contains__(self, name: object) -> bool: ...

    def apply(self, request: Request) -> Request: ...


def openai_styles(names: tuple[str, ...], styles: Styles | None) -> tuple[tuple[str, ...], list[str]]:
    """`names` without OpenAI's `vivid`/`natural` (unless a dreamtray style has that name), and a warning each."""
    kept, warnings = [], []
    for name in names:
        if name.strip().casefold() in OPENAI_STYLES and (styles is None or name not in styles):
            warnings.append(f"style {name!r} is OpenAI's; dreamtray has no such setting, so it changes nothing")
        else:
            kept.append(name)
    return tuple(kept), warnings


def apply_styles(request: Request, styles: Styles | None) -> Request:
    """The request with the serving machine's styles applied when it names styles and is not styled yet."""
    if not request.styles or request.unstyled is not None:
        return request
    if styles is None:
        raise FieldError("this engine applies no styles: apply them before submitting, or use `dreamtray serve`")
    try:
        return styles.apply(request)
    except ValueError as exc:  # StyleError, or a styled request that is no longer valid
        raise FieldError(str(exc)) from None


def check_model(name: str | None) -> None:
    """A FieldError (404 for a model that does not exist) when the engine could not load `name`."""
    if name is None or name == AUTO:
        return
    from dreamtray.engine.server.models import ModelError, resolve_model

    try:
        resolve_model(name, allow_pickle=True)
    except ModelError as exc:
        missing = str(exc).startswith(("Unknown model", "No model file"))
        raise FieldError(str(exc), 404 if missing else 400, "model_not_found" if missing else None) from None


def check_output_format(output_format: str, compression: int | None) -> None:
    """A FieldError for an output format the API does not serve."""
    if output_format.lower() not in OUTPUT_FORMATS:
        raise FieldError(f"output_format: {output_format!r} is not served; use png, jpeg or webp")
    if compression is not None and not 0 <= compression <= 100:
        raise FieldError("output_compression: give a number from 0 to 100")


def encode_image(png: bytes, output_format: str, compression: int | None) -> bytes:
    """The engine's PNG in `output_format` (the PNG itself for png)."""
    pil_format = OUTPUT_FORMATS[output_format.lower()]
    if pil_format == "PNG":
        return png
    from PIL import Image

    buffer = io.BytesIO()
    with Image.open(io.BytesIO(png)) as image:
        image.convert("RGB").save(buffer, format=pil_format, quality=100 if compression is None else 100 - compression)
    return buffer.getvalue()
