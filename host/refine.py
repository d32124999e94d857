"""Refine: image-to-image on an existing picture, keeping the original's look and recording where it came from.

The new request starts from what the original's PNG says about itself (dreamtray's own metadata, else A1111
`parameters`): the change, then its prompt, its negative prompt, model, steps, guidance, sampler and
LoRAs. Reusing the model means the engine reuses the loaded modules (img2img via `from_pipe`), loading nothing.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from pathlib import Path

from .lineage import LINEAGE, describe_request, lineage_of, read_text_chunks, stored_request, with_text_chunks
from .request import MAX_SIDE, Request, Result
from .styles import Style, apply_styles

CARRIED = ("negative_prompt", "model", "steps", "guidance", "sampler", "loras", "styles")
"""Settings a refined image takes over from its parent's metadata."""


def as_png(data: bytes) -> tuple[bytes, int, int]:
    """Any image Pillow reads, as RGB PNG bytes no larger than the engine accepts, with its size."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            image = image.convert("RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"not an image that can be refined: {exc}") from None
    if max(image.size) > MAX_SIDE:
        image.thumbnail((MAX_SIDE, MAX_SIDE))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue(), image.width, image.height


def refine_request(
    original: bytes,
    change: str,
    *,
    strength: float,
    styles: Iterable[Style] = (),
    only_change: bool = False,
    **explicit: object,
) -> Request:
    """The img2img request that refines `original` (image bytes) by `change`.

    The prompt is `change`, a comma, then the original's prompt: the change comes first because the text
    encoder weighs early words most and cuts a long prompt at the end. `change` alone with `only_change`, or
    when the original carries no prompt. `explicit` settings (seed, model, steps...) win over the original's.
    """
    init_image, width, height = as_png(original)
    parent = stored_request(read_text_chunks(original)) or {}
    parent_prompt = str(parent.get("prompt") or "").strip()
    prompt = change.strip() if only_change or not parent_prompt else f"{change.strip()}, {parent_prompt}"
    carried = {key: parent[key] for key in CARRIED if parent.get(key) not in (None, "", [])}
    settings = {**carried, **{key: value for key, value in explicit.items() if value is not None}}
    request = Request.parse(
        prompt=prompt, init_image=init_image, strength=strength, width=width, height=height, **settings
    )
    return apply_styles(request, styles)


def refined_png(result: Result, original: bytes, original_name: str) -> bytes:
    """The engine's image with its own metadata plus its lineage: the original first, then the original's own."""
    generated = result.request.model_copy(update={"seed": result.seeds[0]})
    chunks = describe_request(generated, result)
    chunks[LINEAGE] = json.dumps(lineage_of(original, original_name))
    return with_text_chunks(result.images[0], chunks)


def output_path(original: Path) -> Path:
    """A free name next to the original: `<name>-refined.png`, then `-refined-2.png`..."""
    candidate = original.with_name(f"{original.stem}-refined.png")
    number = 1
    while candidate.exists():
        number += 1
        candidate = original.with_name(f"{original.stem}-refined-{number}.png")
    return candidate
