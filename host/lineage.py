"""PNG metadata for images made by dreamtray: the AUTOMATIC1111 `parameters` text, the exact request, and the
lineage of a refined image (its parent, the parent's parent...).

Text chunks written:
- `parameters`: A1111's format, read by A1111, ComfyUI, Civitai and most PNG info viewers.
- `dreamtray`: the request as generated, JSON (without the init image).
- `dreamtray-lineage`: for a refined image, a JSON list of its ancestors, parent first; each entry has the
  parent's file name, its SHA-256, and its own `parameters` text.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from .request import Request, Result

PARAMETERS = "parameters"
REQUEST = "dreamtray"
LINEAGE = "dreamtray-lineage"
MAX_ANCESTORS = 32


def parameters_text(request: Request, result: Result | None = None) -> str:
    """`request` (as generated, seed included) in A1111's `parameters` layout."""
    fields = [
        ("Steps", request.steps),
        ("Sampler", result.sampler if result else request.sampler),
        ("CFG scale", request.guidance),
        ("Seed", request.seed),
        ("Size", f"{request.width}x{request.height}" if request.width and request.height else None),
        ("Model", result.model if result else request.model),
        ("Denoising strength", request.strength if request.init_image is not None else None),
        ("Styles", ", ".join(request.styles) or None),
    ]
    lines = [request.prompt]
    if request.negative_prompt:
        lines.append(f"Negative prompt: {request.negative_prompt}")
    lines.append(", ".join(f"{key}: {value}" for key, value in fields if value is not None))
    return "\n".join(lines)


def read_text_chunks(png: bytes) -> dict[str, str]:
    """The PNG's text chunks (tEXt, zTXt, iTXt); empty for other formats."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        image.load()
        return {key: value for key, value in getattr(image, "text", {}).items() if isinstance(value, str)}


def with_text_chunks(png: bytes, chunks: dict[str, str]) -> bytes:
    """The same pixels as PNG bytes, carrying `chunks` (and no other text)."""
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    for key, value in chunks.items():
        info.add_itxt(key, value)
    with Image.open(io.BytesIO(png)) as image:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def describe_request(request: Request, result: Result | None = None) -> dict[str, str]:
    """The text chunks for an image generated from `request`."""
    as_json = request.model_dump(mode="json", exclude={"init_image"})
    return {PARAMETERS: parameters_text(request, result), REQUEST: json.dumps(as_json, sort_keys=True)}


def stored_request(chunks: dict[str, str]) -> dict[str, Any] | None:
    """The request fields saved in a dreamtray PNG, or, for an A1111-style PNG, its prompt and negative."""
    if REQUEST in chunks:
        try:
            return json.loads(chunks[REQUEST])
        except ValueError:
            return None
    if PARAMETERS in chunks:
        return parse_parameters(chunks[PARAMETERS])
    return None


def parse_parameters(text: str) -> dict[str, Any]:
    """Prompt and negative prompt from A1111 `parameters` text (the settings line is not needed here)."""
    lines = text.strip().split("\n")
    if lines and lines[-1].startswith("Steps: "):
        lines = lines[:-1]
    prompt, negative, in_negative = [], [], False
    for line in lines:
        if line.startswith("Negative prompt: "):
            in_negative = True
            line = line.removeprefix("Negative prompt: ")
        (negative if in_negative else prompt).append(line)
    return {"prompt": "\n".join(prompt).strip(), "negative_prompt": "\n".join(negative).strip()}


def lineage_of(parent_png: bytes, parent_name: str) -> list[dict[str, str]]:
    """The ancestors a child of `parent_png` records: the parent first, then the parent's own ancestors."""
    chunks = read_text_chunks(parent_png)
    try:
        earlier = json.loads(chunks.get(LINEAGE, "[]"))
    except ValueError:
        earlier = []
    entry = {
        "file": parent_name,
        "sha256": hashlib.sha256(parent_png).hexdigest(),
        "parameters": chunks.get(PARAMETERS, ""),
    }
    return [entry, *earlier][:MAX_ANCESTORS]


def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see either nothing or the whole file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
