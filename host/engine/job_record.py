"""The record of one job that an engine keeps: what happened so far, and a condition to wait for more.

The engine service keeps one per job, and so do engines whose API answers one blocking call (the `remote`
plugin's OpenAI and A1111 back ends).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the tray reads FINISHED without loading pydantic
    from dreamtray.request import Request

FINISHED = ("done", "failed", "cancelled")
"""The states, and the kinds of the last event, of a job that is over: the one list of them."""


@dataclass
class JobRecord:
    """A job as an engine records it: status, progress events, result or error; readers wait on `changed`."""

    request: Request
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    status: str = "queued"
    events: list[dict[str, Any]] = field(default_factory=list)
    result_json: str | None = None
    error: str | None = None
    created: float = field(default_factory=time.time)
    changed: threading.Condition = field(default_factory=threading.Condition, repr=False)

    def add_event(self, event: dict[str, Any]) -> None:
        with self.changed:
            self.events.append(event)
            self.changed.notify_all()

    def finish(self, status: str, *, result_json: str | None = None, error: str | None = None) -> None:
        with self.changed:
            if self.status in FINISHED:
                return
            self.status, self.result_json, self.error = status, result_json, error
            self.events.append({"kind": status, **({"message": error} if error else {})})
            self.changed.notify_all()

    def wait(self, seen: int, timeout: float) -> tuple[list[dict[str, Any]], bool]:
        """Events after the first `seen`, waiting up to `timeout` for some; and whether the job is over."""
        with self.changed:
            self.changed.wait_for(lambda: len(self.events) > seen or self.status in FINISHED, timeout)
            return self.events[seen:], self.status in FINISHED

    @property
    def finished(self) -> bool:
        """Whether the job is over (done, failed or cancelled)."""
        return self.status in FINISHED

    def follow(self, wait: float = 10.0) -> Iterator[dict[str, Any]]:
        """Every event of the job, as it comes, until the job is over (each wait for more is `wait` seconds)."""
        seen = 0
        while True:
            events, finished = self.wait(seen, wait)
            seen += len(events)
            yield from events
            if finished and not events:
                return

    def summary(self) -> dict[str, Any]:
        progress = next((e for e in reversed(self.events) if e.get("kind") == "step"), None)
        return {
            "id": self.id,
            "status": self.status,
            "error": self.error,
            "progress": progress,
            "created": self.created,
        }
