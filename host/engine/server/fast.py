"""The fast path of a request: the TAESD decoder for previews and `quality = fast`, and the OpenVINO pipeline.

Both are made on a job's first need and kept with the loaded model. Neither may fail a job: a TAESD decoder that
cannot be had (offline, no TAESD for the family) turns previews off and decodes with the full VAE; an OpenVINO
back end that cannot convert, or whose cache is broken, leaves the job on torch. Each says so in a warning.

Once a model's OpenVINO modules are in the cache, a `fast` request that needs nothing else loads them alone
(`load_light`): no torch weights, so the first image after a start or an idle unload takes seconds, not the
torch load's tens of seconds, in a fraction of the memory. A later request that needs torch loads the model in full.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import math
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from dreamtray.engine.presets import TAESD_BY_PIPELINE
from dreamtray.engine.server import memory
from dreamtray.engine.server.background_conversion import BackgroundConversions, log_file, spec_of
from dreamtray.engine.server.hardware import OPENVINO_PIPELINES, Plan
from dreamtray.engine.server.loaded import Loaded
from dreamtray.engine.server.models import ModelError, ModelSource
from dreamtray.engine.server.taesd import TaesdDecoder
from dreamtray.prompt_syntax import is_plain, parse
from dreamtray.request import Request

Emit = Callable[[dict[str, Any]], None]


def _warn(message: str, emit: Emit, warnings: list[str]) -> None:
    if message not in warnings:
        warnings.append(message)
        emit({"kind": "warning", "message": message})


class ConvertingInBackground(Exception):
    """The model converts in a process of its own: this request runs on torch, and a later one looks again."""


def prepare(
    loaded: Loaded,
    pipe,
    request: Request,
    cache_dir: Path,
    emit: Emit,
    warnings: list[str],
    background: BackgroundConversions | None = None,
):
    """The pipeline to run and the TAESD decoder (None when the request needs none or none can be had).

    For `quality = fast` on a plan whose runtime is OpenVINO, the pipeline runs its UNet and text encoder there
    and the TAESD decoder decodes there too; an init image is encoded there by TAESD's encoder (fast_img2img.py).
    Requests with LoRAs stay on torch, and so does an init image where no TAESD encoder can be had. A model that
    must be converted first may convert in the `background` meanwhile (background_conversion.py).
    """
    decoder = _taesd_decoder(loaded, cache_dir, request, emit, warnings)
    if request.quality != "fast" or loaded.plan.runtime != "openvino" or request.loras:
        return pipe, decoder
    encoder = None if request.init_image is None else _taesd_for_encoding(loaded, decoder, cache_dir, emit)
    if request.init_image is not None and encoder is None:
        if loaded.light:  # the runner loads the model in full and says why
            raise ModelError("image-to-image on the fast path encodes with TAESD, which this model does not have here")
        return pipe, decoder
    if "openvino" not in loaded.extras:
        if openvino_can_run(loaded.pipe):
            try:
                loaded.extras["openvino"] = _convert(loaded, cache_dir, request, emit, warnings, background)
            except ConvertingInBackground:
                return pipe, decoder  # nothing kept: a later request reads the modules once they are converted
        else:
            loaded.extras["openvino"] = None
            emit({"kind": "warning", "message": f"Quality fast runs on torch: {UNSUPPORTED}"})
    openvino = loaded.extras["openvino"]
    if openvino is None:
        return pipe, decoder
    if decoder is not None and openvino.taesd_decoder is None:
        try:
            openvino.attach_taesd_decoder(
                decoder.taesd, openvino_folder(cache_dir, loaded.source), loaded.source.name, emit
            )
        except Exception as exc:  # the TAESD decoder then runs on torch; the UNet stays on OpenVINO
            _warn(f"The TAESD decoder runs on torch: converting it to OpenVINO failed ({exc})", emit, warnings)
    try:
        if loaded.plan.int8 and "int8" not in loaded.extras:
            _current_int8(openvino, openvino_folder(cache_dir, loaded.source), remove_broken=not loaded.light)
        _compile_for(openvino, pipe, request)
    except Exception as exc:
        if loaded.light:
            raise  # the runner loads the model in full and runs on torch
        drop_openvino(loaded)  # the broken entry is gone: converted again next
        _warn(f"Running on torch: {exc}", emit, warnings)
        return pipe, decoder
    if "fast_pipe" not in loaded.extras:
        loaded.extras["fast_pipe"] = openvino.pipeline()
    fast = loaded.extras["fast_pipe"]
    fast.scheduler, fast.unet.converted = pipe.scheduler, openvino.unet
    if loaded.plan.int8 and "int8" not in loaded.extras and not (openvino.int8 and openvino.int8_decoder):
        loaded.extras["int8"] = _int8_that_fits(openvino, fast, loaded, cache_dir, emit, warnings)
        _compile_for(openvino, pipe, request)
    if request.init_image is not None:
        fast = _image_to_image(loaded, fast, encoder, cache_dir, emit, warnings)
        if fast is None:
            return pipe, decoder
    if decoder is not None and openvino.taesd_decoder is not None:
        decoder = TaesdDecoder(decoder.taesd, loaded.pipe, openvino.decode)
    return fast, decoder


def drop_openvino(loaded: Loaded) -> None:
    """Let go of the OpenVINO pipelines and modules held with the model (made again on the next fast job)."""
    for name in ("openvino", "fast_pipe", "fast_img2img", "taesd_encoder", "taesd_for_encoding"):
        loaded.extras.pop(name, None)


def _taesd_for_encoding(loaded: Loaded, decoder: TaesdDecoder | None, cache_dir: Path, emit: Emit):
    """The TAESD whose encoder encodes an init image: the decoder's own; for an export that draws with a decoder of
    its own (ready-made repos hold no TAESD encoder), the model family's TAESD, fetched like any model (a few MB)
    once per load; None where none can be had."""
    if decoder is not None and decoder.taesd is not None:
        return decoder.taesd
    if not loaded.light:
        return None
    if "taesd_for_encoding" not in loaded.extras:
        loaded.extras["taesd_for_encoding"] = _fetch_taesd(loaded, cache_dir, emit)
    return loaded.extras["taesd_for_encoding"]


def _fetch_taesd(loaded: Loaded, cache_dir: Path, emit: Emit):
    from dreamtray.engine.server.models import load_taesd

    source = loaded.source
    hub_id = source.preset.taesd or TAESD_BY_PIPELINE.get(type(loaded.pipe).__name__)
    try:
        return load_taesd(source, hub_id, "float32", cache_dir, emit)
    except (ModelError, OSError) as exc:
        emit({"kind": "warning", "message": f"No TAESD encoder for image-to-image on the fast path: {exc}"})
        return None


def _image_to_image(loaded: Loaded, fast, taesd, cache_dir: Path, emit: Emit, warnings: list[str]):
    """The fast pipeline's image-to-image twin; None, with a warning, when its TAESD encoder cannot be converted
    (the job then runs on torch; a light model is loaded in full for it)."""
    from dreamtray.engine.server import fast_img2img

    root = openvino_folder(cache_dir, loaded.source)
    try:
        return fast_img2img.pipeline(loaded.extras, fast, taesd, root, loaded.source.name, emit)
    except Exception as exc:
        if loaded.light:
            raise
        _warn(f"Image-to-image runs on torch: converting TAESD's encoder failed ({exc})", emit, warnings)
        return None


def _current_int8(openvino, root: Path, remove_broken: bool) -> None:
    """Put the cached int8 UNet and TAESD decoder in place of the converted ones, each where it is current."""
    from dreamtray.engine.server.openvino_backend import Converted
    from dreamtray.engine.server.openvino_int8 import is_current

    for made in ("unet-int8", WEIGHTS_ONLY):
        if not openvino.int8 and is_current(root / made, root / "unet" / "model.xml"):
            openvino.unet, openvino.int8 = Converted(root / made, remove_broken), True
    if (
        openvino.taesd_decoder is not None
        and not openvino.int8_decoder
        and is_current(root / "tiny_decoder-int8", root / "tiny_decoder" / "model.xml")
    ):
        openvino.taesd_decoder, openvino.int8_decoder = Converted(root / "tiny_decoder-int8", remove_broken), True


WEIGHTS_ONLY = "unet-int8-weights"
"""Where the data-free int8 UNet is kept (the plan when the calibrated one does not fit the memory)."""


def _int8_that_fits(openvino, fast, loaded: Loaded, cache_dir: Path, emit: Emit, warnings: list[str]) -> bool:
    """int8 by the plan that fits the memory: the calibrated hybrid recipe; else data-free int8 weights for the
    UNet (bench/int8_unet.py: a fraction of the memory, no calibration); else none (bf16). Says which and why."""
    root = openvino_folder(cache_dir, loaded.source)
    size = _ir_unet_bytes(root)
    if openvino.int8 and openvino.unet.folder.name == WEIGHTS_ONLY:
        return True  # that plan leaves the TAESD decoder as converted: no calibration at all
    if openvino.int8 or not (blocked := _blocked("int8", loaded, cache_dir, size)):
        with _one_off("int8", loaded, size, emit):
            return _to_int8(openvino, fast, loaded, cache_dir, emit, warnings)
    if _blocked("compress", loaded, cache_dir, size):
        _warn(f"Quality fast runs in bf16, not int8: {blocked}", emit, warnings)
        return False
    _warn(f"Quality fast runs with data-free int8 weights, not the calibrated int8: {blocked}", emit, warnings)
    from dreamtray.engine.server.openvino_backend import Converted
    from dreamtray.engine.server.openvino_int8 import compress_unet

    try:
        with _one_off("compress", loaded, size, emit):
            folder = compress_unet(root / "unet" / "model.xml", root / WEIGHTS_ONLY, emit)
    except Exception as exc:
        _warn(f"Quality fast runs in bf16: compressing to int8 failed ({type(exc).__name__}: {exc})", emit, warnings)
        return False
    openvino.unet = fast.unet.converted = Converted(folder)
    openvino.int8 = True
    return True


CALIBRATION_SAMPLES = 16
"""UNet calls that calibrate the int8 modules: one per image and step (at least two images, at most 16)."""
MAX_UNET_SAMPLES = 12
"""At most this many of them (evenly over a long schedule) go into the UNet's statistics: each costs seconds."""


