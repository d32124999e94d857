"""Text from images, styles and plugins made safe to print: control characters and escape sequences are shown
as visible escapes (`\\x1b`, `\\u202e`), never sent raw to the terminal, where they could retitle it, move the
cursor, hide text or reorder it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import click

_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
"""C0 controls but tab and line feed, DEL, C1 controls (8-bit CSI and OSC), and the bidirectional marks."""
_UNSAFE_IN_JSON = re.compile(r"[\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
"""What JSON leaves raw (it escapes C0 itself): DEL, C1 controls and the bidirectional marks."""


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str, *, one_line: bool = False) -> str:
    """`text` with every unsafe character escaped; `one_line` also escapes line feeds and tabs."""
    text = _UNSAFE.sub(_escape, text)
    return text.replace("\n", "\\n").replace("\t", "\\t") if one_line else text


def printable_json(text: str) -> str:
    """JSON text (made with ensure_ascii=False) with the characters JSON leaves raw written as \\u escapes."""
    return _UNSAFE_IN_JSON.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def echo(text: object = "", *, err: bool = False, nl: bool = True) -> None:
    """`click.echo` for text that may hold what a file, a prompt, a plugin or the hub wrote: printable first."""
    click.echo(printable(str(text)), err=err, nl=nl)


@contextmanager
def printable_errors() -> Iterator[None]:
    """Error messages raised inside (click's own, and ours that quote files, prompts or plugins) print escaped."""
    try:
        yield
    except click.ClickException as exc:
        exc.message = printable(exc.message)
        raise
