"""AUTOMATIC1111's txt2img/img2img bodies (as its `modules/api/models.py` defines them) mapped onto a Request,
and its answer's `info` document.

A1111's fields that dreamtray honours become the request's; a field that asks for something dreamtray does not
do (hires fix, face restoration, tiling, variation seeds, inpainting masks, scripts and `alwayson_scripts` such
as ControlNet, a refiner, option overrides other than the checkpoint) is refused with a message naming it,
never ignored. A field at A1111's own "off" value (what clients such as `webuiapi` always send) is accepted.
Fields A1111 leaves to its defaults (steps 50, CFG 7, 512x512) take the model's own when the client leaves
them out. Unknown fields are ignored, as A1111 ignores them.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from dreamtray import samplers
from dreamtray.engine.server.api_fields import FieldError
from dreamtray.request import MAX_SEED, MAX_SIDE, Request, RequestError, Result

MAX_INIT_PIXELS = MAX_SIDE * MAX_SIDE
"""Largest init image, in pixels: larger ones are refused before they are decoded (a decompression bomb)."""
INIT_FORMATS = ("PNG", "JPEG", "WEBP")
SCHEDULERS = {"automatic": None, "karras": "Karras", "exponential": "Exponential", "beta": "Beta"}
"""A1111's scheduler (schedule type) names that dreamtray runs, and its own name for each."""
KNOWN_OPTIONS = {"sd_model_checkpoint", "show_progress_every_n_steps", "samples_format"}
DEFAULT_OPTIONS: dict[str, tuple[Any, ...]] = {
    "CLIP_stop_at_last_layers": (1,),
    "eta_noise_seed_delta": (0,),
    "sd_vae": ("Automatic", "None", None),
}
"""Options dreamtray does not have, accepted at these values (A1111's defaults: they change nothing); the first
is what GET /options reports."""


class A1111Error(FieldError):
    """A request A1111's API would take but dreamtray cannot honour, or a bad value (the message names the field)."""


class Txt2ImgBody(BaseModel):
    """A1111's StableDiffusionProcessingTxt2Img API body: the fields dreamtray reads (others are ignored)."""

    model_config = ConfigDict(extra="allow")

    prompt: str = ""
    negative_prompt: str | None = ""
    styles: list[str] | None = None
    seed: int | None = -1
    subseed: int | None = -1
    subseed_strength: float | None = 0
    seed_resize_from_h: int | None = -1
    seed_resize_from_w: int | None = -1
    sampler_name: str | None = None
    sampler_index: str | None = None
    scheduler: str | None = None
    batch_size: int | None = 1
    n_iter: int | None = 1
    steps: int | None = None
    cfg_scale: float | None = None
    width: int | None = None
    height: int | None = None
    restore_faces: bool | None = None
    tiling: bool | None = None
    eta: float | None = None
    s_churn: float | None = None
    s_tmax: float | None = None
    s_tmin: float | None = None
    s_noise: float | None = None
    denoising_strength: float | None = None
    override_settings: dict[str, Any] | None = None
    override_settings_restore_afterwards: bool | None = True
    refiner_checkpoint: str | None = None
    enable_hr: bool | None = False
    script_name: str | None = None
    script_args: list[Any] | None = Field(default_factory=list)
    send_images: bool = True
    save_images: bool = False
    alwayson_scripts: dict[str, Any] | None = Field(default_factory=dict)
    infotext: str | None = None


class Img2ImgBody(Txt2ImgBody):
    """A1111's StableDiffusionProcessingImg2Img API body: txt2img's and the init image's fields."""

    init_images: list[str] | None = None
    denoising_strength: float | None = 0.75
    resize_mode: int | None = 0
    mask: str | None = None
    include_init_images: bool = False
    initial_noise_multiplier: float | None = None


def _unsupported(field: str, what: str) -> A1111Error:
    return A1111Error(f"{field}: {what} is not supported by dreamtray; leave it out (or off) and try again", 422)


