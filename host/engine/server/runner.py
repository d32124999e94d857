"""The diffusers side of the engine: keep one pipeline loaded and turn requests into PNGs.

Transport-free: the worker process, the Ray deployment and the benchmarks all drive a `Runner` directly.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dreamtray import samplers
from dreamtray.engine.presets import AUTO
from dreamtray.engine.server import prompts, same_subject
from dreamtray.engine.server.background_conversion import BackgroundConversions
from dreamtray.engine.server.embeddings import with_cached_negative
from dreamtray.engine.server.hardware import Machine, Plan, choose_auto_preset, decide, probe_machine
from dreamtray.engine.server.loaded import Loaded
from dreamtray.engine.server.models import ModelSource, load_pipeline, resolve_model
from dreamtray.engine.server.taesd import png_bytes, preview_event
from dreamtray.engine.settings import Overrides, Policy
from dreamtray.request import MAX_PIXELS_OVER_NATIVE, Request, Result

WEIGHT_ALIGNMENT = 64
"""Bytes: where PyTorch's CPU allocator starts every tensor, and so every copy that placement or offload makes."""


class GenerationCancelled(Exception):
    """Raised inside the denoising loop when the job was cancelled; the half-done image is discarded."""


class GenerationError(RuntimeError):
    """A job that failed for a reason the user can act on."""


Emit = Callable[[dict[str, Any]], None]


