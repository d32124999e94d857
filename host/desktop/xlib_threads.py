"""A guard for python-xlib's I/O shared by threads, which pystray's X11 icon relies on.

In `Display.send_and_recv` (python-xlib 0.33), a thread that sends while another one receives returns as soon as
there is data to read, and clears its "sending" mark without waking the threads that wait for it to finish. A
thread that asked for a reply meanwhile (pystray's icon loop, docking the icon) then sleeps forever: the icon and
every thread that updates it hang. `install()` wraps send_and_recv so that each return wakes the threads that
wait when no thread sends or receives any more. python-xlib's callers loop until they have what they wait for, so
a waiter woken early only asks again.
"""

from __future__ import annotations

import functools
from typing import Any


def install() -> bool:
    """Wrap python-xlib's send_and_recv (once); False where python-xlib is not installed."""
    try:
        from Xlib.protocol import display
    except ImportError:
        return False
    original = display.Display.send_and_recv
    if getattr(original, "wakes_stranded_waiters", False):
        return True

    @functools.wraps(original)
    def send_and_recv(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return original(self, *args, **kwargs)
        finally:
            wake_stranded_waiters(self)

    send_and_recv.wakes_stranded_waiters = True  # type: ignore[attr-defined]
    display.Display.send_and_recv = send_and_recv
    return True


def wake_stranded_waiters(connection: Any) -> None:
    """Wake the threads that wait on `connection` (an Xlib.protocol.display.Display) for a sender or receiver
    that is gone; nothing when one still sends or receives (it wakes them itself as it finishes)."""
    connection.send_recv_lock.acquire()
    try:
        if connection.send_active or connection.recv_active:
            return
        if connection.event_waiting:
            connection.event_waiting = 0
            connection.event_wait_lock.release()
        if connection.request_waiting:
            connection.request_waiting = 0
            connection.request_wait_lock.release()
    finally:
        connection.send_recv_lock.release()
