"""Work for the tray's toolkit thread that a burst of requests shares.

The job thread asks for the icon to be redrawn at every progress event, and for the menu to be updated when
the queue changes (twice as a job starts). A `Merged` piece of work runs once for all the requests made while
it waits for its turn, with the state as it stands when it runs, and on the toolkit's thread (`post`), so the
thread that asks goes straight back to its job.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


def call_now(work: Callable[[], Any]) -> None:
    """The `post` of a toolkit without a loop of its own to post to: the work runs on the caller's thread."""
    work()


class Merged:
    """`work`, run through `post` when asked, once for all the asks made before it starts."""

    def __init__(self, work: Callable[[], None], post: Callable[[Callable[[], Any]], Any] = call_now) -> None:
        self.work = work
        self.post = post
        self._lock = threading.Lock()
        self._waiting = False

    def __call__(self) -> None:
        """Ask for the work: it runs after this ask, unless a run asked for earlier has not started yet."""
        with self._lock:
            if self._waiting:
                return
            self._waiting = True
        self.post(self._run)

    def _run(self) -> bool:
        with self._lock:
            self._waiting = False
        self.work()
        return False  # GLib.idle_add: do not run again