@dataclass
class Runner:
    """Owns at most one loaded pipeline and generates with it, one request at a time."""

    cache_dir: Path
    default_model: str = AUTO
    overrides: Overrides = field(default_factory=Overrides)
    allow_pickle: bool = False
    single_file_config: str | None = None
    machine: Machine | None = None
    loaded: Loaded | None = None
    load_count: int = 0
    finish_early: Callable[[], bool] = field(default=lambda: False, repr=False)
    """The running job's "finish now" signal (set by `generate`)."""
    conversions: BackgroundConversions | None = field(default=None, repr=False)
    """The models this runner converts to OpenVINO in the background (made on first use)."""

    def resolve(self, spec: str | None) -> ModelSource:
        spec = spec or self.default_model
        if spec == AUTO:
            spec = choose_auto_preset(self._machine()).name
        return resolve_model(spec, allow_pickle=self.allow_pickle, single_file_config=self.single_file_config)

    def _machine(self) -> Machine:
        if self.machine is None:
            self.machine = probe_machine()
        return self.machine

    def ensure_loaded(
        self,
        spec: str | None,
        emit: Emit = lambda event: None,
        cancelled: Callable[[], bool] = lambda: False,
        request: Request | None = None,
    ) -> Loaded:
        """The model `spec`, loaded: kept when it is the one held; light (fast.py) when `request` can run on its
        cached OpenVINO modules alone, else in full (a light model held is loaded in full when needed)."""
        from dreamtray.engine.server import fast

        source = self.resolve(spec)
        plan = decide(self._machine(), source.preset, self.overrides)
        light_enough = request is not None and fast.may_load_light(request, plan)
        if self.loaded and self.loaded.source == source and (light_enough or not self.loaded.light):
            return self.loaded
        self.unload()
        emit(
            {
                "kind": "loading",
                "model": source.name,
                "message": f"Loading {source.name} ({plan.policy.value}, {plan.dtype})",
            }
        )
        light = fast.load_light(source, plan, self.cache_dir, emit, cancelled) if light_enough else None
        if light is not None:
            pipe, folder, extras = light
        else:
            pipe, folder = load_pipeline(source, plan.dtype, self.cache_dir, emit, cancelled)
            pipe.set_progress_bar_config(disable=True)
            _place(pipe, plan)
            extras = {}
        if source.kind == "hub" or not hasattr(pipe, "unet"):
            native = source.preset.native_size
        else:
            native = int(pipe.unet.config.sample_size * pipe.vae_scale_factor)
        default_scheduler = pipe.scheduler
        if source.preset.scheduler:
            default_scheduler = scheduler_for(pipe.scheduler, source.preset.scheduler)
        self.loaded = Loaded(
            source,
            plan,
            pipe,
            native_size=native,
            default_scheduler=default_scheduler,
            folder=folder,
            light=light is not None,
            extras=extras,
        )
        self.load_count += 1
        return self.loaded

    def import_ahead(self) -> None:
        """Import what a job of the default model will need (its pipeline class, and OpenVINO where its plan
        runs `fast` there), so that the job does not wait for it; a failure here is left to that job to report."""
        try:
            source = self.resolve(None)
            plan = decide(self._machine(), source.preset, self.overrides)
            from dreamtray.engine.server.models import pipeline_class

            pipeline_class("StableDiffusionPipeline" if source.kind == "tiny" else source.preset.pipeline)
            import accelerate  # noqa: F401 (the light pipeline's empty shells)

            if plan.runtime == "openvino":
                import dreamtray.engine.server.openvino_backend  # noqa: F401
        except Exception:
            pass

    def unload(self) -> None:
        """Drop the pipeline and give its memory back to the device."""
        if self.loaded is None:
            return
        self.loaded = None
        _free_memory()

    def generate(
        self,
        request: Request,
        emit: Emit = lambda event: None,
        cancelled: Callable[[], bool] = lambda: False,
        finish_early: Callable[[], bool] = lambda: False,
    ) -> Result:
        """`request`'s images. `cancelled()` true: stop and discard; `finish_early()` true: the image being made is
        decoded as far as it got and kept, and a batch makes no more (A1111's Interrupt)."""
        from dreamtray.engine.server import fast

        self.finish_early = finish_early
        started = time.perf_counter()
        request = request.with_seed()
        subject = request.subject if request.subject is not None and request.subject.plugin is None else None
        light_ok = subject is None or subject.method == "init-image" or subject.method == "auto" and not subject.image
        loaded = self.ensure_loaded(request.model, emit, cancelled, request if light_ok else None)
        if loaded.light and not fast.serves_light(loaded, request):
            loaded = self.ensure_loaded(request.model, emit, cancelled)
        warnings: list[str] = []
        request = self._settle(request, loaded, warnings)
        run, reference = request, None
        if subject is not None:
            request, run, reference = self._keep_subject(request, loaded, emit, cancelled, warnings)
            loaded = self.loaded
        try:
            images = self._run(run, loaded, emit, cancelled, warnings, reference)
        except Exception as exc:
            if loaded.light and not isinstance(exc, GenerationCancelled):  # a broken cache, say: the full model
                emit(
                    {
                        "kind": "loading",
                        "message": f"Loading the whole model: the cached OpenVINO modules failed ({exc})",
                    }
                )
                loaded = self.ensure_loaded(request.model, emit, cancelled)
                images = self._run(run, loaded, emit, cancelled, warnings, reference)
            elif isinstance(exc, same_subject.SubjectError):
                raise GenerationError(f"Same subject: {exc}.") from exc
            elif not _is_out_of_memory(exc):
                raise
            else:
                images = self._retry_lower(run, loaded, emit, cancelled, warnings, reference)
        pngs = [png_bytes(image) for image in images]
        if subject is not None:
            same_subject.anchor_png(loaded, request, pngs[0])
        return Result(
            request=request,
            images=pngs,
            seeds=[request.seed + i for i in range(len(pngs))],
            model=loaded.source.name,
            sampler=request.sampler or sampler_name(loaded.default_scheduler),  # the request holds A1111 names
            warnings=warnings,
            seconds=time.perf_counter() - started,
        )

    def _keep_subject(self, request: Request, loaded: Loaded, emit: Emit, cancelled, warnings: list[str]):
        """The request with its subject's method chosen, the request to run (for init-image, with the reference
        as its init image) and what the run shares (the first image's record, or the IP-Adapter's picture)."""
        subject = request.subject
        try:
            method = same_subject.choose(subject, loaded, request)
        except same_subject.SubjectError as exc:
            raise GenerationError(f"Same subject: {exc}.") from None
        if method == "shared-attention" and request.quality == "fast" and loaded.plan.runtime == "openvino":
            warnings.append("Shared attention runs on torch (the OpenVINO UNet's attention cannot be changed).")
            request = request.model_copy(update={"quality": "balanced"})
        request = request.model_copy(update={"subject": subject.model_copy(update={"method": method})})
        subject = request.subject
        if subject.anchor:
            return request, request, None
        try:
            if method == "shared-attention":
                return request, request, same_subject.ensure_record(self, subject, loaded, emit, cancelled)
            reference = same_subject.reference_png(self, subject, loaded, emit, cancelled)
        except same_subject.SubjectError as exc:
            raise GenerationError(f"Same subject: {exc}.") from None
        if method == "init-image":
            return request, request.model_copy(update={"init_image": reference, "strength": subject.strength}), None
        return request, request, reference

    def _retry_lower(self, request, loaded: Loaded, emit: Emit, cancelled, warnings: list[str], reference=None):
        from dreamtray.engine.server import fast

        _free_memory()
        lower = loaded.plan.stepped_down()
        if lower is None:
            raise GenerationError(
                f"Out of memory running {loaded.source.name} even on the CPU: try a smaller size or a smaller model."
            )
        message = f"Ran out of memory; retrying with {lower.policy.value.replace('_', ' ')}."
        warnings.append(message)
        emit({"kind": "warning", "message": message})
        _place(loaded.pipe, lower)
        loaded.plan = lower
        loaded.img2img = None
        fast.drop_openvino(loaded)  # the stepped-down plan runs on torch: free them
        try:
            return self._run(request, loaded, emit, cancelled, warnings, reference)
        except Exception as exc:
            if _is_out_of_memory(exc):
                _free_memory()
                raise GenerationError(
                    f"Out of memory running {loaded.source.name} at {request.width}x{request.height}, also with "
                    f"{lower.policy.value.replace('_', ' ')}: try a smaller size, fewer images, or a smaller model."
                ) from exc
            raise

    def _settle(self, request: Request, loaded: Loaded, warnings: list[str]) -> Request:
        """Fill in the preset's defaults and snap the size; note what the pipeline cannot honour in the prompt."""
        quality = request.quality or loaded.plan.quality
        settled = with_defaults(request, loaded.source, loaded.native_size, quality, warnings)
        warnings += prompts.warnings_for(loaded.pipe, request.prompt, request.negative_prompt)
        return settled

    def _pipeline_for(self, request: Request, loaded: Loaded):
        self._apply_loras(request, loaded)
        pipe = loaded.pipe
        if request.init_image is not None:
            if loaded.img2img is None:
                from diffusers import AutoPipelineForImage2Image

                loaded.img2img = AutoPipelineForImage2Image.from_pipe(pipe, vae=pipe.vae)  # SDXS's is a TAESD
                loaded.img2img.set_progress_bar_config(disable=True)
            pipe = loaded.img2img
        pipe.scheduler = scheduler_for(loaded.default_scheduler, request.sampler)
        return pipe

    def _apply_loras(self, request: Request, loaded: Loaded) -> None:
        wanted = tuple((lora.source, lora.scale) for lora in request.loras)
        if wanted == loaded.loras:
            return
        pipe = loaded.pipe
        if loaded.loras:
            pipe.unload_lora_weights()
        loaded.loras = ()
        names = []
        for index, (source, _) in enumerate(wanted):
            try:
                pipe.load_lora_weights(source, adapter_name=f"lora{index}")
            except Exception as exc:
                raise GenerationError(f"Could not load LoRA {source}: {exc}") from exc
            names.append(f"lora{index}")
        if names:
            pipe.set_adapters(names, adapter_weights=[scale for _, scale in wanted])
        loaded.loras = wanted

    def _run(
        self,
        request: Request,
        loaded: Loaded,
        emit: Emit,
        cancelled: Callable[[], bool],
        warnings: list[str],
        reference: Any = None,
    ):
        import torch

        from dreamtray.engine.server import fast

        torch_pipe = self._pipeline_for(request, loaded)
        if self.conversions is None:
            self.conversions = BackgroundConversions(
                self.cache_dir, self.overrides, self.allow_pickle, self.single_file_config
            )
        pipe, tiny = fast.prepare(loaded, torch_pipe, request, self.cache_dir, emit, warnings, self.conversions)
        steps = request.steps
        kwargs: dict[str, Any] = {}
        if request.init_image is not None:
            kwargs["image"] = init_picture(request.init_image).resize((request.width, request.height))
            kwargs["strength"] = request.strength
            steps = max(steps, math.ceil(1 / request.strength))
            total = max(1, int(steps * request.strength))
        else:
            kwargs.update(width=request.width, height=request.height)
            total = steps
        vae = pipe.vae
        if loaded.plan.tiles(request.width, request.height):
            vae.enable_tiling()
        else:
            vae.disable_tiling()
        done, overall = 0, total * request.count
        decode_with_tiny = tiny is not None and request.quality == "fast"

        def on_step_end(pipeline, step, timestep, callback_kwargs):
            nonlocal done
            done += 1
            emit({"kind": "step", "step": done, "total": overall})
            if self.finish_early() and not pipeline.interrupt:
                pipeline._interrupt = True  # diffusers skips the steps left and decodes the latents as they are
                warnings.append(f"Interrupted at step {done} of {overall}: the image is as far as it had got.")
            if fast.wants_preview(request, tiny, step + 1, total, decode_with_tiny):
                emit(preview_event(tiny, callback_kwargs["latents"], done, request.width, request.height))
            if cancelled():
                raise GenerationCancelled()
            return callback_kwargs

        emit({"kind": "start", "total": overall})
        images = []
        autocast = None if request.quality == "best" else loaded.plan.autocast
        with torch.autocast("cpu", getattr(torch, autocast)) if autocast else contextlib.nullcontext():
            # Encoded on torch (compel needs its text encoder); a plain prompt stays text for the pipeline to encode.
            text = prompts.encode(torch_pipe, request.prompt, request.negative_prompt, guidance=request.guidance)
            arguments = with_cached_negative(loaded, pipe, text.kwargs, request.guidance, autocast)
        for index in range(request.count):
            if index and self.finish_early():
                break
            # One image at a time: image i is then exactly what seed + i gives alone (batches differ in the last bit).
            with (
                torch.autocast("cpu", getattr(torch, autocast)) if autocast else contextlib.nullcontext(),
                same_subject.applied(loaded, pipe, request, kwargs, reference, index),
            ):
                output = pipe(
                    **arguments,
                    num_inference_steps=steps,
                    guidance_scale=request.guidance,
                    generator=torch.Generator("cpu").manual_seed(request.seed + index),
                    callback_on_step_end=on_step_end,
                    output_type="latent" if decode_with_tiny else "pil",
                    **kwargs,
                )
                if decode_with_tiny:
                    images.extend(tiny.to_images(output.images, request.width, request.height))
                else:
                    images.extend(output.images)
        return images


