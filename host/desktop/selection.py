"""Read the text the user has selected in any application, cleaned and bounded, ready to be a prompt.

X11 reads the PRIMARY selection (over this process's own X connection, else with xclip or xsel), Wayland
`wl-paste --primary`; elsewhere a synthetic copy (ctrl+c, or cmd+c on macOS) reads the clipboard, saving its
text or image first and putting it back after, as Espanso does. An empty or non-text selection raises
`NothingSelected`, which the caller turns into a notification and no job.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import unicodedata
from dataclasses import dataclass
from typing import Literal

from dreamtray.display import display_server

MAX_CHARS = 1000
"""Longest prompt taken from a selection; longer text is cut at a word boundary."""
MAX_READ_BYTES = 256 * 1024
"""At most this much of a huge selection is read at all."""
BINARY_SHARE = 0.3
"""A selection where more than this share of characters are undecodable or control characters is not text."""

Source = Literal["primary", "wayland-primary", "copy"]
KEEP_FORMAT_CHARS = {"\u200c", "\u200d"}  # zero-width (non-)joiners shape scripts and emoji


@dataclass(frozen=True)
class Selection:
    """Selected text, cleaned: `truncated` says whether it was cut to the length limit."""

    text: str
    truncated: bool
    source: Source


class SelectionError(RuntimeError):
    """The selection could not be read; the message says why and what to install or do."""


class NothingSelected(SelectionError):
    """There is no usable text selected: no job should start; tell the user."""


def read_selection(limit: int = MAX_CHARS, source: Source | None = None) -> Selection:
    """The selected text, cleaned and at most `limit` characters; `source` overrides the platform's choice."""
    source = source or default_source()
    if source == "primary":
        raw = _read_x11_primary()
    elif source == "wayland-primary":
        raw = _read_wayland_primary()
    else:
        raw = _copy_selection().encode("utf-8", "surrogatepass")
    text, truncated = clean_text(raw, limit)
    return Selection(text=text, truncated=truncated, source=source)


def default_source() -> Source:
    """The way to read the selection on the display server actually in use (a stale WAYLAND_DISPLAY on X11
    still reads X11's PRIMARY)."""
    if sys.platform.startswith(("linux", "freebsd", "openbsd", "netbsd")):
        server = display_server()
        if server == "wayland":
            return "wayland-primary"
        if server == "x11":
            return "primary"
    return "copy"


def clean_text(raw: bytes | str, limit: int = MAX_CHARS) -> tuple[str, bool]:
    """Text fit for a prompt: control characters and undecodable bytes dropped, whitespace collapsed,
    cut at a word boundary to `limit` characters. Returns (text, truncated).

    Raises NothingSelected when nothing is left or the input looks like binary data.
    """
    if isinstance(raw, bytes):
        if b"\x00" in raw:
            raise NothingSelected("The selection is not text (it holds binary data): select some words instead.")
        raw = raw.decode("utf-8", errors="replace")
    kept, dropped = [], 0
    for char in raw:
        if char.isspace():
            kept.append(" ")
        elif char == "\ufffd" or (unicodedata.category(char)[0] == "C" and char not in KEEP_FORMAT_CHARS):
            dropped += 1
        else:
            kept.append(char)
    if raw and dropped / len(raw) > BINARY_SHARE:
        raise NothingSelected("The selection is not text (it holds binary data): select some words instead.")
    text = " ".join("".join(kept).split())
    if not text:
        raise NothingSelected("Nothing is selected: select some text, then try again.")
    if len(text) <= limit:
        return text, False
    cut = text[: limit + 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit * 0.8 else cut[:limit]).rstrip(), True


def _read_x11_primary() -> bytes:
    from dreamtray.desktop.x_selection import XSelectionError, read_x_selection

    try:
        return read_x_selection("PRIMARY", MAX_READ_BYTES)
    except XSelectionError:
        pass  # python-xlib cannot: the tools may
    try:
        return _read_command(["xclip", "-o", "-selection", "primary"])
    except FileNotFoundError:
        pass
    try:
        return _read_command(["xsel", "--primary", "--output"])
    except FileNotFoundError:
        raise SelectionError("Reading the selection needs xclip or xsel: install one of them.") from None


def _read_wayland_primary() -> bytes:
    try:
        return _read_command(["wl-paste", "--primary", "--no-newline", "--type", "text"])
    except FileNotFoundError:
        raise SelectionError("Reading the selection needs wl-paste: install wl-clipboard.") from None


def _read_command(args: list[str], timeout: float = 2.0) -> bytes:
    """Up to MAX_READ_BYTES of a command's output (empty when nothing owns the selection)."""
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        return _read_at_most(proc, MAX_READ_BYTES, timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()


def _read_at_most(proc: subprocess.Popen, limit: int, timeout: float) -> bytes:
    import selectors

    chunks, size, deadline = [], 0, time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while size < limit:
            left = deadline - time.monotonic()
            if left <= 0 or not selector.select(left):
                break
            chunk = os.read(proc.stdout.fileno(), min(65536, limit - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    return b"".join(chunks)


# -- synthetic copy, for desktops without a readable PRIMARY selection ------------------------------------


@dataclass(frozen=True)
class ClipboardSnapshot:
    """What the clipboard held: an image (RGBA bytes, width, height) or text, or nothing."""

    image: tuple[bytes, int, int] | None
    text: str | None


def save_clipboard() -> ClipboardSnapshot:
    import copykitten

    try:
        image = copykitten.paste_image()
    except copykitten.CopykittenError:
        image = None
    try:
        text = copykitten.paste()
    except copykitten.CopykittenError:
        text = None
    return ClipboardSnapshot(image=image, text=text)


def restore_clipboard(snapshot: ClipboardSnapshot) -> None:
    """Put back what `save_clipboard` saw: the image if there was one (it is what a paste would give), else text."""
    import copykitten

    if snapshot.image is not None:
        copykitten.copy_image(*snapshot.image)
    elif snapshot.text is not None:
        copykitten.copy(snapshot.text)
    else:
        copykitten.clear()


def _copy_selection(timeout: float = 1.0) -> str:
    """Press the platform's copy keys and read the clipboard, leaving the clipboard as it was."""
    import copykitten
    from pynput.keyboard import Controller, Key

    snapshot = save_clipboard()
    try:
        copykitten.clear()
        keyboard = Controller()
        for held in (Key.alt, Key.alt_gr, Key.shift, Key.ctrl, Key.cmd):  # the hotkey's modifiers may be down
            keyboard.release(held)
        with keyboard.pressed(Key.cmd if sys.platform == "darwin" else Key.ctrl):
            keyboard.tap("c")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                text = copykitten.paste()
            except copykitten.CopykittenError:
                text = ""
            if text:
                return text
            time.sleep(0.02)
        return ""
    finally:
        restore_clipboard(snapshot)