def check_supported(body: Txt2ImgBody) -> None:
    """An A1111Error naming the first field that asks for what dreamtray does not do."""
    switched_on = {
        "enable_hr": "hires fix",
        "restore_faces": "face restoration",
        "tiling": "tiling",
    }
    for field, what in switched_on.items():
        if getattr(body, field):
            raise _unsupported(field, what)
    scripts = [name for name, value in (body.alwayson_scripts or {}).items() if _script_asks(value)]
    if scripts:
        raise _unsupported("alwayson_scripts", f"the script {', '.join(map(repr, scripts))} (A1111 extensions)")
    if body.script_name:
        raise _unsupported("script_name", f"the script {body.script_name!r}")
    if body.refiner_checkpoint:
        raise _unsupported("refiner_checkpoint", "a refiner")
    if body.infotext:
        raise _unsupported("infotext", "settings taken from an infotext")
    if body.subseed_strength:
        raise _unsupported("subseed_strength", "a variation seed")
    for field in ("seed_resize_from_h", "seed_resize_from_w"):
        if (getattr(body, field) or -1) > 0:
            raise _unsupported(field, "resizing a seed")
    at_default = {"eta": (1.0,), "s_churn": (0.0,), "s_tmin": (0.0,), "s_tmax": (0.0,), "s_noise": (1.0,)}
    for field, values in at_default.items():
        value = getattr(body, field)
        if value is not None and float(value) not in values:
            raise _unsupported(field, f"the sampler setting {field}={value}")
    if isinstance(body, Img2ImgBody):
        if body.mask:
            raise _unsupported("mask", "inpainting")
        if body.resize_mode not in (None, 0):
            raise _unsupported("resize_mode", f"resize mode {body.resize_mode} (only 0, just resize)")
        if body.initial_noise_multiplier not in (None, 1, 1.0):
            raise _unsupported("initial_noise_multiplier", "an initial noise multiplier")


def _script_asks(value: object) -> bool:
    """Whether an `alwayson_scripts` entry asks its script for anything (`{"args": []}` and `{}` do not)."""
    if isinstance(value, dict):
        return bool(value.get("args"))
    return bool(value)


def override_options(overrides: dict[str, Any] | None) -> dict[str, Any]:
    """The A1111 options a request or POST /options sets; an A1111Error for one dreamtray does not have."""
    overrides = dict(overrides or {})
    for key, value in overrides.items():
        if key in KNOWN_OPTIONS or value in DEFAULT_OPTIONS.get(key, ()):
            continue
        raise A1111Error(
            f"option {key}={value!r} is not supported by dreamtray (it has sd_model_checkpoint, "
            "show_progress_every_n_steps and samples_format png)",
            422,
        )
    if overrides.get("samples_format", "png") != "png":
        raise A1111Error("option samples_format: dreamtray sends png only", 422)
    return overrides


def sampler_label(body: Txt2ImgBody) -> str | None:
    """dreamtray's sampler for A1111's `sampler_name` (or `sampler_index`) and `scheduler`; 404 as A1111 answers
    for a sampler it does not have."""
    name = body.sampler_name or body.sampler_index
    scheduler = (body.scheduler or "automatic").strip().lower()
    if scheduler not in SCHEDULERS:
        raise A1111Error(f"scheduler {body.scheduler!r} is not available; choose one of {', '.join(SCHEDULERS)}", 422)
    if not name:
        return None
    if name not in samplers.SAMPLERS:
        raise A1111Error(f"Sampler not found: {name!r}; dreamtray has {', '.join(samplers.SAMPLERS)}", 404)
    schedule = SCHEDULERS[scheduler]
    try:
        return samplers.parse(f"{name} {schedule}" if schedule else name).label
    except samplers.SamplerError as exc:
        raise A1111Error(f"scheduler: {exc}", 422) from None


def decode_image(text: str, where: str) -> bytes:
    """An image sent as base64 (or a data: URL) as its file's bytes, checked (format, pixel count) before its
    pixels are decoded, then opened the one careful way (`image_input`); `where` names the field in messages."""
    from PIL import Image, UnidentifiedImageError

    from dreamtray.image_input import ImageInputError, open_rgb

    if text.startswith(("http://", "https://")):
        raise A1111Error(f"{where}: an image URL is not fetched by dreamtray; send the image as base64", 422)
    if text.startswith("data:"):
        text = text.partition(",")[2]
    try:
        data = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise A1111Error(f"{where}: not base64 (send the image file's bytes as base64)", 422) from None
    kind, width, height = None, 0, 0
    try:
        with Image.open(io.BytesIO(data)) as picture:
            kind, (width, height) = picture.format, picture.size
    except Image.DecompressionBombError:
        raise A1111Error(f"{where}: more pixels than the {MAX_INIT_PIXELS:,} dreamtray decodes", 413) from None
    except (UnidentifiedImageError, OSError, ValueError):
        pass  # open_rgb below says what is wrong with it
    if width * height > MAX_INIT_PIXELS:
        too_many = f"{width}x{height} is more than the {MAX_INIT_PIXELS:,} pixels dreamtray decodes"
        raise A1111Error(f"{where}: {too_many}", 413)
    if kind is not None and kind not in INIT_FORMATS:
        raise A1111Error(f"{where}: a {kind} image; send PNG, JPEG or WebP", 422)
    try:
        open_rgb(data, where)
    except ImageInputError as exc:
        raise A1111Error(str(exc), 422) from None
    return data


