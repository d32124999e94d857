"""dreamtray: select text anywhere, press a key, get an image from a local diffusion engine.

Plugins import from `dreamtray.api` (the types) and `dreamtray.hookspecs` (the `hookimpl` marker); the most
used names are also here. The heavier ones load on first use, so `import dreamtray` stays cheap for the tray.
"""

from typing import Any

from dreamtray import api
from dreamtray.api import Action, GeneratedImage, MenuItem
from dreamtray.hookspecs import hookimpl

__all__ = ["Action", "GeneratedImage", "MenuItem", "Request", "RequestError", "Result", "hookimpl"]


def __getattr__(name: str) -> Any:
    if name not in ("Request", "RequestError", "Result"):
        raise AttributeError(f"module 'dreamtray' has no attribute {name!r}")
    return getattr(api, name)
