"""Driving the engine service the way the tray does (LocalEngine over HTTP), with a clock on every phase."""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from pathlib import Path

from dreamtray.engine.client import LocalEngine
from dreamtray.engine.server.worker import WorkerSettings
from dreamtray.request import Request, Result


def start_local_engine(root: Path, cache_dir: Path, *, idle_unload: float = 600.0, **settings) -> LocalEngine:
    """A LocalEngine with its own state folder and token under `root` (its service starts on first use)."""
    worker = WorkerSettings(cache_dir=str(cache_dir), idle_unload_seconds=idle_unload, **settings)
    return LocalEngine(worker, state_dir=root / "state", token_file=root / "token", exit_after_idle=idle_unload + 60)


@dataclass
class Timed:
    """One generate through the service: total wall time, the worker's own time, and when each phase ended."""

    total: float
    result: Result
    marks: dict[str, float] = field(default_factory=dict)
    """Seconds from the start: 'client' (health check done), 'submitted', first 'loading' / 'start' / 'step'
    events as they reached the client, 'done' (the done event), 'result' (images fetched and decoded)."""
    messages: list[str] = field(default_factory=list)
    """The progress events' messages (loading, converting, warnings), in order."""

    @property
    def worker_seconds(self) -> float:
        """Time the worker's Runner spent, as it reported it (load + generate + PNG encoding)."""
        return self.result.seconds


def timed_generate(engine: LocalEngine, request: Request) -> Timed:
    """Generate through the service, following its progress events like the tray does."""
    start = time.perf_counter()
    marks: dict[str, float] = {}
    client = engine.client()
    marks["client"] = time.perf_counter() - start
    job = client.submit(request)
    marks["submitted"] = time.perf_counter() - start
    messages = []
    for event in job.events():
        marks.setdefault(event["kind"], time.perf_counter() - start)
        if event.get("message"):
            messages.append(event["message"])
    result = job.result()
    total = time.perf_counter() - start
    marks["result"] = total
    return Timed(total, result, marks, messages)


def pixels(png: bytes) -> bytes:
    from PIL import Image

    return Image.open(io.BytesIO(png)).convert("RGB").tobytes()
