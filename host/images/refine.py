"""Refine: image-to-image on an existing picture, keeping the original's look and recording where it came from.

The new request starts from what the original says about itself: the prompt is the change followed by the
original's prompt, and a dreamtray image also hands over its negative prompt, model, steps, guidance, sampler
and LoRAs. Reusing the model means the engine reuses the loaded modules (img2img via `from_pipe`), loading
nothing.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterable
from pathlib import Path

from dreamtray.atomic import write_atomically
from dreamtray.image_input import open_rgb
from dreamtray.images.gallery import keep_elsewhere
from dreamtray.images.lineage import lineage_of, with_lineage
from dreamtray.images.metadata import MetadataError, add_metadata, given_request, given_texts, read_metadata
from dreamtray.request import MAX_SIDE, Request, Result
from dreamtray.styles import Style, apply_styles

log = logging.getLogger("dreamtray.refine")
CARRIED = ("negative_prompt", "model", "steps", "guidance", "sampler", "loras")
"""Settings a refined image takes over from its original's dreamtray metadata. Its styles are not among them:
the original's prompt already holds their text, and a style never applies twice. (Where the original keeps the
request as the user gave it, its style names go with that prompt instead, and the route applies them once.)"""


def original_prompt_and_settings(original: bytes) -> tuple[str, dict[str, object]]:
    """What the original says about itself: its prompt, and the settings to carry over.

    From a dreamtray image, its prompt and the CARRIED settings (where it keeps the request as the user gave it,
    that prompt and its style names: plugins and styles then apply once); from another program's (A1111, ComfyUI) only
    the prompt and negative prompt, since its model and sampler names are that program's own.
    """
    try:
        found = read_metadata(original)
    except MetadataError:
        return "", {}
    if found.request is not None:
        settings = {key: getattr(found.request, key) for key in CARRIED}
        prompt, given = found.request.prompt, given_request(found)
        if given is not None:  # the user's own prompt, before plugins and styles: each applies once on the route
            user = given.unstyled or given  # a request styled before it was given (a series row) keeps the user's
            prompt, settings["styles"] = user.prompt, given.styles
            settings["negative_prompt"] = user.negative_prompt
        return prompt, {key: value for key, value in settings.items() if value not in (None, "", ())}
    if found.parameters is not None:
        negative = found.parameters.negative_prompt
        return found.parameters.prompt, ({"negative_prompt": negative} if negative else {})
    return (found.prompts[0] if found.prompts else ""), {}


def as_png(data: bytes) -> tuple[bytes, int, int]:
    """Any image Pillow reads, as RGB PNG bytes no larger than the engine accepts, with its size.

    ImageInputError (a ValueError) says why an image cannot be refined; what was left aside is logged."""
    image, notes = open_rgb(data, "")
    for note in notes:
        log.warning(note)
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
    when the original carries no prompt. `explicit` settings (seed, model, steps, style names...) win over the
    original's; `styles` (Style objects) are applied here, style names later on the route.
    """
    init_image, width, height = as_png(original)
    parent_prompt, carried = original_prompt_and_settings(original)
    parent_prompt = parent_prompt.strip()
    prompt = change.strip() if only_change or not parent_prompt else f"{change.strip()}, {parent_prompt}"
    if only_change:  # CHANGE is the whole prompt: the original's style names go with its prompt
        carried.pop("styles", None)
    settings = {**carried, **{key: value for key, value in explicit.items() if value is not None}}
    request = Request.parse(
        prompt=prompt, init_image=init_image, strength=strength, width=width, height=height, **settings
    )
    styles = tuple(styles)
    return apply_styles(request, styles) if styles else request


def refined_png(result: Result, original: bytes, original_name: str, texts: dict[str, str] | None = None) -> bytes:
    """The engine's image with its own metadata (and `texts`) plus its lineage: the original first, then the
    original's own."""
    png = add_metadata(
        result.images[0], result.request_for(result.seeds[0]), model=result.model, sampler=result.sampler, texts=texts
    )
    return with_lineage(png, lineage_of(original, original_name))


def output_path(original: Path) -> Path:
    """A free name next to the original: `<name>-refined.png`, then `-refined-2.png`..."""
    candidate = original.with_name(f"{original.stem}-refined.png")
    number = 1
    while candidate.exists():
        number += 1
        candidate = original.with_name(f"{original.stem}-refined-{number}.png")
    return candidate


def save_refined(
    result: Result, given: Request, original: bytes, image: Path, out: Path | None, warn: Callable[[str], None]
) -> Path:
    """Write the refined PNG beside `image` (or at `out`), with its metadata, the request as the user gave it and
    its lineage; when that folder cannot take it, it is kept in a fallback folder and `warn` says where."""
    target = out or output_path(image)
    data = refined_png(result, original, image.name, given_texts(given))
    try:
        return write_atomically(target, data)
    except OSError as exc:  # the image is made: never lose it
        return keep_elsewhere(data, target.name, f"{target} could not be written ({exc.strerror or exc})", warn)
