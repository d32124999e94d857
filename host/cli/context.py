"""How every command reaches the application: the Context on click's context object, with `@pass_app`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from dreamtray.api import CommandHost
from dreamtray.app import App

if TYPE_CHECKING:
    from dreamtray.api import GeneratedImage
    from dreamtray.config import LoadedConfig
    from dreamtray.engine.client import Engine
    from dreamtray.styles import StyleRegistry


@dataclass(frozen=True)
class StyleServices:
    """What the styles, series and refine commands take from the host; the CLI puts one in `ctx.obj`.

    Factories, so that a command that needs neither loads no plugins and reaches no engine.
    """

    registry: Callable[[], StyleRegistry]
    engine: Callable[[], Engine]
    series_dir: Path
    """Where new series folders are made."""


class Context(CommandHost):
    """Carried on click's context: the lazily built application; plugins' commands get it with `command_host()`."""

    def __init__(self, app: App | None = None) -> None:
        self.app = app or App()

    def loaded_config(self) -> LoadedConfig:
        """The config, with each problem in it reported on stderr (the command goes on with the defaults)."""
        loaded = self.app.loaded_config
        for problem in loaded.problems:
            click.echo(f"warning: {problem}", err=True)
        return loaded

    @property
    def style_services(self) -> StyleServices:
        """What the styles, series and refine commands take from the application."""
        app = self.app
        return StyleServices(
            registry=lambda: app.styles, engine=lambda: app.engine, series_dir=app.gallery.folder / "series"
        )

    def generate(self, prompt: str, action: str | None = None, **fields: Any) -> list[GeneratedImage]:
        from dreamtray import generation, route

        request = route.request_for(self.app, prompt=prompt, **fields)
        chosen = self.app.plugins.action(action) if action else None
        return generation.generate(self.app, request, chosen).images


pass_app = click.make_pass_decorator(Context, ensure=True)
