"""Converting a model to OpenVINO in a process of its own, at low priority, while its first images come from torch.

A model with no ready-made OpenVINO files (a user's own folder or hub model) has its UNet and text encoder converted
once, and quantized, before `quality = fast` runs on OpenVINO: minutes of work for a real model. Rather than hold
the first image for it, the worker starts conversion_process.py, at the lowest CPU and disk priority;
meanwhile the model's images come from torch, and each says so. The process makes one image through the fast path
(so it converts, quantizes and compiles exactly as the worker would, under the same memory budget, into the same
cache); the first request after it is done runs on OpenVINO. It starts only where its peak fits beside the worker,
ends with the worker that started it, and writes its lines to a log beside the model's OpenVINO folder.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from dreamtray.engine.presets import PRESETS
from dreamtray.engine.server import memory
from dreamtray.engine.settings import Overrides, WorkerSettings
from dreamtray.request import Request

MIN_UNET_BYTES = 256 * 2**20
"""Where `engine.convert_in_background` is `auto`: a model whose UNet holds this much in fp32 or more (any real
Stable Diffusion model: SD 1.5's holds 3.4 GB) converts in the background; a smaller one, in seconds, before its
first image."""
PROCESS = "dreamtray.engine.server.conversion_process"
"""The module the process runs."""


@dataclass
class BackgroundConversions:
    """The conversions one worker's runner has started in the background: at most one per model at a time."""

    cache_dir: Path
    overrides: Overrides
    allow_pickle: bool = False
    single_file_config: str | None = None
    running: dict[Path, subprocess.Popen] = field(default_factory=dict)
    ended: set[Path] = field(default_factory=set)
    """The models whose conversion ended (its log says how): one still not converted after it (it failed, or
    converted into a form this worker does not read) is converted by the worker itself."""

    def wanted(self, unet_bytes: int, folder: Path | None) -> bool:
        """Whether a model that needs converting (whose UNet holds `unet_bytes` in fp32, loaded from `folder`)
        converts in the background: as `engine.convert_in_background` says, and only from a folder (the process
        loads the model again: a single-file checkpoint converts in the worker)."""
        choice = self.overrides.background
        return folder is not None and (unet_bytes >= MIN_UNET_BYTES if choice is None else choice)

    def busy(self, root: Path) -> bool:
        """Whether a conversion into `root` runs now (one that ended is noted in `ended`)."""
        process = self.running.get(root)
        if process is None or process.poll() is None:
            return process is not None
        self.running.pop(root)
        self.ended.add(root)
        return False

    @staticmethod
    def fits(unet_bytes: int) -> bool:
        """Whether converting a model whose UNet holds `unet_bytes` in fp32 fits in a process of its own: its
        peak (memory.py's estimate of the step) in the room the machine, or the limit, leaves beside this worker."""
        return memory.fits(memory.step_peak("convert", unet_bytes), memory.budget().room(0))

    def start(self, spec: str, dtype: str, root: Path, width: int, height: int) -> None:
        """Start converting the model `spec` (as the runner loaded it, in `dtype`) into `root`, by making an
        image of this size (compiled for it, as the worker's requests are) in one step on the fast path."""
        overrides = replace(self.overrides, dtype=dtype, runtime="openvino", quality="fast", background=False)
        settings = WorkerSettings(
            cache_dir=str(self.cache_dir),
            default_model=spec,
            allow_pickle=self.allow_pickle,
            single_file_config=self.single_file_config,
            overrides={**asdict(overrides), "policy": overrides.policy.value if overrides.policy else None},
        )
        one = Request(prompt="a picture", model=spec, width=width, height=height, steps=1, quality="fast", seed=0)
        log = log_file(root)
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("wb") as out:
            command = [sys.executable, "-m", PROCESS, json.dumps(asdict(settings)), one.model_dump_json()]
            self.running[root] = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=out)


def spec_of(source: Any) -> str:
    """The spec that resolves to `source` again in another process (a preset's name, else its location)."""
    return source.name if source.name in PRESETS else source.location


def log_file(root: Path) -> Path:
    return root.parent / f"{root.name}.background.log"
