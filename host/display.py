"""Which display server this session really uses: Wayland or X11 (or neither).

A login can leave a stale `WAYLAND_DISPLAY` behind (a terminal that outlived a Wayland session, an X11
session started from one): the variable alone does not say that Wayland is in use. The answer follows
`XDG_SESSION_TYPE` when it names a display server whose variable is set, else a Wayland socket that
accepts a connection, else `DISPLAY`.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

DisplayServer = Literal["wayland", "x11"]


def display_server(environ: Mapping[str, str] | None = None) -> DisplayServer | None:
    """'wayland' or 'x11' for the session in use; None without a display (a console, a service, Windows)."""
    env = os.environ if environ is None else environ
    declared = env.get("XDG_SESSION_TYPE", "").lower()
    if declared == "wayland" and env.get("WAYLAND_DISPLAY"):
        return "wayland"
    if declared == "x11" and env.get("DISPLAY"):
        return "x11"
    if env.get("WAYLAND_DISPLAY") and (wayland_socket_alive(env) or not env.get("DISPLAY")):
        return "wayland"
    if env.get("DISPLAY"):
        return "x11"
    return None


def wayland_socket(environ: Mapping[str, str]) -> Path | None:
    """The socket `WAYLAND_DISPLAY` names (absolute, or in `XDG_RUNTIME_DIR`)."""
    name = environ.get("WAYLAND_DISPLAY", "")
    if not name:
        return None
    if os.path.isabs(name):
        return Path(name)
    runtime = environ.get("XDG_RUNTIME_DIR")
    return Path(runtime, name) if runtime else None


def wayland_socket_alive(environ: Mapping[str, str], timeout: float = 0.5) -> bool:
    """Whether a compositor accepts connections on the socket `WAYLAND_DISPLAY` names."""
    path = wayland_socket(environ)
    if path is None or not path.is_socket():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(timeout)
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True
