"""The last prompts the tray used, newest first, kept in a small JSON file in the state folder.

The prompt box offers them to pick from; the newest is what "New wallpaper from the last prompt" reuses.
A missing or damaged file is an empty history, never an error.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from dreamtray import paths
from dreamtray.atomic import write_atomically

log = logging.getLogger("dreamtray.history")
HISTORY_FILE = "prompt-history.json"
KEEP = 10


def history_path() -> Path:
    return paths.state_dir() / HISTORY_FILE


def load_history(path: Path | None = None) -> list[str]:
    """The remembered prompts, newest first."""
    try:
        data = json.loads((path or history_path()).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(data, list):
        return []
    return [text for text in data if isinstance(text, str) and text.strip()][:KEEP]


def remember(prompt: str, path: Path | None = None) -> list[str]:
    """Put `prompt` first (once), keep the newest KEEP, and return the history; a failed write is only logged."""
    prompt = prompt.strip()
    history = load_history(path)
    if not prompt:
        return history
    history = [prompt, *(text for text in history if text != prompt)][:KEEP]
    try:
        write_atomically(path or history_path(), json.dumps(history, ensure_ascii=False, indent=0), mode=0o600)
    except OSError:
        log.warning("could not remember the prompt", exc_info=True)
    return history
