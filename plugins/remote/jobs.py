"""A job for engines whose API answers one blocking call: the call runs on a thread, events are recorded."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

from dreamtray.api import EngineError, JobCancelled, JobFailed, JobRecord, Request, Result

Emit = Callable[[dict[str, Any]], None]
Work = Callable[[Emit, Callable[[], bool]], Result]


class ThreadJob:
    """Runs `work(emit, cancelled)` on a thread; `on_cancel` tells the remote side to stop."""

    def __init__(self, request: Request, work: Work, on_cancel: Callable[[], None] = lambda: None):
        self.record = JobRecord(request)
        self.id = self.record.id
        self._result: Result | None = None
        self._error: EngineError | None = None
        self._on_cancel = on_cancel
        self.record.status = "running"
        threading.Thread(target=self._run, args=(work,), name=f"dreamtray-remote-{self.id}", daemon=True).start()

    def _run(self, work: Work) -> None:
        try:
            result = work(self.record.add_event, lambda: self.record.status == "cancelled")
        except EngineError as exc:
            self._error = exc
            self.record.finish("failed", error=str(exc))
        except Exception as exc:  # a bug or an unexpected answer: reported, never raised on the thread
            self._error = JobFailed(f"{type(exc).__name__}: {exc}")
            self.record.finish("failed", error=str(self._error))
        else:
            self._result = result
            self.record.finish("done")

    def events(self) -> Iterator[dict[str, Any]]:
        return self.record.follow()

    def result(self) -> Result:
        for _ in self.events():
            pass
        if self.record.status == "cancelled":
            raise JobCancelled(self.record.error or "Cancelled.")
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def cancel(self) -> None:
        if self.record.finished:
            return
        self.record.finish("cancelled", error="Cancelled; anything the engine still sends is discarded.")
        self._on_cancel()
