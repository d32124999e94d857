"""The model the engine holds: its pipeline, how it runs, and what was made for it on first use."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dreamtray.engine.server.hardware import Plan
from dreamtray.engine.server.models import ModelSource


@dataclass
class Loaded:
    source: ModelSource
    plan: Plan
    pipe: Any
    img2img: Any = None
    loras: tuple = ()
    native_size: int = 512
    default_scheduler: Any = None
    folder: Path | None = None
    """The diffusers folder the pipeline was loaded from (None for a single-file checkpoint)."""
    light: bool = False
    """The pipeline runs on OpenVINO modules read from the cache, with no torch weights loaded: it serves
    `quality = fast` requests that need nothing else (fast.py `serves_light`)."""
    extras: dict[str, Any] = field(default_factory=dict)
    """Made on first use and kept with the model: the TAESD decoder and the OpenVINO pipeline (fast.py), the
    embeddings of constant texts (embeddings.py)."""
