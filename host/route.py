"""From a hotkey, a menu item or `dreamtray trigger` to a finished image and a notification.

The text is taken when the key is pressed (the selection may change while an earlier image is made); the job
then runs `generation.generate` and ends in a notification: the image as a thumbnail, or what went wrong in
words a user understands. Nothing here raises into the tray.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dreamtray.desktop.notify import Urgency, notify

if TYPE_CHECKING:
    from dreamtray.app import App
    from dreamtray.engine.client import Job
    from dreamtray.request import Request

log = logging.getLogger("dreamtray.flow")
REFINE_LAST = "refine-last"
"""The pseudo-action that refines the newest gallery image, the selected text saying what to change."""


@dataclass
class Task:
    """One image to make from `prompt`, then hand to `action`; `done` is set once it has ended either way."""

    action: str
    prompt: str
    origin: str = "hotkey"
    style: str | None = None
    """Style names instead of the config's ('' for none); None keeps the config's."""
    done: threading.Event = field(default_factory=threading.Event)
    report: Report | None = None
    marks: dict[str, float] = field(default_factory=lambda: {"asked": time.monotonic()})
    """Monotonic times of the task's steps (asked, started, submitted, generated, ended), for the log."""

    def mark(self, step: str) -> None:
        self.marks.setdefault(step, time.monotonic())

    def timings(self) -> str:
        """The time each step took, for the log: 'wait 0 ms, to engine 40 ms, engine 5200 ms, ...'."""
        names = {"started": "wait", "submitted": "to engine", "generated": "engine", "ended": "save, action"}
        steps = [(step, at) for step, at in self.marks.items()]
        parts = [
            f"{names.get(step, step)} {1000 * (at - before):.0f} ms"
            for (_, before), (step, at) in zip(steps, steps[1:], strict=False)
        ]
        return f"{1000 * (steps[-1][1] - steps[0][1]):.0f} ms in all: " + ", ".join(parts)


@dataclass(frozen=True)
class Report:
    """What the user is told when a task ends."""

    ok: bool
    title: str
    body: str
    image: Path | None = None
    images: tuple[Path, ...] = ()

    @property
    def urgency(self) -> Urgency:
        return "normal" if self.ok else "critical"

    def as_reply(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "message": f"{self.title}: {self.body}" if self.body else self.title,
            "images": [str(path) for path in self.images],
        }


def build_request(app: App, prompt: str, style: str | None = None) -> Request:
    """The request for a desktop job: the prompt with `style`, else the style chosen in the config."""
    from dreamtray.request import Request

    styles = app.config.style if style is None else style
    return Request.parse(prompt=prompt, styles=styles or ())


def run_task(
    app: App,
    task: Task,
    on_event: Callable[[dict[str, Any]], None] = lambda event: None,
    on_job: Callable[[Job], None] = lambda job: None,
) -> Report:
    """Make the task's image and act on it; the report tells how it went (never raises)."""
    from dreamtray import generation

    if task.action == REFINE_LAST:
        return refine_last(app, task.prompt, on_event, on_job)
    try:
        request = build_request(app, task.prompt, task.style)
        outcome = generation.generate(app, request, task.action, on_event=on_event, on_job=on_job)
    except Exception as exc:
        title, body = describe_error(exc)
        return Report(False, title, body)
    images = tuple(outcome.paths)
    body = " ".join(outcome.messages) or "Saved in the gallery."
    if outcome.failed_actions:
        return Report(False, "The image is made, but the next step failed", body, images[0] if images else None, images)
    return Report(True, "Your image is ready", body, images[0] if images else None, images)


def refine_last(
    app: App, change: str, on_event: Callable[[dict[str, Any]], None], on_job: Callable[[Job], None]
) -> Report:
    """Refine the newest gallery image as `change` says; the result lands beside it and goes to the clipboard."""
    from dreamtray.api import GeneratedImage
    from dreamtray.images.metadata import request_from_image
    from dreamtray.images.refine import refine_file

    def follow(job: Job) -> Any:
        on_job(job)
        for event in job.events():
            on_event(event)
        return job.result()

    newest = app.gallery.images()
    if not newest:
        return Report(False, "No image to refine yet", "Make an image first, then select what to change and refine it.")
    try:
        path = refine_file(app.engine, newest[0][0], change, wait=follow)
        action = app.actions().get(app.config.default_action)
        message = action.run(GeneratedImage(path, request_from_image(path))) if action else None
    except Exception as exc:
        title, body = describe_error(exc)
        return Report(False, title, body)
    return Report(True, "Your refined image is ready", message or f"Saved as {path.name}.", path, (path,))


def tell(report: Report) -> None:
    notify(report.title, report.body, report.image, report.urgency)


def describe_error(exc: BaseException) -> tuple[str, str]:
    """A title and a sentence for the user about `exc`; unexpected errors are logged with their trace."""
    from dreamtray.config import ConfigFileError, ConfigValueError
    from dreamtray.desktop.selection import NothingSelected, SelectionError
    from dreamtray.engine.client import EngineUnavailable, JobCancelled, JobFailed
    from dreamtray.generation import UnknownAction
    from dreamtray.images.gallery import GalleryError
    from dreamtray.request import RequestError
    from dreamtray.styles import StyleError

    known: list[tuple[type[BaseException], str]] = [
        (NothingSelected, "Nothing selected"),
        (SelectionError, "The selection could not be read"),
        (JobCancelled, "The image was cancelled"),
        (EngineUnavailable, "The image engine is not available"),
        (JobFailed, "The image could not be made"),
        (GalleryError, "The image could not be saved"),
        (StyleError, "The chosen style is a problem"),
        (RequestError, "The request is not valid"),
        (UnknownAction, "That action is not available"),
        (ConfigFileError, "The settings could not be changed"),
        (ConfigValueError, "The settings could not be changed"),
    ]
    for kind, title in known:
        if isinstance(exc, kind):
            return title, str(exc)
    log.error("unexpected failure", exc_info=exc)
    return "Something went wrong", f"{type(exc).__name__}: {exc}. The log has the details."
