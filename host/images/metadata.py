"""Generation metadata in PNG files: what we write, and what we can read from our own and others' images.

We write two text chunks:
- `parameters`: AUTOMATIC1111's format, which A1111, ComfyUI, Civitai and most image tools show:
  the prompt (one or more lines), a `Negative prompt: ...` line when there is one, then one line of
  `Key: value` pairs: `Steps: 4, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 42,
  Size: 512x512, Model: sd-turbo, Styles array: ["Ink"]`. The prompt is the styled prompt, whole, as A1111
  writes it; sampler names are A1111's (1.9+: sampler and schedule type apart). A value holding `,` `:` or a
  line break is written as a JSON string in double quotes, as A1111 does.
- `dreamtray`: the full request as JSON, so `generate --from IMAGE` reproduces the image exactly. It keeps the
  user's own prompt (`unstyled`) apart from the style names, so the styles apply once again, never twice,
  and the user's words apart from their prompt expansion (`expanded_from`), so `--from` repeats the expansion.

We read those, AUTOMATIC1111's `parameters` alone, and ComfyUI's `prompt`/`workflow` JSON chunks. From
another program's image, `reproduce` maps every setting dreamtray can honour and gives one warning for each
one it cannot (clip skip, hires fix, a sampler it lacks...).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from dreamtray import samplers
from dreamtray.image_input import ImageInputError, read_image_file
from dreamtray.images.pngchunks import (
    COMPRESS_ABOVE,
    Chunk,
    CorruptPNGError,
    image_size,
    join_chunks,
    read_text,
    read_texts,
    split_chunks,
    text_chunk,
)
from dreamtray.images.settings_line import settings_pairs
from dreamtray.request import Request, RequestError, describe_validation_error

PARAMETERS_KEY = "parameters"
REQUEST_KEY = "dreamtray"
GIVEN_KEY = "dreamtray-given"
"""The request as the user gave it, before plugins, the action and styles changed it (its image left out):
`generate --from` starts there, so no plugin's change is ever applied twice."""
COMFYUI_KEYS = ("prompt", "workflow")

DREAMTRAY = "dreamtray"
AUTOMATIC1111 = "AUTOMATIC1111"
COMFYUI = "ComfyUI"

_KEY = re.compile(r"\w[\w \-/]+")
_SIZE = re.compile(r"^(\d+)x(\d+)$")
_MARKER_LINE = re.compile(r"\s*\\*Negative prompt:")
"""A line that reads as the negative-prompt marker, escaped or not (escaped ones start with backslashes)."""
_ESCAPED_MARKER_LINE = re.compile(r"\\+Negative prompt:")
_NEEDS_QUOTES = re.compile(r'[,:\x00-\x1f\x7f]|^"|^\s|\s$')


class MetadataError(ValueError):
    """An image whose generation metadata cannot be read; the message names the file and says why."""


class NoMetadataError(MetadataError):
    """A readable PNG that does not say how it was generated."""


class CorruptImageError(MetadataError):
    """A file that is not a well-formed PNG (wrong signature, truncated, a damaged chunk)."""


@dataclass(frozen=True)
class Parameters:
    """The settings an image was made with, as the A1111 `parameters` text carries them."""

    prompt: str
    negative_prompt: str = ""
    steps: int | None = None
    sampler: str | None = None
    cfg_scale: float | None = None
    seed: int | None = None
    width: int | None = None
    height: int | None = None
    model: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
    """Further `Key: value` pairs, in order (A1111 writes many: Model hash, VAE, Version...)."""

    def settings(self) -> dict[str, str]:
        """All settings as A1111 names them, in A1111's order, leaving out unknown ones."""
        size = f"{self.width}x{self.height}" if self.width and self.height else None
        cfg = None if self.cfg_scale is None else _number(self.cfg_scale)
        known = {
            "Steps": self.steps,
            "Sampler": self.sampler,
            "CFG scale": cfg,
            "Seed": self.seed,
            "Size": size,
            "Model": self.model,
        }
        settings = {key: str(value) for key, value in known.items() if value is not None}
        if "Schedule type" in self.extra:  # A1111 writes it right after the sampler
            settings = _insert_after(settings, "Sampler", "Schedule type", self.extra["Schedule type"])
        return settings | self.extra


