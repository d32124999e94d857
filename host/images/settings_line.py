"""AUTOMATIC1111's settings line (`Steps: 4, Sampler: Euler, Seed: 42, ...`) read in linear time.

A1111 reads the line with one pattern, `re.findall(r'\\s*(\\w[\\w \\-/]+):\\s*("(?:\\\\.|[^\\\\"])+"|[^,]*)(?:,|$)')`,
which backtracks: each start position re-reads the rest of the line, so a crafted 50 kB line takes seconds and a
few megabytes never end. `settings_pairs` finds the very same pairs in one pass:

- a key is a run of key characters (word characters, blanks, `-`, `/`) from its first word character, at least
  two long and directly followed by `:` (the pattern cannot find a shorter key inside a run that fails);
- its value, after any blanks, is a quoted string (backslash escapes) followed by `,` or the end of the line, or
  else everything up to the next comma.

A quoted value ends at the first quote that no backslash escapes, wherever the scan starts, so one scan serves
every opening quote before the quote it found.
"""

from __future__ import annotations

import re

_KEY = re.compile(r"(?<![\w \-/])[ \-/]*+(\w[\w \-/]++):\s*+")
"""A key (from the first word character of a run of key characters to its end), `:` and blanks; one try a run."""
MAX_SETTINGS = 1000
"""Pairs read from one line at most (A1111 writes a few dozen); the rest of a longer line is left unread."""
_QUOTED = re.compile(r'"(?:[^\\"]++|\\.)*+"')


class _QuotedValues:
    """Where a quoted value opening at a position ends, remembering the last scan (openers come in order)."""

    def __init__(self, line: str) -> None:
        self.line = line
        self.valid_below = -1
        self.closing = -1

    def end(self, opening: int) -> int:
        """The position just after the closing quote of the value opening at `opening`, or -1 for none."""
        if opening >= self.valid_below:
            found = _QUOTED.match(self.line, opening)
            self.closing = found.end() - 1 if found else -1
            self.valid_below = self.closing if found else len(self.line) + 1
        if self.closing < 0:
            return -1
        return self.closing + 1 if self.closing > opening + 1 else -1  # "" is no quoted value


def settings_pairs(line: str) -> list[tuple[str, str]]:
    """The `(key, value)` pairs of one settings line, exactly as A1111's pattern finds them (values unstripped), at most
    MAX_SETTINGS of them."""
    quoted = _QuotedValues(line)
    pairs: list[tuple[str, str]] = []
    position = 0
    while len(pairs) < MAX_SETTINGS and (found := _KEY.search(line, position)):
        key, start = found[1], found.end()
        end = quoted.end(start) if line[start : start + 1] == '"' else -1
        if end < 0 or line[end : end + 1] not in (",", ""):
            end = line.find(",", start)
            end = len(line) if end < 0 else end
        pairs.append((key, line[start:end]))
        position = end + 1
    return pairs
