"""Work for the tray's toolkit thread that a burst of requests shares.

The job thread asks for the icon to be redrawn at every progress event, and for the menu to be updated when
the queue changes (twice as a job starts). A `Merged` piece of work runs once for all the requests made while
it waits for its turn, with the state as it stands when it runs, and on the toolkit's thread (`post`), so the
thread that asks goes straight back to its job. With a `min_gap`, it also waits that long after its last run
(through `post_later`) unless the ask is urgent: the busy icon's previews are drawn a few times a second, not
at every event, for each drawing (the tray's, the X server's, the panel's) takes CPU from the image being made.
An icon without a loop of its own to post to gets a `WorkThread` as its toolkit thread.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

Post = Callable[[Callable[[], Any]], Any]
PostLater = Callable[[float, Callable[[], Any]], Any]
log = logging.getLogger(__name__)


def call_now(work: Callable[[], Any]) -> None:
    """The `post` of a toolkit without a loop of its own to post to: the work runs on the caller's thread."""
    work()


class WorkThread:
    """A thread of its own that runs the work posted to it in order, one piece at a time: the toolkit thread of
    pystray's icons that have no loop to post to (X11, Windows, macOS). pystray's X11 icon sends each change from
    the thread that makes it, and two threads changing it at once can leave its loop waiting forever."""

    def __init__(self, name: str) -> None:
        self._work: queue.SimpleQueue[Callable[[], Any]] = queue.SimpleQueue()
        threading.Thread(target=self._serve, name=name, daemon=True).start()

    def post(self, work: Callable[[], Any]) -> None:
        self._work.put(work)

    def post_later(self, seconds: float, work: Callable[[], Any]) -> None:
        timer = threading.Timer(seconds, self.post, (work,))
        timer.daemon = True
        timer.start()

    def _serve(self) -> None:
        while True:
            work = self._work.get()
            try:
                work()
            except Exception:  # the thread outlives any piece of work
                log.exception("the tray icon's work failed")


class Merged:
    """`work`, run through `post` when asked, once for all the asks made before it starts; no sooner than
    `min_gap` seconds after its last run where `post_later` can wait (and the ask is not urgent). An urgent run
    starts no gap: the first change after a new state is shown at once."""

    def __init__(self, work: Callable[[], None], post: Post = call_now, min_gap: float = 0.0) -> None:
        self.work = work
        self.post = post
        self.post_later: PostLater | None = None
        self.min_gap = min_gap
        self._lock = threading.Lock()
        self._waiting = False
        self._delayed = False
        self._last = float("-inf")

    def __call__(self, urgent: bool = False) -> None:
        """Ask for the work: it runs after this ask, unless a run asked for earlier has not started yet (an
        urgent ask does not wait for one that waits out the gap: it runs at once, and that one later too)."""
        with self._lock:
            if self._waiting and not (urgent and self._delayed):
                return
            delay = 0.0
            if not urgent and self.post_later is not None:
                delay = self._last + self.min_gap - time.monotonic()
            self._waiting, self._delayed = True, delay > 0
        if delay > 0:
            self.post_later(delay, self._run)  # type: ignore[misc]  # delay > 0 only with post_later
        else:
            self.post(self._run_urgent if urgent else self._run)

    def _run(self, starts_gap: bool = True) -> bool:
        with self._lock:
            self._waiting = self._delayed = False
            self._last = time.monotonic() if starts_gap else float("-inf")
        self.work()
        return False  # GLib.idle_add, GLib.timeout_add: do not run again

    def _run_urgent(self) -> bool:
        return self._run(starts_gap=False)
