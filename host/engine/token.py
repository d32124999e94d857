"""The engine service's bearer token (one per user, in a file only that user can read; checked for strength and
privacy) and which hosts are loopback. Torch- and web-framework-free: the client and the service share it.
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
import stat
from collections.abc import Callable
from pathlib import Path

MIN_TOKEN_CHARS = 32
MIN_DISTINCT_CHARS = 12
MAKE_TOKEN = 'python3 -c "import secrets; print(secrets.token_urlsafe(32))" > FILE'
log = logging.getLogger("dreamtray.serve")


class WeakToken(ValueError):
    """A token too short or too plain to guard an engine that other machines reach."""


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach `host` (an address or `localhost`)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def load_or_create_token(path: Path, warn: Callable[[str], None] = log.warning) -> str:
    """The token in `path`, created on first use in a file only the user can read.

    A file that others can read is made private again, and `warn` is told (its token may have been seen).
    A private token file is only read (its folder may be read-only). OSError when it cannot be read or made.
    """
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600, exist_ok=True)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        path.chmod(0o600)
        warn(
            f"{path} could be read by other users (mode {mode:04o}); it is now private (0600). Anyone who read "
            "it may use the engine: make a new token by emptying the file, then give it to the clients again."
        )
    token = path.read_text().strip()
    if not token:
        token = secrets.token_urlsafe(32)
        path.write_text(token + "\n")
    return token


def check_strength(token: str, path: Path) -> None:
    """Raise WeakToken unless `token` is long and varied enough to face a network."""
    if len(token) >= MIN_TOKEN_CHARS and len(set(token)) >= MIN_DISTINCT_CHARS:
        return
    raise WeakToken(
        f"The token in {path} is too weak to serve beyond this machine: use at least {MIN_TOKEN_CHARS} random "
        f"characters (it has {len(token)}, {len(set(token))} different). Make one with: "
        + MAKE_TOKEN.replace("FILE", str(path))
        + " (or empty the file and a new one is written)."
    )
