"""Remote engines: another dreamtray service, any OpenAI-compatible images API, an AUTOMATIC1111/Forge server.

Each is registered through `register_engines`; `factory(settings)` takes the table `[engine.backends.NAME]`
of the config and returns an object with the Engine interface (submit -> job, health, models, unload, close).
"""

from __future__ import annotations

from typing import Any

from dreamtray.hookspecs import hookimpl


def _remote(settings: dict[str, Any]):
    from .service import RemoteService

    return RemoteService.from_settings(settings)


def _openai(settings: dict[str, Any]):
    from .openai import OpenAIImages

    return OpenAIImages(settings)


def _a1111(settings: dict[str, Any]):
    from .a1111 import A1111

    return A1111(settings)


@hookimpl
def register_engines(register) -> None:
    register("remote", _remote)
    register("openai", _openai)
    register("a1111", _a1111)
