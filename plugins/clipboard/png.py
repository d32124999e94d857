"""Put PNG bytes on the system clipboard so that they outlive this process.

X11: xclip serves the bytes as image/png from its own background process (copykitten's detached keeper when
xclip is missing). Wayland: wl-copy does the same. Windows and macOS: copykitten (the OS keeps the data).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dreamtray.api import display_server


class ClipboardError(RuntimeError):
    """The image could not be put on the clipboard; the message says why and what to install."""


def copy_png(path: Path) -> None:
    """Offer the PNG file's exact bytes on the clipboard as image/png (pixels only where no MIME types exist),
    with the tools of the display server in use (a stale WAYLAND_DISPLAY on X11 still copies through X11)."""
    if sys.platform.startswith(("win", "darwin")):
        _copy_pixels(path, detach=False)
    elif (server := display_server()) == "wayland":
        _run_keeper(["wl-copy", "--type", "image/png"], path, "wl-copy (package wl-clipboard)")
    elif server == "x11":
        if shutil.which("xclip"):
            with _new_clipboard_owner():
                _run_keeper(["xclip", "-selection", "clipboard", "-t", "image/png", "-i"], path, "xclip")
        else:
            _copy_pixels(path, detach=True)
    else:
        raise ClipboardError("There is no desktop to copy to: neither DISPLAY nor WAYLAND_DISPLAY is set.")


def _run_keeper(args: list[str], path: Path, tool: str) -> None:
    """Run a tool that reads the image on stdin and forks a process that keeps serving it."""
    try:
        with path.open("rb") as stdin:
            # The forked keeper inherits stdout and stderr: they must not be pipes we wait on.
            done = subprocess.run(args, stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10)
    except FileNotFoundError:
        raise ClipboardError(f"Copying images needs {tool}: please install it.") from None
    if done.returncode != 0:
        raise ClipboardError(f"{args[0]} could not take the clipboard (exit code {done.returncode}).")


@contextmanager
def _new_clipboard_owner(timeout: float = 2.0) -> Iterator[None]:
    """Wait after the body until another X client owns CLIPBOARD: xclip's keeper may not have claimed it yet
    when xclip returns, and a paste right away would still get the old content."""
    with _x_lock:
        conn, atom = _x_connection()
        before = conn.get_selection_owner(atom)
        yield
        deadline = time.monotonic() + timeout
        while conn.get_selection_owner(atom) in (before, 0) and time.monotonic() < deadline:
            time.sleep(0.001)


_x_lock = threading.Lock()
_x: tuple[str, Any, int] | None = None
"""The display's name, an open connection to it, and the CLIPBOARD atom: asking who owns CLIPBOARD takes a
round trip on it, where opening a connection first took milliseconds (python-xlib queries every extension)."""


def _x_connection() -> tuple[Any, int]:
    """The kept connection to the X server in use (opened again when DISPLAY changed or the connection broke),
    with the CLIPBOARD atom."""
    global _x
    from Xlib import display

    name = os.environ.get("DISPLAY", "")
    if _x is not None and _x[0] == name:
        try:
            _x[1].get_selection_owner(_x[2])  # one round trip: the connection still works
            return _x[1], _x[2]
        except Exception:
            _close_quietly(_x[1])
    _x = None
    conn = display.Display()
    _x = (name, conn, conn.intern_atom("CLIPBOARD"))
    return _x[1], _x[2]


def _close_quietly(conn: Any) -> None:
    try:
        conn.close()
    except Exception:
        pass


def _copy_pixels(path: Path, detach: bool) -> None:
    import copykitten
    from PIL import Image

    with Image.open(path) as image:
        rgba = image.convert("RGBA")
    try:
        copykitten.copy_image(rgba.tobytes(), rgba.width, rgba.height, detach=detach)
    except copykitten.CopykittenError as exc:
        raise ClipboardError(f"The clipboard refused the image: {exc}") from None
