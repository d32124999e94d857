"""Scheduled wallpapers: a new one from a list of prompts every N hours, or once at login.

The generation itself is a callable handed in, `generate(prompt, action_name)`, so the schedule does not
depend on how (or where) images are made.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path

from dreamtray.api import write_atomically

from .history import wallpaper_dir

log = logging.getLogger(__name__)

Generate = Callable[[str, str], object]


class ScheduleError(ValueError):
    """The prompts file cannot be used; the message says why."""


def read_prompts(path: Path) -> list[str]:
    """One prompt a line; blank lines and lines starting with # are skipped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ScheduleError(f"Cannot read the prompts file {path}: {exc}") from None
    prompts = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not prompts:
        raise ScheduleError(f"The prompts file {path} has no prompts: write one prompt a line.")
    return prompts


class PromptCycle:
    """Hands out the prompts in order, round and round, remembering the place across runs (and logins)."""

    def __init__(self, prompts_file: Path, state_file: Path | None = None) -> None:
        self.prompts_file = prompts_file.resolve()
        self.state_file = state_file or wallpaper_dir() / "schedule.json"

    def next(self) -> str:
        prompts = read_prompts(self.prompts_file)
        try:
            places = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            places = {}
        index = places.get(str(self.prompts_file), 0) % len(prompts)
        places[str(self.prompts_file)] = index + 1
        write_atomically(self.state_file, json.dumps(places, indent=2).encode())
        return prompts[index]


def run_schedule(
    cycle: PromptCycle,
    generate: Generate,
    every_hours: float | None,
    stop: threading.Event | None = None,
    report: Callable[[str], None] = log.info,
) -> int:
    """Make a wallpaper now, then every `every_hours` until `stop` is set (once when None). Returns the count.

    A failed generation is reported and the schedule goes on.
    """
    stop = stop or threading.Event()
    made = 0
    while True:
        prompt = cycle.next()
        try:
            generate(prompt, "wallpaper")
            made += 1
            report(f"New wallpaper: {prompt}")
        except Exception as exc:  # one bad run must not end the schedule
            report(f"No wallpaper for {prompt!r}: {exc}")
        if every_hours is None or stop.wait(every_hours * 3600):
            return made