def to_request(body: Txt2ImgBody, model: str | None, preview_every: int) -> Request:
    """The dreamtray request for an A1111 body (checked first by `check_supported`)."""
    init_image = strength = None
    if isinstance(body, Img2ImgBody):
        if not body.init_images:
            raise A1111Error("init_images: img2img needs an init image (base64)", 422)
        if len(body.init_images) > 1:
            raise _unsupported("init_images", "more than one init image")
        init_image = decode_image(body.init_images[0], "init_images[0]")
        strength = body.denoising_strength
    seed = body.seed if body.seed is not None and body.seed >= 0 else None
    if seed is not None and seed > MAX_SEED:
        raise A1111Error(f"seed: {seed} is over the largest seed, {MAX_SEED}", 422)
    count = (body.batch_size or 1) * (body.n_iter or 1)
    fields: dict[str, Any] = {
        "prompt": body.prompt,
        "negative_prompt": body.negative_prompt or "",
        "styles": tuple(body.styles or ()),
        "seed": seed,
        "steps": body.steps,
        "guidance": body.cfg_scale,
        "width": body.width,
        "height": body.height,
        "sampler": sampler_label(body),
        "count": count,
        "model": model,
        "init_image": init_image,
        "preview_every": preview_every,
    }
    if strength is not None:
        fields["strength"] = strength
    try:
        return Request.parse(**fields)
    except RequestError as exc:
        raise A1111Error(str(exc).replace("count:", "batch_size x n_iter:"), 422) from None


def info(body: Txt2ImgBody, result: Result, infotexts: list[str], warnings: list[str]) -> str:
    """A1111's `info`: the JSON document (as a string) of what was made, one entry per image where it lists."""
    request = result.request
    fields = samplers.split(result.sampler) if result.sampler else {}
    count = len(result.seeds)
    document = {
        "prompt": request.prompt,
        "all_prompts": [request.prompt] * count,
        "negative_prompt": request.negative_prompt,
        "all_negative_prompts": [request.negative_prompt] * count,
        "seed": result.seeds[0] if result.seeds else None,
        "all_seeds": result.seeds,
        "subseed": body.subseed if body.subseed is not None and body.subseed >= 0 else -1,
        "all_subseeds": [body.subseed if body.subseed is not None and body.subseed >= 0 else -1] * count,
        "subseed_strength": 0,
        "width": request.width,
        "height": request.height,
        "sampler_name": fields.get("Sampler"),
        "scheduler": (fields.get("Schedule type") or "Automatic").lower(),
        "cfg_scale": request.guidance,
        "steps": request.steps,
        "batch_size": body.batch_size or 1,
        "restore_faces": False,
        "face_restoration_model": None,
        "sd_model_name": result.model,
        "sd_model_hash": None,
        "sd_vae_name": None,
        "sd_vae_hash": None,
        "seed_resize_from_w": -1,
        "seed_resize_from_h": -1,
        "denoising_strength": request.strength if request.init_image is not None else None,
        "extra_generation_params": {"Schedule type": fields["Schedule type"]} if "Schedule type" in fields else {},
        "index_of_first_image": 0,
        "infotexts": infotexts,
        "styles": list(request.styles),
        "job_timestamp": time.strftime("%Y%m%d%H%M%S"),
        "clip_skip": 1,
        "is_using_inpainting_conditioning": False,
        "version": "dreamtray",
        "warnings": warnings,
    }
    return json.dumps(document, ensure_ascii=False)


def echo(body: Txt2ImgBody) -> dict[str, Any]:
    """The `parameters` A1111 answers with: the request body's A1111 fields (not the others a client added, such
    as a front end's own `auth`), without the init images unless asked for."""
    echoed = body.model_dump(include=set(type(body).model_fields))
    if isinstance(body, Img2ImgBody) and not body.include_init_images:
        echoed["init_images"] = None
    return echoed
