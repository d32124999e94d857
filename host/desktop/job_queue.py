"""The tray's queue of jobs: one runs, the others wait in order, each with a number the user can cancel it by.

Hotkeys, menu items and `dreamtray trigger` all go through `reserve` (a place is taken before the selection is
read, so a full queue drops a press at once) and then `fill` (the job itself). `entries` is what the menu and
`dreamtray trigger queue` show; `cancel` removes a waiting job, or asks the running one's engine job to stop.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Generic, TypeVar

log = logging.getLogger("dreamtray.jobs")
T = TypeVar("T")


class State(str, Enum):
    RESERVED = "reserved"
    """A place is taken; the job is still being made (its selection being read)."""
    WAITING = "waiting"
    RUNNING = "running"


class NoSuchJob(LookupError):
    """No job with that number is in the queue (it has ended, or never was)."""


@dataclass
class Entry(Generic[T]):
    """One place in the queue; `item` is None while the place is only reserved."""

    number: int
    state: State = State.RESERVED
    item: T | None = None
    percent: int | None = None
    cancelled: bool = False
    _stop: Callable[[], None] | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Snapshot(Generic[T]):
    """An entry as it was when asked for, safe to read on any thread."""

    number: int
    state: State
    item: T
    percent: int | None
    cancelled: bool


class JobQueue(Generic[T]):
    """Runs `work(entry)` for each filled entry, in order, one at a time, on a thread of its own.

    `capacity` counts the running job and the waiting ones together. `on_change` is called (on whichever
    thread made the change) whenever a job is added, starts, ends, is cancelled or reports progress.
    """

    def __init__(
        self,
        work: Callable[[Entry[T]], None],
        capacity: int = 5,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        if capacity < 1:
            raise ValueError("a queue holds at least one job")
        self.work = work
        self.capacity = capacity
        self.on_change = on_change
        self._entries: list[Entry[T]] = []
        self._numbers = 0
        self._closed = False
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._serve, name="dreamtray-jobs", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Jobs running, waiting or being made."""
        with self._changed:
            return len(self._entries)

    def reserve(self) -> Entry[T] | None:
        """Take a place before the job is made; None when the queue is full (or closed)."""
        with self._changed:
            if self._closed or len(self._entries) >= self.capacity:
                return None
            self._numbers += 1
            entry: Entry[T] = Entry(self._numbers)
            self._entries.append(entry)
            return entry

    def release(self, entry: Entry[T]) -> None:
        """Give back a place that `reserve` took, when no job came of it."""
        with self._changed:
            if entry in self._entries:
                self._entries.remove(entry)
            self._changed.notify_all()

    def fill(self, entry: Entry[T], item: T) -> None:
        """Hand over the job for a reserved place; it runs when the jobs before it are done."""
        with self._changed:
            entry.item, entry.state = item, State.WAITING
            self._changed.notify_all()
        self._tell()

    def ahead_of(self, entry: Entry[T]) -> int:
        """How many jobs run or wait before `entry`."""
        with self._changed:
            return self._entries.index(entry) if entry in self._entries else 0

    def entries(self) -> list[Snapshot[T]]:
        """The running job and the waiting ones, in order (places still being made are left out)."""
        with self._changed:
            return [
                Snapshot(e.number, e.state, e.item, e.percent, e.cancelled) for e in self._entries if e.item is not None
            ]

    def progress(self, entry: Entry[T], percent: int) -> None:
        with self._changed:
            if entry.percent == percent:
                return
            entry.percent = percent
        self._tell()

    def attach(self, entry: Entry[T], stop: Callable[[], None]) -> None:
        """Say how to stop the running `entry` (its engine job's cancel); a cancel asked for earlier runs now."""
        with self._changed:
            entry._stop = stop
            stop_now = entry.cancelled
        if stop_now:
            _stop_quietly(stop)

    def cancel(self, number: int) -> State:
        """Cancel job `number`: a waiting one leaves the queue, a running one is asked to stop.

        Returns the state the job was in; raises NoSuchJob when no such job is queued."""
        with self._changed:
            entry = next((e for e in self._entries if e.number == number and e.item is not None), None)
            if entry is None:
                raise NoSuchJob(f"No job #{number} is running or waiting.")
            state = entry.state
            entry.cancelled = True
            if state is State.WAITING:
                self._entries.remove(entry)
            stop = entry._stop
            self._changed.notify_all()
        if stop is not None:
            _stop_quietly(stop)
        self._tell()
        return state

    def close(self, timeout: float = 5.0) -> list[Entry[T]]:
        """Turn new jobs away, stop after the running one, and return the waiting ones (never started)."""
        with self._changed:
            self._closed = True
            left = [e for e in self._entries if e.state is not State.RUNNING]
            for entry in left:
                self._entries.remove(entry)
            self._changed.notify_all()
        self._thread.join(timeout)
        return left

    def _next(self) -> Entry[T] | None:
        with self._changed:
            while True:
                if self._closed:
                    return None
                entry = next((e for e in self._entries if e.state is State.WAITING), None)
                if entry is not None:
                    entry.state = State.RUNNING
                    return entry
                self._changed.wait()

    def _serve(self) -> None:
        while (entry := self._next()) is not None:
            self._tell()
            try:
                self.work(entry)
            except Exception:  # work reports its own failures; this only keeps the queue alive
                log.exception("a tray job failed")
            finally:
                with self._changed:
                    if entry in self._entries:
                        self._entries.remove(entry)
                    self._changed.notify_all()
                self._tell()

    def _tell(self) -> None:
        try:
            self.on_change()
        except Exception:
            log.exception("could not show the queue's change")


def _stop_quietly(stop: Callable[[], None]) -> None:
    try:
        stop()
    except Exception:
        log.warning("could not stop the running job", exc_info=True)
