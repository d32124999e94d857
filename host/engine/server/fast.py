"""The fast path of a request: the tiny decoder for previews and `quality = fast`, and the OpenVINO pipeline.

Both are made on a job's first need and kept with the loaded model. Neither may fail a job: a tiny decoder that
cannot be had (offline, no TAESD for the family) turns previews off and decodes with the full VAE; an OpenVINO
back end that cannot convert, or whose cache is broken, leaves the job on torch. Each says so in a warning.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dreamtray.engine.presets import TAESD_BY_PIPELINE
from dreamtray.engine.server.hardware import OPENVINO_PIPELINES
from dreamtray.engine.server.loaded import Loaded
from dreamtray.engine.server.taesd import TinyDecoder
from dreamtray.request import Request

Emit = Callable[[dict[str, Any]], None]


def _warn(message: str, emit: Emit, warnings: list[str]) -> None:
    if message not in warnings:
        warnings.append(message)
        emit({"kind": "warning", "message": message})


def prepare(loaded: Loaded, pipe, request: Request, cache_dir: Path, emit: Emit, warnings: list[str]):
    """The pipeline to run and the tiny decoder (None when the request needs none or none can be had).

    For `quality = fast` on a plan whose runtime is OpenVINO, the pipeline runs its UNet and text encoder there
    and the tiny decoder decodes there too; requests with LoRAs or an init image stay on torch.
    """
    decoder = _tiny_decoder(loaded, cache_dir, request, emit, warnings)
    if request.quality != "fast" or loaded.plan.runtime != "openvino" or request.loras or request.init_image:
        return pipe, decoder
    if "openvino" not in loaded.extras:
        if openvino_can_run(loaded.pipe):
            loaded.extras["openvino"] = _convert(loaded, cache_dir, emit, warnings)
        else:
            loaded.extras["openvino"] = None
            emit({"kind": "warning", "message": f"Quality fast runs on torch: {UNSUPPORTED}"})
    openvino = loaded.extras["openvino"]
    if openvino is None:
        return pipe, decoder
    try:
        _compile_for(openvino, pipe, request)
    except Exception as exc:
        for name in ("openvino", "fast_pipe"):  # the broken entry is gone: the next job converts again
            loaded.extras.pop(name, None)
        _warn(f"Running on torch: {exc}", emit, warnings)
        return pipe, decoder
    if "fast_pipe" not in loaded.extras:
        loaded.extras["fast_pipe"] = openvino.pipeline()
    fast = loaded.extras["fast_pipe"]
    fast.scheduler = pipe.scheduler
    if decoder is not None and openvino.tiny_decoder is not None:
        decoder = TinyDecoder(decoder.taesd, loaded.pipe, openvino.decode)
    return fast, decoder


UNSUPPORTED = "this model's UNet takes inputs that the OpenVINO back end does not pass (or is no SD pipeline)"
UNET_EXTRAS = ("time_cond_proj_dim", "addition_embed_type", "class_embed_type")
"""UNet inputs beyond (latents, timestep, text) that the converted UNet would silently lose."""


def openvino_can_run(pipe) -> bool:
    """Whether the OpenVINO back end converts this pipeline faithfully: SD's UNet with no extra conditioning."""
    config = pipe.unet.config
    return type(pipe).__name__ in OPENVINO_PIPELINES and not any(getattr(config, key, None) for key in UNET_EXTRAS)


def _tiny_decoder(
    loaded: Loaded, cache_dir: Path, request: Request, emit: Emit, warnings: list[str]
) -> TinyDecoder | None:
    if request.quality != "fast" and not request.preview_every:
        return None
    if "tiny" not in loaded.extras:
        from dreamtray.engine.server.models import load_taesd

        source, pipe = loaded.source, loaded.pipe
        hub_id = source.preset.taesd or TAESD_BY_PIPELINE.get(type(pipe).__name__)
        try:
            taesd = load_taesd(source, hub_id, loaded.plan.dtype, cache_dir, emit).to(loaded.plan.device)
            loaded.extras["tiny"] = TinyDecoder(taesd, pipe)
        except Exception as exc:
            loaded.extras["tiny"] = str(exc)
    decoder = loaded.extras["tiny"]
    if not isinstance(decoder, str):
        return decoder
    if request.quality == "fast":
        _warn(f"Decoded with the full VAE: the tiny decoder is not available. {decoder}", emit, warnings)
    else:  # previews are a nicety: said in the progress, not in the result's warnings
        emit({"kind": "warning", "message": f"No previews: the tiny decoder is not available. {decoder}"})
    return None


def wants_preview(request: Request, decoder: TinyDecoder | None, step: int, total: int, final_is_tiny: bool) -> bool:
    """Whether step `step` of `total` sends a preview; not the last one when the tiny decoder draws the result."""
    if decoder is None or not request.preview_every:
        return False
    if step == total:
        return not final_is_tiny
    return step % request.preview_every == 0


def _convert(loaded: Loaded, cache_dir: Path, emit: Emit, warnings: list[str]):
    """The model's modules on OpenVINO (converted now, or read from the cache); None, with a warning, on failure."""
    try:
        from dreamtray.engine.server.openvino_backend import CacheError, OpenVinoModules
    except ImportError as exc:
        _warn(f"Running on torch: OpenVINO cannot be loaded ({exc})", emit, warnings)
        return None
    decoder = loaded.extras.get("tiny")
    taesd = decoder.taesd if isinstance(decoder, TinyDecoder) else None
    try:
        return OpenVinoModules(loaded.pipe, taesd, openvino_folder(cache_dir, loaded.source), loaded.source.name, emit)
    except CacheError as exc:
        _warn(f"Running on torch: {exc}", emit, warnings)
    except Exception as exc:
        _warn(f"Running on torch: converting to OpenVINO failed ({type(exc).__name__}: {exc})", emit, warnings)
    return None


def _compile_for(openvino, pipe, request: Request) -> None:
    unet = pipe.unet.config
    batch = 2 if request.guidance > 1 and unet.time_cond_proj_dim is None else 1
    scale = pipe.vae_scale_factor
    hidden = pipe.text_encoder.config.hidden_size
    openvino.compile_for(batch, request.height // scale, request.width // scale, unet.in_channels, hidden)


def openvino_folder(cache_dir: Path, source) -> Path:
    """Where a model's OpenVINO conversions live: one folder per model, named for people, unique by location."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", source.name).strip("-") or "model"
    where = hashlib.sha256(f"{source.kind}:{source.location}".encode()).hexdigest()[:8]
    return cache_dir / "openvino" / f"{slug}-{where}"