def init_picture(data: bytes):
    """The init image as RGB pixels; GenerationError, saying why, when it cannot be used."""
    from dreamtray.image_input import ImageInputError, open_rgb

    try:
        return open_rgb(data, "The init image")[0]
    except ImageInputError as exc:
        raise GenerationError(f"{exc}.") from None


def with_defaults(request: Request, source, native: int, quality: str, warnings: list[str]) -> Request:
    """`request` with the preset's steps and guidance where it gives none, its size snapped (a note in `warnings`
    when that changes what was asked), and the model's name and the quality it runs at."""
    preset = source.preset
    width, height = request.pixel_size(native, preset.size_multiple)
    if note := size_change_note(request, width, height, native, preset.size_multiple):
        warnings.append(note)
    return request.model_copy(
        update={
            "width": width,
            "height": height,
            "steps": request.steps or preset.steps,
            "guidance": preset.guidance if request.guidance is None else request.guidance,
            "model": source.name,
            "quality": quality,
        }
    )


def size_change_note(request: Request, width: int, height: int, native: int, multiple: int) -> str | None:
    """A warning when the size asked for is not the size made (None when it is, or when none was asked for)."""
    asked = (request.width or width, request.height or height)
    if request.width is None and request.height is None or asked == (width, height):
        return None
    limit = native * native * MAX_PIXELS_OVER_NATIVE
    reasons = []
    if asked[0] * asked[1] > limit:
        reasons.append(f"at most {limit:,} pixels ({MAX_PIXELS_OVER_NATIVE}x its native {native}x{native})")
    if asked[0] % multiple or asked[1] % multiple:
        reasons.append(f"sides in multiples of {multiple}")
    why = " and ".join(reasons) or "its own size steps"
    return f"The size {asked[0]}x{asked[1]} was changed to {width}x{height}: this model takes {why}."


