"""Read an X selection (PRIMARY: the selected text) in this process, over one X connection kept open.

Asking the owner directly takes a round trip or two; starting xclip for it took milliseconds more on the
hotkey's path, and opening a new connection each time would too (python-xlib queries every extension as it
connects). Text larger than the owner sends in one piece comes in INCR pieces, read here up to the caller's
limit. Any X failure raises XSelectionError, for the caller to fall back on xclip or xsel.
"""

from __future__ import annotations

import os
import select
import threading
import time
from typing import Any


class XSelectionError(RuntimeError):
    """The selection could not be read over python-xlib (no connection, a broken one, a protocol error)."""


_lock = threading.Lock()
_kept: _Reader | None = None


def read_x_selection(selection: str = "PRIMARY", limit: int = 256 * 1024, timeout: float = 2.0) -> bytes:
    """Up to `limit` bytes of `selection` as UTF-8 text (Latin-1 STRING where the owner offers no UTF-8), or
    b"" when nothing owns it, the owner offers no text, or it does not answer within `timeout` seconds."""
    global _kept
    with _lock:
        display = os.environ.get("DISPLAY", "")
        try:
            if _kept is None or _kept.display_name != display:
                if _kept is not None:
                    _kept.close()
                _kept = None
                _kept = _Reader(display)
            return _kept.read(selection, limit, timeout)
        except Exception as exc:  # python-xlib raises many kinds: drop the connection, let the caller fall back
            if _kept is not None:
                _kept.close()
            _kept = None
            raise XSelectionError(f"{type(exc).__name__}: {exc}") from exc


class _Reader:
    """A connection with a window of its own that selections are converted to."""

    def __init__(self, display_name: str) -> None:
        from Xlib import display

        self.display_name = display_name
        self.conn = display.Display(display_name or None)
        self.window = self._new_window()
        self.property = self.conn.intern_atom("DREAMTRAY_SELECTION")
        self.incr = self.conn.intern_atom("INCR")
        self.utf8 = self.conn.intern_atom("UTF8_STRING")

    def _new_window(self) -> Any:
        from Xlib import X

        return self.conn.screen().root.create_window(
            0, 0, 1, 1, 0, X.CopyFromParent, X.InputOutput, X.CopyFromParent, event_mask=X.PropertyChangeMask
        )

    def read(self, selection: str, limit: int, timeout: float) -> bytes:
        from Xlib import Xatom

        deadline = time.monotonic() + timeout
        atom = self.conn.intern_atom(selection)
        for target in (self.utf8, Xatom.STRING):
            data = self._convert(atom, target, limit, deadline)
            if data is not None:
                return data
        return b""

    def _convert(self, selection: int, target: int, limit: int, deadline: float) -> bytes | None:
        """The owner's answer for `target`; None when it refused it (or nothing owns the selection)."""
        from Xlib import X

        self._drain()
        self.window.delete_property(self.property)
        self.window.convert_selection(selection, target, self.property, X.CurrentTime)
        event = self._wait(lambda e: e.type == X.SelectionNotify and e.requestor.id == self.window.id, deadline)
        if event is None:
            return b""  # no answer in time: as if nothing were selected
        if event.property == X.NONE:
            return None
        reply = self.window.get_property(self.property, X.AnyPropertyType, 0, (limit + 3) // 4, True)
        if reply is None:
            return None
        if reply.property_type == self.incr:
            return self._pieces(limit, deadline)
        return _as_bytes(reply.value)[:limit]

    def _pieces(self, limit: int, deadline: float) -> bytes:
        """An INCR transfer: the owner writes piece after piece once the last one is deleted; an empty one ends it."""
        from Xlib import X

        chunks: list[bytes] = []
        size = 0
        while size < limit:

            def new_piece(event: Any) -> bool:
                return (
                    event.type == X.PropertyNotify
                    and event.window.id == self.window.id
                    and event.atom == self.property
                    and event.state == X.PropertyNewValue
                )

            if self._wait(new_piece, deadline) is None:
                break
            reply = self.window.get_property(self.property, X.AnyPropertyType, 0, (limit - size + 3) // 4, True)
            piece = _as_bytes(reply.value) if reply is not None else b""
            if not piece:
                return b"".join(chunks)[:limit]
            chunks.append(piece)
            size += len(piece)
        # Stopped before the end: the owner waits for this window to take the next piece. Going away, as xclip
        # would by exiting, ends the transfer for it.
        self.window.destroy()
        self.window = self._new_window()
        return b"".join(chunks)[:limit]

    def _wait(self, wanted: Any, deadline: float) -> Any:
        """The first event that `wanted` accepts, or None at the deadline."""
        self.conn.flush()
        while True:
            while self.conn.pending_events():
                event = self.conn.next_event()
                if wanted(event):
                    return event
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            select.select([self.conn], [], [], left)

    def _drain(self) -> None:
        """Forget events left from an earlier read that ran out of time."""
        self.conn.sync()
        while self.conn.pending_events():
            self.conn.next_event()

    def close(self) -> None:
        try:
            self.conn.close()
        except Exception:
            pass


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("latin-1", "replace")
    return bytes(value)