def calibration_run(loaded: Loaded) -> dict[str, Any]:
    """How the calibration images are made: the model's own size, steps and guidance, seed 0, so that a model's
    int8 modules (and so its `fast` pixels) are the same whatever request came first, on every machine."""
    preset = loaded.source.preset
    steps = preset.steps
    images = min(16, max(2, math.ceil(CALIBRATION_SAMPLES / steps)))
    size = loaded.native_size
    return {"images": images, "steps": steps, "guidance": preset.guidance, "width": size, "height": size}


def _to_int8(openvino, fast, loaded: Loaded, cache_dir: Path, emit: Emit, warnings: list[str]) -> bool:
    """Swap the UNet and the TAESD decoder for int8 ones: quantized now (once per model, calibrated on images of
    the built-in prompts, `calibration_run`) or read from the cache. A failure keeps bf16, with a warning, for as
    long as the model stays loaded."""
    from dreamtray.engine.server.openvino_backend import Converted
    from dreamtray.engine.server.openvino_int8 import (
        CALIBRATION_PROMPTS,
        collect_calibration,
        quantize_decoder,
        quantize_unet,
    )

    root = openvino_folder(cache_dir, loaded.source)
    collected: list = []

    def calibration():
        if not collected:
            run = calibration_run(loaded)
            images, steps = run["images"], run["steps"]
            emit({"kind": "loading", "message": f"Calibrating for int8: {images} images of {steps} steps"})
            prompts = CALIBRATION_PROMPTS[:images]
            chosen, fast.scheduler = fast.scheduler, copy.deepcopy(loaded.default_scheduler)  # not the request's
            try:
                unet, latents = collect_calibration(
                    fast, prompts, steps, run["guidance"], run["width"], run["height"], 0
                )
            finally:
                fast.scheduler = chosen
            stride = math.ceil(len(unet) / MAX_UNET_SAMPLES)  # evenly over the steps: quantizing costs per sample
            collected.extend((unet[::stride], latents))
        return collected

    try:
        if not openvino.int8:
            unet = quantize_unet(root / "unet" / "model.xml", lambda: calibration()[0], root / "unet-int8", emit)
            openvino.unet = fast.unet.converted = Converted(unet)  # the stand-in runs it from now on
            openvino.int8 = True
        if openvino.taesd_decoder is not None and not openvino.int8_decoder:
            source = root / "tiny_decoder" / "model.xml"
            decoder = quantize_decoder(source, lambda: calibration()[1], root / "tiny_decoder-int8", emit)
            openvino.taesd_decoder, openvino.int8_decoder = Converted(decoder), True
    except Exception as exc:
        _warn(f"Quality fast runs in bf16: quantizing to int8 failed ({type(exc).__name__}: {exc})", emit, warnings)
        return False
    return True