@dataclass(frozen=True)
class ImageMetadata:
    """What an image says about how it was made."""

    source: str
    """Who wrote the metadata: `dreamtray`, `AUTOMATIC1111` (or a tool writing its format), `ComfyUI`."""
    width: int
    height: int
    parameters: Parameters | None
    request: Request | None = None
    """The full request, from our own `dreamtray` chunk."""
    prompts: tuple[str, ...] = ()
    """Every prompt text found (ComfyUI graphs may hold several)."""
    texts: dict[str, str] = field(default_factory=dict)
    """Every text chunk of the file, by keyword."""
    warnings: tuple[str, ...] = ()


def _insert_after(settings: dict[str, str], after: str, key: str, value: str) -> dict[str, str]:
    items = list(settings.items())
    at = next((index + 1 for index, (name, _) in enumerate(items) if name == after), len(items))
    return dict([*items[:at], (key, value), *items[at:]])


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def quote(value: str) -> str:
    """A value as it goes into the settings line: JSON-quoted when it holds `,` `:` or a line break.

    Values that start with a quote or have blanks at either end are quoted too, so that they read back
    unchanged (A1111 would unquote or strip them).
    """
    return json.dumps(value, ensure_ascii=False) if _NEEDS_QUOTES.search(value) else value


def unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def format_parameters(parameters: Parameters) -> str:
    """The A1111 `parameters` text for these settings."""
    for key in parameters.extra:
        if not _KEY.fullmatch(key):
            raise ValueError(f"setting name {key!r} is not allowed: use letters, digits, blanks, '-' and '/'")
    settings = ", ".join(f"{key}: {quote(value)}" for key, value in parameters.settings().items())
    prompt, negative = _escape_markers(parameters.prompt), _escape_markers(parameters.negative_prompt)
    negative = f"\nNegative prompt: {negative}" if negative else ""
    return f"{prompt}{negative}\n{settings}".strip()


def _escape_markers(text: str) -> str:
    """`text` with a backslash before each line that would read as the `Negative prompt:` marker (and before
    lines already escaped that way), so a prompt holding such a line cannot move text into other fields."""
    return "\n".join("\\" + line.lstrip() if _MARKER_LINE.match(line) else line for line in text.split("\n"))


def parse_parameters(text: str) -> Parameters:
    """Read A1111 `parameters` text: prompt lines, `Negative prompt:` lines, and a last line of settings."""
    *lines, last = text.strip().split("\n")
    pairs = settings_pairs(last)
    if len(pairs) < 3:
        lines.append(last)
        pairs = []
    prompt: list[str] = []
    negative: list[str] = []
    for line in lines:
        line = line.strip()
        if not negative and line.startswith("Negative prompt:"):
            negative.append(line.removeprefix("Negative prompt:").strip())
            continue
        if _ESCAPED_MARKER_LINE.match(line):
            line = line[1:]  # an escaped marker: text of the prompt
        (negative if negative else prompt).append(line)
    settings = {key: unquote(value.strip()) for key, value in pairs}
    return _parameters_from_settings("\n".join(prompt), "\n".join(negative), settings)


def _parameters_from_settings(prompt: str, negative: str, settings: dict[str, str]) -> Parameters:
    """Typed fields for the settings we know; anything else, or what does not parse, stays in `extra`."""
    typed: dict[str, Any] = {}
    extra: dict[str, str] = {}
    for key, value in settings.items():
        try:
            if key == "Steps":
                typed["steps"] = int(value)
            elif key == "Sampler":
                typed["sampler"] = value
            elif key == "CFG scale":
                typed["cfg_scale"] = float(value)
            elif key == "Seed":
                typed["seed"] = int(value)
            elif key == "Size" and (size := _SIZE.match(value)):
                typed["width"], typed["height"] = int(size[1]), int(size[2])
            elif key == "Model":
                typed["model"] = value
            else:
                extra[key] = value
        except ValueError:
            extra[key] = value
    return Parameters(prompt=prompt, negative_prompt=negative, extra=extra, **typed)


def parameters_for(request: Request, *, width: int, height: int, model: str, sampler: str) -> Parameters:
    """The A1111 settings of an image generated from `request` (which should hold the settings really used)."""
    named = samplers.split(sampler) if sampler else {}
    extra = {"Schedule type": named["Schedule type"]} if "Schedule type" in named else {}
    if request.init_image is not None:
        extra["Denoising strength"] = _number(request.strength)
    if request.subject is not None:
        extra["Same subject"] = request.subject.describe()
    if request.styles:
        extra["Styles array"] = json.dumps(list(request.styles), ensure_ascii=False)
    if request.expanded_from is not None:  # the user's words, before prompt expansion grew the prompt
        extra["Expanded from"] = request.expanded_from
    return Parameters(
        prompt=request.prompt,
        negative_prompt=request.negative_prompt,
        steps=request.steps,
        sampler=named.get("Sampler"),
        cfg_scale=request.guidance,
        seed=request.seed,
        width=width,
        height=height,
        model=model,
        extra=extra,
    )


