"""The tray's line of jobs: one runs, at most one waits behind it, and any further one is turned away.

A press of a hotkey while an image is being made should not start a pile of jobs: `offer` says at once
whether the new job starts, waits, or was dropped, so the user can be told.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from enum import Enum
from typing import Generic, TypeVar

log = logging.getLogger("dreamtray.jobs")
T = TypeVar("T")


class Placed(str, Enum):
    STARTED = "started"
    WAITING = "waiting"
    DROPPED = "dropped"


class JobLine(Generic[T]):
    """Runs `work(item)` for each accepted item, one at a time, on its own thread."""

    def __init__(self, work: Callable[[T], None], capacity: int = 2) -> None:
        self.work = work
        self.capacity = capacity
        self._lock = threading.Lock()
        self._pending = 0
        self._queue: queue.Queue[T | None] = queue.Queue()
        self._thread = threading.Thread(target=self._serve, name="dreamtray-jobs", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Jobs running or waiting."""
        return self._pending

    def reserve(self) -> Placed:
        """Take a place in the line before the job is made; DROPPED when the line is full."""
        with self._lock:
            if self._pending >= self.capacity:
                return Placed.DROPPED
            self._pending += 1
            return Placed.STARTED if self._pending == 1 else Placed.WAITING

    def cancel_reservation(self) -> None:
        """Give back a place that `reserve` took, when no job came of it."""
        with self._lock:
            self._pending -= 1

    def put(self, item: T) -> None:
        """Hand over the job for a place taken with `reserve`."""
        self._queue.put(item)

    def close(self, timeout: float = 5.0) -> None:
        """Stop after the running job (waiting ones are not started)."""
        with self._lock:
            self._pending = self.capacity  # turn everything away from now on
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._queue.put(None)
        self._thread.join(timeout)

    def _serve(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            try:
                self.work(item)
            except Exception:  # work reports its own failures; this only keeps the line alive
                log.exception("a tray job failed")
            finally:
                with self._lock:
                    self._pending = max(0, self._pending - 1)
