"""Progress on the command line: the engine's events shown as messages and tqdm bars on stderr."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from dreamtray.cli.terminal import echo
from dreamtray.engine.job_record import FINISHED

if TYPE_CHECKING:
    from dreamtray.engine.client import Job
    from dreamtray.request import Result


def progress_printer(label: str = "") -> Callable[[dict[str, Any]], None]:
    """Progress bars on stderr, driven by the engine's events: bytes while downloading, then steps.

    A download says its size and destination first, shows bytes and speed (bytes fetched in an earlier,
    interrupted try count as done from the start, not as speed), and ends with a line of its own.
    `label` names the bar of steps (for commands that make several images one job at a time).
    """
    from tqdm import tqdm

    bars: dict[str, tqdm] = {}

    def advance(name: str, done: int, total: int, **style: Any) -> None:
        bar = bars.get(name)
        if bar is None:
            bar = bars[name] = tqdm(total=total, initial=done, file=sys.stderr, leave=False, **style)
        bar.update(done - bar.n)

    def on_event(event: dict[str, Any]) -> None:
        kind = event.get("kind")
        if kind == "download" and event.get("stage") == "done" and "download" in bars:
            bars.pop("download").close()
        if event.get("message") and kind in ("loading", "download", "warning"):
            echo(event["message"], err=True)
        if kind == "download" and event.get("stage") in ("start", "progress"):
            style = {"unit": "B", "unit_scale": True, "unit_divisor": 1000, "desc": "download"}
            advance("download", event["done"], event["total"], **style)
        elif kind == "step":
            advance("steps", event["step"], event["total"], unit="step", mininterval=0, desc=label or None)
        elif kind in FINISHED:
            for bar in bars.values():
                bar.close()

    return on_event


def follow(job: Job, label: str) -> Result:
    """Show the job's progress on stderr and return its result; engine problems become CLI errors."""
    from dreamtray.engine.client import EngineError

    show = progress_printer(label)
    try:
        for event in job.events():
            show(event)
        return job.result()
    except EngineError as exc:
        raise click.ClickException(str(exc)) from None
