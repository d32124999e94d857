"""The prompt box's live preview: a small, fast image of the text being typed, made by the engine.

The box tells `typing()` at each change of the text (the job of a text now stale is cancelled at once) and
`ask()` once the text has rested for `DEBOUNCE_SECONDS`: the request goes through the one route's shaping
(plugins' `prepare_request`, the action's shape, the styles), is made `PREVIEW_SIDE` pixels at quality `fast`
with the box's one seed, and its image comes back to the box; it never enters the gallery. One thread talks to
the engine: at most one preview job runs (or is being cancelled) and one waits behind it. `close()` cancels
what is left; nothing keeps running after the box is gone.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dreamtray.request import MAX_SEED

if TYPE_CHECKING:
    from dreamtray.app import App
    from dreamtray.engine.client import Engine, Job
    from dreamtray.request import Request

log = logging.getLogger("dreamtray.desktop.live_preview")
DEBOUNCE_SECONDS = 0.3
"""How long the text must rest before a preview is asked for: longer than the gap between two keys of
ordinary typing (about 0.1 to 0.25 s), so that a word being typed asks for none (docs/desktop.md)."""
PREVIEW_SIDE = 256
"""The preview's longer side in pixels."""
_STALE, _CLOSE = "stale", "close"


@dataclass(frozen=True)
class Preview:
    """A preview made: the text it shows (as typed in the box), its seed, its PNG bytes and the engine's job."""

    prompt: str
    seed: int
    png: bytes
    job: str


@dataclass(frozen=True)
class Wish:
    """What the box shows when the text rests: the prompt, the style names ('' for none) and the action."""

    prompt: str
    style: str
    action: str