def may_load_light(request: Request, plan: Plan) -> bool:
    """Whether `request` could run on a light pipeline (fast.py's module docstring): `quality = fast` on
    OpenVINO, with no LoRA, and prompts that are plain text (weights and BREAK need torch's text encoder); the
    prompts' length is checked once the tokenizer is there (`serves_light`). An init image is encoded there too
    (fast_img2img.py)."""
    return (
        (request.quality or plan.quality) == "fast"
        and plan.runtime == "openvino"
        and not request.loras
        and all(is_plain(parse(text)) for text in (request.prompt, request.negative_prompt))
    )


def serves_light(loaded: Loaded, request: Request) -> bool:
    """Whether the light pipeline serves `request`: `may_load_light`, and prompts within the encoder's window."""
    tokenizer = loaded.pipe.tokenizer
    return may_load_light(request, loaded.plan) and all(
        len(tokenizer(text, truncation=False).input_ids) <= tokenizer.model_max_length
        for text in (request.prompt, request.negative_prompt)
    )


def load_light(
    source: ModelSource, plan: Plan, cache_dir: Path, emit: Emit, cancelled: Callable[[], bool] = lambda: False
) -> tuple[Any, Path, dict] | None:
    """The model as a light pipeline, its folder and the extras it comes with, when its OpenVINO modules are in
    the cache and fresh; None otherwise, and whatever goes wrong here: the caller then loads the model in full."""
    if source.kind == "single_file" or (source.kind != "tiny" and source.preset.pipeline not in OPENVINO_PIPELINES):
        return None
    root = openvino_folder(cache_dir, source)
    from dreamtray.engine.server.models import pipeline_class, pipeline_folder

    if (exported := export_of(source, cache_dir, emit, cancelled)) is not None:
        try:
            return _load_export(source, *exported, root, emit)
        except Exception as exc:
            raise ModelError(f"The OpenVINO modules in {exported} cannot be read: {exc}") from exc
    if not (root / "unet" / "key.json").is_file():
        return None  # never converted: the model may not even be on disk yet, and the full load fetches it

    folder = pipeline_folder(source, cache_dir, emit)  # its errors (offline, cancelled) are the full load's too
    try:
        from dreamtray.engine.server.openvino_backend import OpenVinoModules, light_pipeline

        modules = OpenVinoModules.cached(root, folder) if folder else None
        if modules is None:
            return None
        name = "StableDiffusionPipeline" if source.kind == "tiny" else source.preset.pipeline
        pipe = light_pipeline(pipeline_class(name), folder, modules)
    except Exception:
        return None
    emit({"kind": "loading", "message": f"Read {source.name}'s OpenVINO modules from the cache (no torch weights)"})
    return pipe, folder, {"openvino": modules, "fast_pipe": pipe}