def sampler_name(scheduler) -> str:
    """The A1111 name of a scheduler (`DPM++ 2M Karras`) where it has one, else its diffusers class name."""
    return samplers.from_class(type(scheduler).__name__, dict(scheduler.config)).label


def scheduler_for(default, sampler: str | None):
    """A fresh scheduler: the model's default, or the named sampler configured like it."""
    import diffusers

    if not sampler:
        return type(default).from_config(default.config)
    try:
        class_name, settings = samplers.parse(sampler).scheduler()
    except samplers.SamplerError as exc:
        raise GenerationError(f"{exc}.") from None
    cls = getattr(diffusers, class_name, None)
    if cls is None:
        raise GenerationError(f"Unknown sampler {sampler!r}: diffusers has no scheduler class {class_name!r}.")
    return cls.from_config(default.config, **settings)


def _place(pipe, plan: Plan) -> None:
    """Put the pipeline's weights where the plan says."""
    import torch

    pipe.remove_all_hooks()
    dtype = getattr(torch, plan.dtype)
    if pipe.dtype != dtype:
        pipe.to(dtype=dtype)
    if plan.policy is Policy.MODEL_OFFLOAD:
        pipe.to("cpu")
        pipe.enable_model_cpu_offload(device=plan.device)
    elif plan.policy is Policy.SEQUENTIAL_OFFLOAD:
        pipe.to("cpu")
        pipe.enable_sequential_cpu_offload(device=plan.device)
    else:
        pipe.to(plan.device)
        if torch.device(plan.device).type == "cpu":
            align_weights(pipe)
    if plan.attention_slicing:
        pipe.enable_attention_slicing()
    if plan.channels_last:
        for name in ("unet", "vae"):
            if getattr(pipe, name, None) is not None:
                getattr(pipe, name).to(memory_format=torch.channels_last)


def align_weights(pipe) -> None:
    """Copy the weights that start off `WEIGHT_ALIGNMENT` (views into a memory-mapped model file) to fresh memory.

    CPU matrix kernels round differently for data at different alignments. Left in place, the pixels a seed gives
    on the CPU would depend on the file's header length, and would change when offload hooks copy the weights.
    """
    import torch

    for module in pipe.components.values():
        if isinstance(module, torch.nn.Module):
            for tensor in itertools.chain(module.parameters(), module.buffers()):
                if tensor.data_ptr() % WEIGHT_ALIGNMENT:
                    tensor.data = tensor.data.clone()


def _is_out_of_memory(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def _free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        torch.mps.empty_cache()

