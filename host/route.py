"""The one route from a trigger to an image.

A trigger (a hotkey, a menu item, `dreamtray trigger`, the command line) names an action and brings a prompt.
Here it becomes a Request, with the config's default style applied once; its action is looked up once, in the
plugin host's cache, when the task is made; the task then runs through `generation.generate` (or
`generation.refine`), and what happened comes back as a Report worded for the user. Front ends only schedule
tasks and show reports; nothing here raises into them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dreamtray.api import Action
    from dreamtray.app import App
    from dreamtray.engine.client import Job
    from dreamtray.request import Request, Subject

log = logging.getLogger("dreamtray.route")
REFINE_LAST = "refine-last"
"""The task that refines the newest gallery image, the prompt saying what to change (no action needed)."""
REFINE_LAST_LABEL = "Refine last image with selection"


@dataclass
class Task:
    """One image to make from `prompt`, then hand to `chosen`; `done` is set once it has ended either way."""

    action: str
    prompt: str
    origin: str = "hotkey"
    chosen: Action | None = None
    """The action looked up when the task was made (None for REFINE_LAST)."""
    style: str | None = None
    """Style names instead of the config's ('' for none); None keeps the config's."""
    seed: int | None = None
    """The seed to make the image with (the prompt box's live preview's); None for a fresh one."""
    expanded_from: str | None = None
    """The user's own words when `prompt` is their prompt expansion (kept apart in the metadata)."""
    subject: Subject | None = None
    """Keep the subject of a reference (the prompt box's "Same subject"); None for a plain image."""
    done: threading.Event = field(default_factory=threading.Event)
    report: Report | None = None
    marks: dict[str, float] = field(default_factory=lambda: {"asked": time.monotonic()})
    """Monotonic times of the task's steps (asked, started, submitted, generated, fetched, saved, acted, ended),
    each the first time it is reached, for the log."""
    compute: float | None = None
    """The engine's own seconds for the image (its Result.seconds), once made."""

    def mark(self, step: str) -> None:
        self.marks.setdefault(step, time.monotonic())

    def timings(self) -> str:
        """The time each step took, for the log: 'wait 0 ms, to engine 4 ms, engine 5200 ms (compute 5150 ms),
        result 3 ms, save 2 ms, action 9 ms, after 12 ms' (compute: the engine's own time; after: what follows the
        action, such as handing the image to the hooks)."""
        names = {
            "started": "wait",
            "submitted": "to engine",
            "generated": "engine",
            "fetched": "result",
            "saved": "save",
            "acted": "action",
            "ended": "after",
        }
        steps = list(self.marks.items())
        parts = [
            f"{names.get(step, step)} {1000 * (at - before):.0f} ms"
            + (f" (compute {1000 * self.compute:.0f} ms)" if step == "generated" and self.compute is not None else "")
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

    def as_reply(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "message": f"{self.title}: {self.body}" if self.body else self.title,
            "images": [str(path) for path in self.images],
        }


def request_for(app: App, **fields: Any) -> Request:
    """The request for `fields`, with the config's default style when the trigger names none."""
    from dreamtray.request import Request

    if "styles" not in fields and app.config.style:
        fields["styles"] = app.config.style
    return Request.parse(**fields)


def chosen_action(app: App, action: str) -> Action | None:
    """The registered action called `action`, looked up once per trigger (UnknownAction when no plugin offers
    it); None for REFINE_LAST, which needs none."""
    return None if action == REFINE_LAST else app.plugins.action(action)


def menu_entries(app: App) -> list[tuple[str, str]]:
    """(label, action) for each thing the menu can do with the selection: the config's default action first,
    then the other registered actions, then refine."""
    actions = sorted(app.plugins.actions().values(), key=lambda action: action.name != app.default_action)
    return [*((f"From selection: {action.label}", action.name) for action in actions), (REFINE_LAST_LABEL, REFINE_LAST)]


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
        fields: dict[str, Any] = {} if task.style is None else {"styles": task.style or ()}
        if task.seed is not None:
            fields["seed"] = task.seed
        if task.expanded_from is not None:
            fields["expanded_from"] = task.expanded_from
        if task.subject is not None:
            fields["subject"] = task.subject
        request = request_for(app, prompt=task.prompt, preview_every=app.config.preview_every, **fields)
        outcome = generation.generate(app, request, task.chosen, on_event=on_event, on_job=on_job, mark=task.mark)
    except Exception as exc:
        title, body = describe_error(exc)
        return Report(False, title, body)
    task.compute = outcome.result.seconds
    images = tuple(outcome.paths)
    body = " ".join(outcome.messages) or "Saved in the gallery."
    if outcome.failed_actions:
        return Report(False, "The image is made, but the next step failed", body, images[0] if images else None, images)
    return Report(True, "Your image is ready", body, images[0] if images else None, images)


def refine_last(
    app: App, change: str, on_event: Callable[[dict[str, Any]], None], on_job: Callable[[Job], None]
) -> Report:
    """Refine the newest gallery image as `change` says, along the one route (`generation.refine`); the result
    lands beside it and goes to the default action."""
    from dreamtray import generation

    newest = app.gallery.images()
    if not newest:
        return Report(False, "No image to refine yet", "Make an image first, then select what to change and refine it.")
    try:
        action = app.plugins.actions().get(app.default_action)
        outcome = generation.refine(app, newest[0][0], change, chosen=action, on_event=on_event, on_job=on_job)
    except Exception as exc:
        title, body = describe_error(exc)
        return Report(False, title, body)
    [path] = outcome.paths
    body = " ".join(outcome.messages) or f"Saved as {path.name}."
    if outcome.failed_actions:
        return Report(False, "The image is made, but the next step failed", body, path, (path,))
    return Report(True, "Your refined image is ready", body, path, (path,))


def describe_error(exc: BaseException) -> tuple[str, str]:
    """A title and a sentence for the user about `exc`; unexpected errors are logged with their trace."""
    from dreamtray.config import ConfigFileError, ConfigValueError
    from dreamtray.engine.client import EngineUnavailable, JobCancelled, JobFailed
    from dreamtray.images.gallery import GalleryError
    from dreamtray.plugins import UnknownAction
    from dreamtray.request import RequestError
    from dreamtray.styles import StyleError

    known: list[tuple[type[BaseException], str]] = [
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