def export_of(
    source: ModelSource, cache_dir: Path, emit: Emit, cancelled: Callable[[], bool] = lambda: False
) -> tuple[Path, Path | None] | None:
    """`source` in optimum-intel's export layout, when it is one: the export's folder and, for a preset whose
    ready-made repo comes with a TAESD decoder, that decoder's folder (else None). A local folder, a hub model that
    is no preset (of which only the export's files are fetched), or a preset's ready-made repo; None otherwise.
    Both the torch-hosted fast path and the torch-free worker (torchfree.py) ask this one question."""
    from dreamtray.engine.server.models import PRESETS, export_folder, ready_made

    if source.kind == "folder" or (source.kind == "hub" and source.name not in PRESETS):
        exported = export_folder(source, cache_dir, emit, cancelled)
        return None if exported is None else (exported, None)
    return ready_made(source, cache_dir, emit, cancelled)  # a preset's ready-made OpenVINO repo


def _load_export(
    source: ModelSource, folder: Path, decoder: Path | None, root: Path, emit: Emit
) -> tuple[Any, Path, dict]:
    """A model in optimum-intel's export layout as a light pipeline: its modules as they are (nothing converted
    or quantized), its own VAE decoder (or the ready-made TAESD decoder in `decoder`) on OpenVINO drawing `fast`
    images; compiled programs under `root`."""
    from dreamtray.engine.server.models import pipeline_class
    from dreamtray.engine.server.openvino_backend import OpenVinoModules, light_pipeline

    modules = OpenVinoModules.exported(folder, root / "compiled", decoder)
    pipe = light_pipeline(pipeline_class(source.preset.pipeline), folder, modules)
    emit({"kind": "loading", "message": f"Read {source.name}'s OpenVINO modules as exported (no torch weights)"})
    decoder = TaesdDecoder(None, pipe, modules.decode)
    return pipe, folder, {"openvino": modules, "fast_pipe": pipe, "tiny": decoder, "int8": False}