def add_metadata(
    png: bytes, request: Request, *, model: str, sampler: str, texts: Mapping[str, str] | None = None
) -> bytes:
    """The PNG with our `parameters` and `dreamtray` chunks (replacing earlier ones); pixels untouched.

    `request` should be the one that made this very image: its seed set, the settings really used.
    It is stored with `count=1`, so that it reproduces this one image. `texts` are further text chunks
    to carry (a refined image's lineage, say), each replacing a chunk of the same name.
    """
    try:
        chunks = split_chunks(png)
    except CorruptPNGError as exc:
        raise CorruptImageError(f"the engine's image: {exc}") from None
    width, height = image_size(chunks)
    request = request.model_copy(update={"count": 1})
    parameters = format_parameters(parameters_for(request, width=width, height=height, model=model, sampler=sampler))
    request_json = request.model_dump_json()
    ours = {PARAMETERS_KEY: parameters, REQUEST_KEY: request_json, **(texts or {})}
    new = [
        text_chunk(key, text, compress=len(text) > COMPRESS_ABOVE and key != PARAMETERS_KEY)
        for key, text in ours.items()
    ]
    kept = [chunk for chunk in chunks[1:] if _text_key(chunk) not in ours]
    return join_chunks([chunks[0], *new, *kept])


def _text_key(chunk: Chunk) -> str | None:
    try:
        found = read_text(chunk)
    except CorruptPNGError:
        return None
    return found[0] if found else None


def read_metadata(source: Path | str | bytes, *, name: str | None = None) -> ImageMetadata:
    """Read the generation metadata of a PNG file (or PNG bytes, named `name` in messages).

    Raises CorruptImageError for a file that is not a well-formed PNG, NoMetadataError for a PNG that
    does not say how it was made, MetadataError when the file cannot be read.
    """
    if isinstance(source, bytes):
        data, label = source, name or "the image"
    else:
        label = name or str(source)
        data = _read_bounded(Path(source), label)
    try:
        chunks = split_chunks(data)
        texts = read_texts(chunks)
    except CorruptPNGError as exc:
        raise CorruptImageError(f"{label}: {exc}") from None
    width, height = image_size(chunks)
    if REQUEST_KEY in texts or PARAMETERS_KEY in texts:
        return _a1111_or_ours(texts, width, height, label)
    if any(key in texts for key in COMFYUI_KEYS):
        return _comfyui(texts, width, height)
    present = ", ".join(repr(key) for key in texts)
    raise NoMetadataError(
        f"{label}: no generation metadata (no 'parameters', 'dreamtray' or ComfyUI text chunk)"
        + (f"; its text chunks are {present}" if present else "; it has no text chunks at all")
    )


def _read_bounded(path: Path, label: str) -> bytes:
    try:
        return read_image_file(path, label)
    except ImageInputError as exc:
        raise MetadataError(str(exc)) from None


def _a1111_or_ours(texts: dict[str, str], width: int, height: int, label: str) -> ImageMetadata:
    warnings: list[str] = []
    request = None
    if REQUEST_KEY in texts:
        try:
            request = Request.model_validate_json(texts[REQUEST_KEY])
        except ValidationError as exc:
            warnings.append(f"the 'dreamtray' chunk holds no valid request ({describe_validation_error(exc)})")
    parameters = parse_parameters(texts[PARAMETERS_KEY]) if PARAMETERS_KEY in texts else None
    if parameters is not None and request is not None:  # our own image: the exact prompts are in the request
        parameters = replace(parameters, prompt=request.prompt, negative_prompt=request.negative_prompt)
    if parameters is not None:
        prompts: tuple[str, ...] = (parameters.prompt,)
    elif request is not None:
        prompts = (request.prompt,)
    else:
        raise NoMetadataError(f"{label}: its only generation metadata is unreadable: {warnings[0]}")
    source = DREAMTRAY if request is not None else AUTOMATIC1111
    return ImageMetadata(source, width, height, parameters, request, prompts, texts, tuple(warnings))