class LivePreview:
    """The previews of one opening of the prompt box, all with one seed (kept for the image Enter makes)."""

    def __init__(
        self,
        shape: Callable[[Wish, int], Request],
        engine: Engine,
        seed: int | None = None,
        on_jobs: Callable[[], None] = lambda: None,
    ) -> None:
        """`on_jobs` is called (on a thread of this object) when a preview job starts or ends: the tray's menu
        shows the one being made."""
        self.shape, self.engine, self._on_jobs = shape, engine, on_jobs
        self.seed = random.randint(0, MAX_SEED) if seed is None else seed
        self.jobs: list[dict[str, Any]] = []
        """Each preview job asked for: id, prompt, state (queued, cancelling, cancelled, done, failed, shown)."""
        self.shown: Preview | None = None
        self._commands: queue.SimpleQueue[Wish | str] = queue.SimpleQueue()
        self._current: tuple[Job, dict[str, Any]] | None = None
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._on_preview: Callable[[Preview], None] = lambda preview: None
        self._on_problem: Callable[[str], None] = lambda message: None
        self._thread: threading.Thread | None = None

    def watch(self, on_preview: Callable[[Preview], None], on_problem: Callable[[str], None]) -> None:
        """Start: `on_preview` gets each preview of the text as it stands, `on_problem` a sentence when one fails
        (both called on a thread of this object)."""
        self._on_preview, self._on_problem = on_preview, on_problem
        self._thread = threading.Thread(target=self._run, name="dreamtray-live-preview", daemon=True)
        self._thread.start()

    def typing(self) -> None:
        """The text changed: the job for the old text is stale."""
        self._commands.put(_STALE)

    def ask(self, wish: Wish) -> None:
        """The text rested: make its preview (a blank prompt makes none)."""
        self._commands.put(wish)

    def close(self) -> None:
        """The box closed: cancel what runs or waits; ask nothing more of the engine."""
        self._closed.set()
        self._commands.put(_CLOSE)

    def wait_closed(self, timeout: float) -> bool:
        """Whether the engine thread ended within `timeout` seconds of `close()`."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self._thread is None or not self._thread.is_alive()

    def state(self) -> dict[str, Any]:
        """For `dreamtray trigger status` and the queue: the seed, the jobs and the preview shown."""
        with self._lock:
            shown = self.shown
            return {
                "open": not self._closed.is_set(),
                "seed": self.seed,
                "jobs": [dict(job) for job in self.jobs],
                "shown": None if shown is None else {"prompt": shown.prompt, "seed": shown.seed, "job": shown.job},
            }

    def running(self) -> dict[str, Any] | None:
        """The preview job the engine is making or holds, if any."""
        with self._lock:
            return next((dict(job) for job in reversed(self.jobs) if job["state"] == "queued"), None)

    # -- the engine thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            command = self._commands.get()
            while not self._commands.empty():  # only the newest command counts; a close wins over all
                newer = self._commands.get()
                command = _CLOSE if command == _CLOSE else newer
            self._cancel_current()
            if command == _CLOSE:
                return
            if isinstance(command, Wish) and command.prompt.strip() and not self._closed.is_set():
                self._submit(command)

    def _submit(self, wish: Wish) -> None:
        try:
            request = self.shape(wish, self.seed)
            job = self.engine.submit(request)
        except Exception as exc:
            from dreamtray.route import describe_error

            title, body = describe_error(exc)
            self._on_problem(f"{title}: {body}")
            return
        record = {"id": job.id, "prompt": wish.prompt, "state": "queued"}
        with self._lock:
            self.jobs.append(record)
            self._current = (job, record)
        threading.Thread(target=self._follow, args=(job, record), name="dreamtray-preview-job", daemon=True).start()
        self._on_jobs()

    def _cancel_current(self) -> None:
        with self._lock:
            current, self._current = self._current, None
            if current is None or current[1]["state"] != "queued":
                return
            current[1]["state"] = "cancelling"
        try:
            current[0].cancel()
        except Exception as exc:  # it ended meanwhile, or the engine went: nothing of it is shown either way
            log.debug("cancelling preview job %s: %s", current[0].id, exc)

    def _follow(self, job: Job, record: dict[str, Any]) -> None:
        try:
            self._outcome(job, record)
        finally:
            self._on_jobs()

    def _outcome(self, job: Job, record: dict[str, Any]) -> None:
        from dreamtray.engine.client import JobCancelled

        try:
            result = job.result()
        except JobCancelled:
            self._end(record, "cancelled")
            return
        except Exception as exc:
            self._end(record, "failed")
            if record["state"] == "failed" and not self._closed.is_set():
                from dreamtray.route import describe_error

                title, body = describe_error(exc)
                self._on_problem(f"{title}: {body}")
            return
        preview = Preview(record["prompt"], result.seeds[0], result.images[0], job.id)
        with self._lock:
            current = self._current is not None and self._current[1] is record and not self._closed.is_set()
            record["state"] = "shown" if current else "done"
            if current:
                self.shown = preview
        if current:
            self._on_preview(preview)

    def _end(self, record: dict[str, Any], state: str) -> None:
        with self._lock:
            record["state"] = state
            if self._current is not None and self._current[1] is record:
                self._current = None


def preview_request(app: App, wish: Wish, seed: int) -> Request:
    """The request for `wish` as the full image's would be shaped (plugins, the action, the styles), then made
    small and fast: `PREVIEW_SIDE` pixels on its longer side at the shaped aspect, quality fast, one image."""
    from dreamtray import generation, route

    styles = {"styles": wish.style} if wish.style else {"styles": ()}
    request = route.request_for(app, prompt=wish.prompt, seed=seed, **styles)
    chosen = route.chosen_action(app, wish.action) if wish.action in app.plugins.actions() else None
    request = generation.prepare(app, request, chosen)
    width, height = preview_size(request)
    return request.model_copy(
        update={"width": width, "height": height, "aspect": None, "quality": "fast", "count": 1, "preview_every": 0}
    )


def preview_size(request: Request) -> tuple[int, int]:
    """`PREVIEW_SIDE` on the longer side, at the request's aspect (its width and height, or `aspect`)."""
    if request.width and request.height:
        aspect = request.width / request.height
    else:
        aspect = request.aspect or 1.0
    width, height = (PREVIEW_SIDE, PREVIEW_SIDE / aspect) if aspect >= 1 else (PREVIEW_SIDE * aspect, PREVIEW_SIDE)
    return max(64, round(width / 8) * 8), max(64, round(height / 8) * 8)


def live_off_reason(app: App) -> str:
    """Why the box shows no live preview ('' when it does): the config turns it off, or the engine charges for
    each image it makes."""
    if not app.config.live_preview:
        return "Live preview is off (`live_preview` in the config)."
    try:
        engine = app.engine
    except Exception as exc:
        return f"No live preview: the engine cannot be used ({exc})."
    if getattr(engine, "charges_per_image", False):
        return f"No live preview: the {app.config.engine.backend} engine charges for each image."
    return ""
