"""AUTOMATIC1111's prompt syntax, read the way A1111 reads it: attention weights, escapes and BREAK.

- `(text)` multiplies the weight of `text` by 1.1, `[text]` divides it by 1.1; brackets nest and multiply.
- `(text:1.3)` sets the multiplier to 1.3 (A1111's number pattern: digits, dots, an optional sign).
- `\\(` `\\)` `\\[` `\\]` `\\\\` are the literal characters; an unclosed bracket weights the rest of the prompt.
- `BREAK` (upper case, a word on its own) ends the current 75-token chunk: the text after it starts a new one.

Anything else (A1111's prompt editing `[a:b:0.5]`, alternation `[a|b]`) is read as text in its brackets, as
A1111's attention parser reads it. Pure Python, no torch: the client checks prompts with it before a job is
submitted, and the engine builds its weighted, chunked text embeddings from its result.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ROUND = 1.1
SQUARE = 1 / 1.1
MAX_DEPTH = 32
"""Brackets weigh only this deep (1.1^32 is 21 already): each piece of text is then multiplied at most this many
times, so a prompt of thousands of nested brackets takes linear time (A1111's own parser takes quadratic)."""

_TOKENS = re.compile(
    r"""
    \\\(|\\\)|\\\[|\\]|\\\\|\\|   # escapes (a lone backslash is dropped, as in A1111)
    \(|\[|
    :\s*([+-]?[.\d]+)\s*\)|       # `:1.3)` closes a round bracket with an explicit weight
    \)|]|
    [^\\()\[\]:]+|
    :
    """,
    re.X,
)
_BREAK = re.compile(r"\bBREAK\b")
r"""A1111 splits at `\s*\bBREAK\b\s*`, which re-reads a long run of blanks from each of its positions; the blanks
around each BREAK are stripped after the split instead, which gives the same parts in linear time."""


@dataclass(frozen=True)
class Fragment:
    """A run of text that shares one weight."""

    text: str
    weight: float = 1.0


Chunk = tuple[Fragment, ...]
"""The fragments between two BREAKs."""


def parse(prompt: str) -> list[Chunk]:
    """The prompt as BREAK-separated chunks of weighted fragments (neighbours with one weight merged)."""
    pieces: list[list] = []  # [text, weight] pairs; None text marks a BREAK
    round_open: list[int | None] = []
    square_open: list[int | None] = []

    weighing = 0  # open brackets that weigh (MAX_DEPTH at most)

    def open_bracket(stack: list[int | None]) -> None:
        nonlocal weighing
        stack.append(len(pieces) if weighing < MAX_DEPTH else None)
        weighing += stack[-1] is not None

    def multiply(start: int | None, factor: float) -> None:
        for piece in pieces[start:] if start is not None else ():
            piece[1] *= factor

    def close_bracket(stack: list[int | None], factor: float) -> None:
        nonlocal weighing
        start = stack.pop()
        weighing -= start is not None
        multiply(start, factor)

    for match in _TOKENS.finditer(prompt):
        text, weight = match[0], match[1]
        if text.startswith("\\"):
            pieces.append([text[1:], 1.0])
        elif text == "(":
            open_bracket(round_open)
        elif text == "[":
            open_bracket(square_open)
        elif weight is not None and round_open and _is_number(weight):
            close_bracket(round_open, float(weight))
        elif text == ")" and round_open:
            close_bracket(round_open, ROUND)
        elif text == "]" and square_open:
            close_bracket(square_open, SQUARE)
        else:
            parts = _BREAK.split(text)
            for index, part in enumerate(parts):
                if index:
                    pieces.append([None, 1.0])
                    part = part.lstrip()
                if index < len(parts) - 1:
                    part = part.rstrip()
                pieces.append([part, 1.0])
    for start in round_open:
        multiply(start, ROUND)
    for start in square_open:
        multiply(start, SQUARE)
    return _chunks(pieces)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _chunks(pieces: list[list]) -> list[Chunk]:
    chunks: list[Chunk] = []
    current: list[Fragment] = []
    for text, weight in pieces:
        if text is None:
            chunks.append(tuple(current))
            current = []
        elif not text:
            continue
        elif current and current[-1].weight == weight:
            current[-1] = Fragment(current[-1].text + text, weight)
        else:
            current.append(Fragment(text, weight))
    if current or not chunks:  # a trailing BREAK adds no empty chunk (as in A1111)
        chunks.append(tuple(current))
    return chunks


def plain_text(prompt: str) -> str:
    """The prompt's words without the syntax (brackets, weights, escapes; BREAK as a line break)."""
    return "\n".join("".join(fragment.text for fragment in chunk).strip() for chunk in parse(prompt)).strip()


def is_plain(chunks: list[Chunk]) -> bool:
    """Whether the parsed prompt is one chunk of text at weight 1: nothing a plain encoder would miss."""
    return len(chunks) == 1 and all(fragment.weight == 1.0 for fragment in chunks[0])


def check(prompt: str) -> str | None:
    """Why the prompt cannot be encoded (no words once the syntax is read), or None when it can."""
    if prompt.strip() and not plain_text(prompt):
        return "the prompt has no words once its A1111 syntax (brackets, weights, BREAK) is read"
    return None