UNSUPPORTED = "this model's UNet takes inputs that the OpenVINO back end does not pass (or is no SD pipeline)"
UNET_EXTRAS = ("time_cond_proj_dim", "addition_embed_type", "class_embed_type")
"""UNet inputs beyond (latents, timestep, text) that the converted UNet would silently lose."""


def openvino_can_run(pipe) -> bool:
    """Whether the OpenVINO back end converts this pipeline faithfully: SD's UNet with no extra conditioning."""
    config = pipe.unet.config
    return type(pipe).__name__ in OPENVINO_PIPELINES and not any(getattr(config, key, None) for key in UNET_EXTRAS)


def _taesd_decoder(
    loaded: Loaded, cache_dir: Path, request: Request, emit: Emit, warnings: list[str]
) -> TaesdDecoder | None:
    if request.quality != "fast" and not request.preview_every:
        return None
    if "tiny" not in loaded.extras:
        from dreamtray.engine.server.models import load_taesd

        source, pipe = loaded.source, loaded.pipe
        hub_id = source.preset.taesd or TAESD_BY_PIPELINE.get(type(pipe).__name__)
        try:
            if type(getattr(pipe, "vae", None)).__name__ == "AutoencoderTiny":  # a TAESD of its own (SDXS)
                loaded.extras["tiny"] = TaesdDecoder(pipe.vae, pipe)
            else:
                taesd = load_taesd(source, hub_id, loaded.plan.dtype, cache_dir, emit).to(loaded.plan.device)
                loaded.extras["tiny"] = TaesdDecoder(taesd, pipe)
        except Exception as exc:
            loaded.extras["tiny"] = str(exc)
    decoder = loaded.extras["tiny"]
    if not isinstance(decoder, str):
        return decoder
    if request.quality == "fast":
        _warn(f"Decoded with the full VAE: the TAESD decoder is not available. {decoder}", emit, warnings)
    else:  # previews are a nicety: said in the progress, not in the result's warnings
        emit({"kind": "warning", "message": f"No previews: the TAESD decoder is not available. {decoder}"})
    return None


def wants_preview(request: Request, decoder: TaesdDecoder | None, step: int, total: int, final_is_taesd: bool) -> bool:
    """Whether step `step` of `total` sends a preview; not the last one when the TAESD decoder draws the result."""
    if decoder is None or not request.preview_every:
        return False
    if step == total:
        return not final_is_taesd
    return step % request.preview_every == 0


def _unet_bytes(pipe) -> int:
    """The torch UNet's weights in fp32."""
    return 4 * sum(parameter.numel() for parameter in pipe.unet.parameters())


def _ir_unet_bytes(root: Path) -> int:
    """The converted UNet's weights in fp32 (its IR keeps them in 16 bits)."""
    try:
        return 2 * (root / "unet" / "model.bin").stat().st_size
    except OSError:
        return 0


def _blocked(step: str, loaded: Loaded, cache_dir: Path, unet_bytes: int) -> str | None:
    """Why the one-off `step` must not start (it would not fit the memory, or ran out of it before); None when
    it may."""
    budget, own = memory.budget(), memory.own_usage()
    room, need = budget.room(own), memory.step_peak(step, unet_bytes)
    label, name = memory.STEP_LABELS[step], loaded.source.name
    if (before := memory.wall(cache_dir, name, step, room)) is not None:
        return (
            f"{label} ran out of memory before for {name} (with {memory.gib(before)} to grow in), and the engine "
            f"has not much more now ({budget.describe(own)}). Close other programs or raise the engine's memory limit."
        )
    if not memory.fits(need, room):
        return (
            f"{label} needs about {memory.gib(need)} at its peak for {name}, and the engine has "
            f"{budget.describe(own)}. Close other programs or raise the engine's memory limit."
        )
    return None