def _comfyui(texts: dict[str, str], width: int, height: int) -> ImageMetadata:
    """ComfyUI stores its graph: `prompt` (the API form: node id -> class_type and inputs) and `workflow`."""
    warnings: list[str] = []
    graph: dict[str, Any] = {}
    loaded = _json(texts.get("prompt", "{}"))
    if isinstance(loaded, dict):
        graph = {key: node for key, node in loaded.items() if isinstance(node, dict)}
    else:
        warnings.append("its 'prompt' chunk is not a JSON object of nodes")
    node_texts = {key: text for key, node in graph.items() if (text := _node_text(node))}
    prompts = tuple(dict.fromkeys(node_texts.values()))
    if not prompts and "workflow" in texts:
        prompts = _workflow_texts(texts["workflow"], warnings)
    parameters = _comfyui_parameters(graph, node_texts, width, height) if graph else None
    if parameters is None and prompts:
        parameters = Parameters(prompt=prompts[0], width=width, height=height)
    return ImageMetadata(COMFYUI, width, height, parameters, None, prompts, texts, tuple(warnings))


def _node_text(node: dict[str, Any]) -> str | None:
    inputs = node.get("inputs")
    if not isinstance(inputs, dict):
        return None
    parts = [inputs[key] for key in ("text", "text_g", "text_l") if isinstance(inputs.get(key), str)]
    return "\n".join(dict.fromkeys(part for part in parts if part.strip())) or None


def _json(text: str) -> object:
    """The JSON value of `text`, or None when it is not JSON (or nests too deep to read)."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _workflow_texts(workflow: str, warnings: list[str]) -> tuple[str, ...]:
    loaded = _json(workflow)
    nodes = loaded.get("nodes") if isinstance(loaded, dict) else None
    if not isinstance(nodes, list):
        warnings.append("its 'workflow' chunk is not a JSON object with a list of nodes")
        return ()
    found = []
    for node in nodes:
        if isinstance(node, dict) and isinstance(node.get("type"), str) and "TextEncode" in node["type"]:
            values = node.get("widgets_values")
            found += [value for value in values if isinstance(value, str) and value] if isinstance(values, list) else []
    return tuple(dict.fromkeys(found))


def _comfyui_parameters(
    graph: dict[str, Any], node_texts: dict[str, str], width: int, height: int
) -> Parameters | None:
    """Settings from the first sampler node: one whose `positive` and `negative` inputs link to text nodes."""

    def linked_text(link: object) -> str:
        return node_texts.get(str(link[0]), "") if isinstance(link, list) and link else ""

    model = next(
        (
            node["inputs"][key]
            for node in graph.values()
            for key in ("ckpt_name", "unet_name")
            if isinstance(node.get("inputs"), dict) and isinstance(node["inputs"].get(key), str)
        ),
        None,
    )
    for node in graph.values():
        inputs = node.get("inputs")
        if not isinstance(inputs, dict) or "positive" not in inputs:
            continue
        seed = inputs.get("seed", inputs.get("noise_seed"))
        return Parameters(
            prompt=linked_text(inputs.get("positive")),
            negative_prompt=linked_text(inputs.get("negative")),
            steps=inputs["steps"] if isinstance(inputs.get("steps"), int) else None,
            sampler=inputs["sampler_name"] if isinstance(inputs.get("sampler_name"), str) else None,
            cfg_scale=_float(inputs.get("cfg")),
            seed=seed if isinstance(seed, int) else None,
            width=width,
            height=height,
            model=model,
        )
    return None


def _float(value: object) -> float | None:
    """A JSON number as a float; None for anything else, and for an integer too large to be one."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return float(value)
    except OverflowError:
        return None


UNHONOURED: dict[str, tuple[str, ...]] = {
    "hires fix": ("Hires upscale", "Hires resize", "Hires steps", "Hires upscaler", "Hires sampler", "Hires prompt",
                  "Hires negative prompt", "Hires CFG Scale", "Hires schedule type", "Hires checkpoint"),
    "clip skip": ("Clip skip",),
    "variation seed": ("Variation seed", "Variation seed strength", "Seed resize from"),
    "face restoration": ("Face restoration",),
    "refiner": ("Refiner", "Refiner switch at"),
    "eta": ("Eta", "Eta DDIM", "ENSD", "Eta noise seed delta"),
    "LoRAs": ("Lora hashes",),
    "embeddings": ("TI hashes",),
    "tiling": ("Tiling",),
}  # fmt: skip
"""A1111 settings dreamtray cannot honour, grouped into one warning each."""


@dataclass(frozen=True)
class Reproduction:
    """The request that makes an image again, and one line for each of its settings that cannot be honoured."""

    request: Request
    warnings: tuple[str, ...] = ()


