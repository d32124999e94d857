"""The worker's torch-free side: `quality = fast` for a model in optimum-intel's export layout, on OpenVINO and
numpy (ov_pipeline.py), in a process that never imports torch or diffusers.

`TorchFreeRunner.takes` says whether a request is one it serves: `fast` on the OpenVINO plan, a model that is an
export, no LoRA, no init image or subject to keep, plain prompts within the text encoder's window, and an Euler
sampler (ov_scheduler.py). Everything else goes to the torch runner (runner.py), which the worker imports only
then. The job's events and result are the torch runner's: `loading`, `start`, `step`, `preview`, warnings.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dreamtray import samplers
from dreamtray.engine.presets import AUTO
from dreamtray.engine.server import fast
from dreamtray.engine.server.hardware import Machine, Plan, choose_auto_preset, cpu_flags, decide, host_machine
from dreamtray.engine.server.models import ModelError, ModelSource, resolve_model
from dreamtray.engine.settings import Overrides
from dreamtray.prompt_syntax import is_plain, parse
from dreamtray.request import Request, Result

Emit = Callable[[dict[str, Any]], None]
GPU_SIGNS = ("/proc/driver/nvidia", "/dev/kfd", "/dev/nvidiactl")
"""Files a CUDA or ROCm machine has: there only torch can say whether a GPU is usable, so torch decides."""


def machine_without_torch() -> Machine | None:
    """This machine as the decision table sees it, read without torch; None where it may have a GPU that torch
    would use (then the torch runner decides, as before)."""
    if sys.platform == "darwin" or any(os.path.exists(sign) for sign in GPU_SIGNS):
        return None
    return host_machine(cpu_bf16=bool(cpu_flags() & {"avx512_bf16", "amx_tile"}))


@dataclass
class Held:
    """The export the torch-free side holds: its source and pipeline."""

    source: ModelSource
    pipe: Any


@dataclass
class TorchFreeRunner:
    """Serves the requests it `takes` with an export's modules on OpenVINO; holds at most one model."""

    cache_dir: Path
    default_model: str = AUTO
    overrides: Overrides = field(default_factory=Overrides)
    machine: Machine | None = None
    loaded: Held | None = None
    refused: ModelSource | None = None
    """The last model found to be no export, or one this side cannot run: not read again for every request."""
    probed: bool = False

    def _machine(self) -> Machine | None:
        if not self.probed:
            self.machine, self.probed = self.machine or machine_without_torch(), True
        return self.machine

    def usable(self) -> bool:
        """Whether this side can serve anything on this machine (not where torch may have a GPU to use)."""
        return self._machine() is not None

    def takes(self, request: Request, emit: Emit = lambda event: None, cancelled=lambda: False) -> bool:
        """Whether this request runs here (loading the export's configuration and tokenizer when it may)."""
        machine = self._machine()
        if machine is None or request.loras or request.init_image is not None or request.subject is not None:
            return False
        if not all(is_plain(parse(text)) for text in (request.prompt, request.negative_prompt)):
            return False
        try:
            spec = request.model or self.default_model
            source = resolve_model(choose_auto_preset(machine).name if spec == AUTO else spec)
        except ModelError:
            return False  # the torch runner says why, as before
        plan = decide(machine, source.preset, self.overrides)
        if (request.quality or plan.quality) != "fast" or plan.runtime != "openvino":
            return False
        held = self._hold(source, plan, emit, cancelled)
        return (
            held is not None
            and self._scheduler(held, request) is not None
            and all(held.pipe.fits_window(text) for text in (request.prompt, request.negative_prompt))
        )

    def _hold(self, source: ModelSource, plan: Plan, emit: Emit, cancelled) -> Held | None:
        if self.loaded is not None and self.loaded.source == source:
            return self.loaded
        if source == self.refused:
            return None
        exported = fast.export_of(source, self.cache_dir, emit, cancelled)
        if exported is None:
            self.refused = source
            return None
        folder, decoder = exported
        from dreamtray.engine.server.ov_pipeline import OvPipeline

        try:
            pipe = OvPipeline(folder, fast.openvino_folder(self.cache_dir, source) / "compiled", decoder)
        except Exception as exc:
            raise ModelError(f"The OpenVINO modules in {folder} cannot be read: {exc}") from exc
        if pipe.unsupported() is not None:  # the model held stays held: the torch runner decides what to do
            self.refused = source
            return None
        self.unload()
        emit(
            {
                "kind": "loading",
                "model": source.name,
                "torch_free": True,
                "message": f"Loading {source.name} ({plan.policy.value}, {plan.dtype})",
            }
        )
        emit({"kind": "loading", "message": f"Read {source.name}'s OpenVINO modules as exported (no torch)"})
        self.loaded = Held(source, pipe)
        return self.loaded

    def _scheduler(self, held: Held, request: Request) -> tuple[str, dict[str, Any]] | None:
        """The sampler the torch runner would use (the request's, else the preset's, else the model's), when it
        runs here; None when it does not."""
        from dreamtray.engine.server import ov_scheduler

        pipe = held.pipe
        class_name, config = pipe.scheduler_class, dict(pipe.scheduler_config)
        for name in (held.source.preset.scheduler, request.sampler):
            if name:
                try:
                    class_name, settings = samplers.parse(name).scheduler()
                except samplers.SamplerError:
                    return None  # the torch runner says why
                config.update(settings)
        return None if ov_scheduler.unsupported(class_name, config) else (class_name, config)

    def unload(self) -> None:
        self.loaded = None

    def generate(
        self, request: Request, emit: Emit = lambda event: None, cancelled=lambda: False, finish_early=lambda: False
    ) -> Result:
        """The images of a request that `takes` accepted, with the torch runner's events and result: `cancelled()`
        true stops and discards; `finish_early()` true ends the image being made as far as it got, and keeps it."""
        from PIL import Image

        from dreamtray.engine.server.ov_pipeline import OvPipeline
        from dreamtray.engine.server.ov_scheduler import DEFAULTS
        from dreamtray.engine.server.prompts import plain_text
        from dreamtray.engine.server.runner import GenerationCancelled, with_defaults
        from dreamtray.engine.server.taesd import png_bytes

        started = time.perf_counter()
        request = request.with_seed()
        if not self.takes(request, emit, cancelled) or self.loaded is None:
            raise ModelError("This request needs the torch runner.")
        held = self.loaded
        pipe: OvPipeline = held.pipe
        preset, warnings = held.source.preset, []
        native = preset.native_size if held.source.kind == "hub" else pipe.native_size
        request = with_defaults(request, held.source, native, "fast", warnings)
        width, height = request.width, request.height
        scheduler = self._scheduler(held, request)
        guided = pipe.guides(request.guidance)
        window = pipe.tokenizer.window
        hidden = int(pipe.text_encoder.outputs[0][-1].get_length())
        pipe.compile_for(2 if guided else 1, width, height, window, hidden)
        steps, overall, done = request.steps, request.steps * request.count, 0

        def on_step(step: int, latents) -> bool:
            """After a step: events, and whether to stop here (finish early); raises when cancelled."""
            nonlocal done
            done += 1
            emit({"kind": "step", "step": done, "total": overall})
            stop = finish_early()
            if stop:
                warnings.append(f"Interrupted at step {done} of {overall}: the image is as far as it had got.")
            if request.preview_every and step < steps and step % request.preview_every == 0:
                emit({"kind": "preview", "step": done, "png": pipe.preview(latents)})
            if cancelled():
                raise GenerationCancelled()
            return stop

        emit({"kind": "start", "total": overall})
        embeddings = pipe.encode(plain_text(request.prompt), plain_text(request.negative_prompt), guided)
        pngs = []
        for index in range(request.count):
            if index and finish_early():
                break
            latents = pipe.denoise(
                embeddings, request.seed + index, width, height, steps, request.guidance, scheduler, on_step
            )
            pngs.append(png_bytes(Image.fromarray(pipe.decode(latents))))
        return Result(
            request=request,
            images=pngs,
            seeds=[request.seed + i for i in range(len(pngs))],
            model=held.source.name,
            sampler=request.sampler or samplers.from_class(scheduler[0], {**DEFAULTS, **scheduler[1]}).label,
            warnings=warnings,
            seconds=time.perf_counter() - started,
        )