@contextlib.contextmanager
def _one_off(step: str, loaded: Loaded, unet_bytes: int, emit: Emit) -> Iterator[None]:
    """Announce a one-off step (the service records it, should the kernel kill the worker for memory in it)."""
    budget, own = memory.budget(), memory.own_usage()
    need, name = memory.step_peak(step, unet_bytes), loaded.source.name
    label = memory.STEP_LABELS[step]
    emit(
        {
            "kind": "loading",
            "message": f"Memory for {label} ({name}): about {memory.gib(need)} at its peak; "
            f"the engine has {budget.describe(own)}",
            "one_off": {"step": step, "model": name, "room": budget.room(own)},
        }
    )
    yield
    emit({"kind": "loading", "one_off": None})


def _convert(
    loaded: Loaded,
    cache_dir: Path,
    request: Request,
    emit: Emit,
    warnings: list[str],
    background: BackgroundConversions | None,
):
    """The model's modules on OpenVINO (converted now, or read from the cache); None, with a warning, on failure
    or when converting would not fit the memory (`_blocked`). ConvertingInBackground, with a warning, while they
    convert in the background."""
    try:
        from dreamtray.engine.server.openvino_backend import OpenVinoModules
        from dreamtray.engine.server.openvino_runtime import CacheError
    except ImportError as exc:
        _warn(f"Running on torch: OpenVINO cannot be loaded ({exc})", emit, warnings)
        return None
    root = openvino_folder(cache_dir, loaded.source)
    converting = OpenVinoModules.needs_conversion(loaded.pipe, root)
    if converting and background is not None and (note := _in_background(loaded, root, request, background)):
        _warn(note, emit, warnings)
        raise ConvertingInBackground
    if converting and (blocked := _blocked("convert", loaded, cache_dir, _unet_bytes(loaded.pipe))):
        _warn(f"Quality fast runs on torch: {blocked}", emit, warnings)
        return None
    try:
        with _one_off("convert", loaded, _unet_bytes(loaded.pipe), emit) if converting else (contextlib.nullcontext()):
            return OpenVinoModules.convert(loaded.pipe, root, loaded.source.name, emit, loaded.folder)
    except CacheError as exc:
        _warn(f"Running on torch: {exc}", emit, warnings)
    except Exception as exc:
        _warn(f"Running on torch: converting to OpenVINO failed ({type(exc).__name__}: {exc})", emit, warnings)
    return None


def _in_background(loaded: Loaded, root: Path, request: Request, background: BackgroundConversions) -> str:
    """What a request says while the model converts in the background (starting it now where none runs); '' where
    the worker converts it itself: not wanted, not room enough beside the model held, or done there already
    (failed, or not in the form this worker reads)."""
    unet_bytes = _unet_bytes(loaded.pipe)
    if not background.wanted(unet_bytes, loaded.folder):
        return ""
    if not background.busy(root):
        if root in background.ended or not background.fits(unet_bytes):
            return ""
        background.start(spec_of(loaded.source), loaded.plan.dtype, root, request.width, request.height)
    return (
        f"Converting {loaded.source.name} to OpenVINO in the background, at low priority (once for this model; its "
        f"log: {log_file(root)}): quality fast runs on torch until it is done."
    )


def _compile_for(openvino, pipe, request: Request) -> None:
    unet = pipe.unet.config
    batch = 2 if request.guidance > 1 and unet.time_cond_proj_dim is None else 1
    scale = pipe.vae_scale_factor
    hidden = pipe.text_encoder.config.hidden_size
    window = pipe.tokenizer.model_max_length
    openvino.compile_for(batch, request.height // scale, request.width // scale, unet.in_channels, hidden, window)


def openvino_folder(cache_dir: Path, source) -> Path:
    """Where a model's OpenVINO conversions live: one folder per model, named for people, unique by location."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", source.name).strip("-") or "model"
    where = hashlib.sha256(f"{source.kind}:{source.location}".encode()).hexdigest()[:8]
    return cache_dir / "openvino" / f"{slug}-{where}"
