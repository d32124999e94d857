"""Values that both sides of the engine door share: the worker's settings and the config's overrides.

The client builds them from the config; the service and its worker read them. Plain data, light to import.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

QUEUE_LENGTH = 5
"""The one default of how many images may be queued: the tray's queue (`queue_length`, the one being made
included) and the jobs an engine service lets wait (`--max-queue`, `serve`, Ray's ingress)."""
IDLE_UNLOAD_SECONDS = (0, 7 * 24 * 3600)
"""The range of `idle_unload_seconds` (0: never unload); a wait longer than a week would overflow the worker's
wait for the next job on some systems."""
STALL_SECONDS = (1, 3600)
"""The range of `stall_seconds`."""
COMPILED_STAMP = "used"
"""The file in each folder of an OpenVINO compiled copy (one per module and shape) whose time says when it was last
used: the engine prunes copies by it, `doctor` counts them by it."""


class Policy(str, Enum):
    """Where the model's weights live while it generates, from fastest to most frugal."""

    GPU = "gpu"
    MODEL_OFFLOAD = "model_offload"
    SEQUENTIAL_OFFLOAD = "sequential_offload"
    CPU = "cpu"


@dataclass(frozen=True)
class Overrides:
    """Choices from the config that win over the automatic decision; None keeps the automatic one."""

    device: str | None = None
    dtype: str | None = None
    policy: Policy | None = None
    vae_tiling: bool | None = None
    runtime: str | None = None
    """The back end of `quality = fast`: torch or openvino."""
    quality: str | None = None
    """The quality of requests that name none: fast, balanced or best."""
    int8: bool | None = None
    """False keeps `fast` on OpenVINO in bf16/f32 (no int8 UNet and TAESD decoder)."""
    background: bool | None = None
    """Whether a model with no OpenVINO files converts in a process of its own while its first images come from
    torch; None: a real-sized model does (background_conversion.py), a small one converts before its first image."""


@dataclass(frozen=True)
class WorkerSettings:
    """Everything the worker needs, as plain values that cross a process boundary."""

    cache_dir: str
    default_model: str = "auto"
    idle_unload_seconds: float = 300.0
    ready_worker: bool = True
    """After an unload, start a worker that imports what a job needs and waits holding no model, so that the
    next image skips those seconds (docs/fast-path.md: what it costs, what it saves)."""
    stall_seconds: float = 120.0
    """A job that sends no progress for this long is ended and its worker killed (more while it starts)."""
    allow_pickle: bool = False
    single_file_config: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, (low, high) in (("idle_unload_seconds", IDLE_UNLOAD_SECONDS), ("stall_seconds", STALL_SECONDS)):
            value = getattr(self, name)
            if not low <= value <= high:  # also refuses NaN
                raise ValueError(f"{name} = {value!r} is out of range: use a number from {low} to {high}")

    def to_overrides(self) -> Overrides:
        values = dict(self.overrides)
        if values.get("policy"):
            values["policy"] = Policy(values["policy"])
        return Overrides(**values)
