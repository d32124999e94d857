"""The public plugin interface of dreamtray.

A plugin is a module (or object) with functions marked `@dreamtray.hookimpl`, named like the specs below and
taking any subset of their arguments. It is found through the `dreamtray` entry-point group. First-party
plugins use nothing but this interface and the types in `dreamtray.api`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import click
    from PIL.Image import Image

    from dreamtray.api import Action, EngineFactory, MenuItem, SubjectMethod, TrayHost
    from dreamtray.request import Request
    from dreamtray.styles import Style

hookspec = pluggy.HookspecMarker("dreamtray")
hookimpl = pluggy.HookimplMarker("dreamtray")


@hookspec
def register_actions(register: Callable[[Action], None]) -> None:
    """Register what can be done with a finished image (put it on the clipboard, make it the wallpaper...)."""


@hookspec
def register_styles(register: Callable[[Style], None]) -> None:
    """Register styles: data (a prompt template, negative prompt, settings), never code."""


@hookspec
def register_engines(register: Callable[[str, EngineFactory], None]) -> None:
    """Register engine back ends by name; `factory(settings)` returns an object with the Engine interface."""


@hookspec
def register_subject_methods(register: Callable[[SubjectMethod], None]) -> None:
    """Register ways to keep a subject across the images of a series, beside dreamtray's own three."""


@hookspec
def prepare_request(request: Request) -> Request | None:
    """Adjust a request before it is generated: return a changed copy, or None to leave it alone.

    Implementations run one after another, each seeing the previous one's result.
    """


@hookspec
def image_generated(image: Image, request: Request, path: Path | None) -> None:
    """Hear about an image once it is safely saved in the gallery at `path` (None for an image that
    `dreamtray serve` handed to its client without keeping it, as its `--gallery` setting says)."""


@hookspec
def tray_menu_items(host: TrayHost) -> list[MenuItem] | None:
    """Items to add to the tray menu; `host` offers `generate(prompt, action)` and the current state."""


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add subcommands to the `dreamtray` command line (a click group)."""
