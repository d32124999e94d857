"""The engine service's bearer token: one per user, in a file only that user can read."""

from __future__ import annotations

import secrets
from pathlib import Path

from dreamtray.paths import private_file


def load_or_create_token(path: Path) -> str:
    """The per-user token, created on first use in a file only the user can read."""
    private_file(path)
    token = path.read_text().strip()
    if not token:
        token = secrets.token_urlsafe(32)
        path.write_text(token + "\n")
    return token
