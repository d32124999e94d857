"""dreamtray: select text anywhere, press a key, get an image from a local diffusion engine.

The names plugins use are here. The heavier ones (the pydantic request models, the generation flow) are
imported on first use, so that `import dreamtray` stays cheap for the tray's start-up.
"""

from importlib import import_module
from typing import Any

from dreamtray.api import Action, GeneratedImage, MenuItem
from dreamtray.hookspecs import hookimpl

_LAZY = {
    "Request": ("request", "Request"),
    "RequestError": ("request", "RequestError"),
    "Result": ("request", "Result"),
    "generate": ("generation", "generate_prompt"),
    "display_server": ("display", "display_server"),
    "read_config": ("config", "read_config"),
}

__all__ = [
    "Action",
    "GeneratedImage",
    "MenuItem",
    "Request",
    "RequestError",
    "Result",
    "display_server",
    "generate",
    "read_config",
    "hookimpl",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'dreamtray' has no attribute {name!r}")
    module, attribute = _LAZY[name]
    value = getattr(import_module(f"{__name__}.{module}"), attribute)
    globals()[name] = value
    return value
