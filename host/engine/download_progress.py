"""A model download in words, for every front end: byte counts as people read them, and one progress line.

The engine sends `{"kind": "download", "stage": "start" | "progress" | "done", "done": bytes, "total": bytes,
"speed": bytes per second, ...}` events (start and done carry a `message` too); the tray's tooltip and menu
show `progress_line(event)`.
"""

from __future__ import annotations

from typing import Any


def human(count: float) -> str:
    """A byte count the way people read it: 950 bytes, 3.2 MB, 2.1 GB."""
    if count < 1000:
        return f"{int(count)} bytes"
    for unit in ("kB", "MB", "GB"):
        count /= 1000
        if count < 1000 or unit == "GB":
            break
    return f"{count:.1f} {unit}"


def percent(event: dict[str, Any]) -> int | None:
    """How far a download event is, in whole percent (None when the size is unknown)."""
    total = event.get("total") or 0
    return min(100, int(100 * event.get("done", 0) / total)) if total else None


def progress_line(event: dict[str, Any], model: str = "") -> str:
    """'downloading sd-turbo: 45% of 2.1 GB, 35.2 MB/s' (the speed once one was measured)."""
    share = percent(event)
    line = f"downloading {model or event.get('model') or 'the model'}"
    if share is not None:
        line += f": {share}% of {human(event['total'])}"
    if event.get("speed"):
        line += f", {human(event['speed'])}/s"
    return line