def reproduce(metadata: ImageMetadata, *, name: str = "the image") -> Reproduction:
    """The request that makes the image again: our stored request, else one built from the A1111 settings.

    From our own image, the user's prompt and the style names come back apart, so the styles apply once. From
    another program's image, the prompt (already styled: its `Styles array` only names what it holds), negative
    prompt, steps, CFG scale, seed, size and sampler carry over; each setting that cannot (its checkpoint, clip
    skip, hires fix...) gets one warning.
    """
    if metadata.request is not None:
        given = given_request(metadata)
        return Reproduction(given if given is not None else _unstyled(metadata.request))
    parameters = metadata.parameters
    if parameters is None or not parameters.prompt.strip():
        raise NoMetadataError(f"{name}: its metadata holds no prompt to generate from")
    warnings: list[str] = []
    sampler = None
    if parameters.sampler:
        found, problems = samplers.join(parameters.sampler, parameters.extra.get("Schedule type"))
        sampler, warnings = (found.label if found else None), problems
    if parameters.model:
        warnings.append(
            f"Model: {parameters.model!r} is that program's checkpoint; dreamtray's configured model is used"
        )
    warnings += _unhonoured(parameters.extra)
    try:
        request = Request.parse(
            prompt=parameters.prompt,
            negative_prompt=parameters.negative_prompt,
            steps=parameters.steps,
            guidance=parameters.cfg_scale,
            seed=parameters.seed,
            width=parameters.width or metadata.width,
            height=parameters.height or metadata.height,
            sampler=sampler,
        )
    except RequestError as exc:
        raise RequestError(f"{name}: its settings make no valid request: {exc}") from None
    return Reproduction(request, tuple(warnings))


def given_texts(given: Request) -> dict[str, str]:
    """The text chunk that keeps `given`, the request as the user gave it, in the image (see GIVEN_KEY)."""
    return {GIVEN_KEY: given.model_dump_json(exclude={"init_image"})}


def given_request(metadata: ImageMetadata) -> Request | None:
    """The request as the user gave it, with what the image settled (its seed, model and size) where the user
    left them open; None for an image that does not keep it."""
    text = metadata.texts.get(GIVEN_KEY)
    stored = metadata.request
    if text is None or stored is None:
        return None
    try:
        given = Request.model_validate_json(text)
    except ValidationError:
        return None
    settled: dict[str, object] = {"count": 1, "model": given.model or stored.model}
    settled["seed"] = given.seed if given.seed is not None and given.count == 1 else stored.seed
    if given.width is None and given.height is None and given.aspect is None:
        settled.update(width=stored.width, height=stored.height, aspect=stored.aspect)
    return given.model_copy(update=settled)


def _unstyled(request: Request) -> Request:
    """Our stored request as the user gave it: their own text and the style names (applied again on use)."""
    if request.unstyled is not None:
        user = request.unstyled
        return request.model_copy(
            update={"prompt": user.prompt, "negative_prompt": user.negative_prompt, "unstyled": None}
        )
    return request.model_copy(update={"styles": ()})  # older images: the prompt already holds its styles


def _unhonoured(extra: Mapping[str, str]) -> list[str]:
    hires = any(key in extra for key in UNHONOURED["hires fix"])
    warnings = []
    for what, keys in UNHONOURED.items():
        found = [f"{key}: {extra[key]}" for key in keys if key in extra]
        if what == "clip skip" and extra.get("Clip skip") == "1":
            continue
        if what == "hires fix" and found and "Denoising strength" in extra:
            found.append(f"Denoising strength: {extra['Denoising strength']}")
        if found:
            warnings.append(f"{what} not applied: {', '.join(found)}")
    if "Denoising strength" in extra and not hires:
        warnings.append(
            f"Denoising strength: {extra['Denoising strength']}: the source image of an img2img result is not stored; "
            "a new image is made from the prompt"
        )
    return warnings


def request_from_metadata(metadata: ImageMetadata, *, name: str = "the image") -> Request:
    """The request that makes the image again (see `reproduce`, which also gives the warnings)."""
    return reproduce(metadata, name=name).request


def request_from_image(path: Path | str) -> Request:
    """The request that reproduces the image at `path` (for `dreamtray generate --from IMAGE`).

    Raises MetadataError (or a subclass) when the file says nothing usable, RequestError when its settings
    are outside what dreamtray accepts; both messages name the file.
    """
    return request_from_metadata(read_metadata(path), name=str(path))


def reproduce_image(path: Path | str) -> Reproduction:
    """`reproduce` for the image at `path`: its request and the warnings for what cannot be honoured."""
    return reproduce(read_metadata(path), name=str(path))
