"""The last prompt the tray used, kept in the state folder so that 'again' works after a restart."""

from __future__ import annotations

import logging

from dreamtray import paths

log = logging.getLogger("dreamtray.tray")
LAST_PROMPT_FILE = "last-prompt.txt"


def save_last_prompt(prompt: str) -> None:
    try:
        path = paths.state_dir() / LAST_PROMPT_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(prompt, encoding="utf-8")
    except OSError:
        log.warning("could not remember the last prompt", exc_info=True)


def load_last_prompt() -> str | None:
    try:
        return (paths.state_dir() / LAST_PROMPT_FILE).read_text(encoding="utf-8").strip() or None
    except (OSError, UnicodeDecodeError):
        return None
