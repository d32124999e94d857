"""The public plugin interface: everything a plugin may import, next to the hook markers in `dreamtray.hookspecs`.

Light to import: the value types defined here need nothing heavy, and the others (the pydantic request and
style models, the engine client) are imported on first use, so the tray's start-up stays fast.
First-party plugins import nothing from dreamtray but this module and `dreamtray.hookspecs.hookimpl`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from PIL.Image import Image

    from dreamtray.atomic import write_atomically
    from dreamtray.config import Config, plugin_settings, read_config, save_plugin_setting
    from dreamtray.display import display_server
    from dreamtray.engine.client import (
        Engine,
        EngineError,
        EngineFactory,
        EngineUnavailable,
        Job,
        JobCancelled,
        JobFailed,
        ServiceEngine,
    )
    from dreamtray.engine.job_record import JobRecord
    from dreamtray.request import Request, RequestError, Result
    from dreamtray.samplers import SamplerError, a1111_sampler
    from dreamtray.styles import Style, StyleError, load_package_packs


@dataclass(frozen=True)
class GeneratedImage:
    """An image that is already saved in the gallery, handed to actions."""

    path: Path | None
    """Where the gallery keeps it; None only for an image `dreamtray serve` was set not to keep (no action runs
    on those)."""
    request: Request
    """The request as generated, seed included."""
    make_another: Callable[[Request], GeneratedImage] | None = field(default=None, compare=False, repr=False)
    """For an action that needs more than one image (a wallpaper for each monitor): makes `request` (this
    image's request with, say, another seed and aspect) along the same route, as it is (no plugin, style or
    action shaping again), saves it in the gallery, announces it, and returns it. None outside a generation."""

    def open(self) -> Image:
        from PIL import Image

        return Image.open(self.path)

    def png_bytes(self) -> bytes:
        return self.path.read_bytes()


@dataclass(frozen=True)
class Action:
    """Something to do with a finished image, offered by the tray, hotkeys, `trigger` and `generate --action`.

    `run` returns a short sentence for the notification (or None for the default one).
    `shape_request`, when given, adjusts the request first, for example to the screen's aspect ratio.
    """

    name: str
    label: str
    run: Callable[[GeneratedImage], str | None]
    shape_request: Callable[[Request], Request] | None = None
    hotkey: str = ""
    """The key combination the action suggests (pynput syntax: "<ctrl>+<alt>+i"); the config's `[hotkeys]`
    table changes it or turns it off ('')."""
    preferred: bool = False
    """Used where no action is named (the menu's first entry, the prompt box, `host.generate`) while the config
    names no `default_action`."""


@dataclass(frozen=True)
class SubjectMethod:
    """A way to keep a subject across images (a face adapter, say), for `series --plugin-method NAME`.

    `keep(request, reference)` returns the request changed so its image keeps the subject of `reference` (the
    PNG bytes of the series' first image or of the user's picture; None while the first image itself is made).
    """

    name: str
    label: str
    keep: Callable[[Request, bytes | None], Request]


@dataclass(frozen=True)
class MenuItem:
    """A tray menu entry added by a plugin: `callback(host)` runs on a worker thread; or, with `items`, a submenu.

    An item with `checked` is one choice among its submenu's items (a radio item): `checked(host)` says whether
    it is the chosen one now, each time the menu is shown; after its callback the menu is drawn again."""

    label: str
    callback: Callable[[TrayHost], None] | None = None
    items: tuple[MenuItem, ...] = ()
    checked: Callable[[TrayHost], bool] | None = None


class TrayHost(Protocol):
    """What `tray_menu_items` and a MenuItem's callback receive: the running tray."""

    state: str
    """"idle", "busy" or "error"."""
    paused: bool
    """Whether the hotkeys are paused."""
    last_prompt: str | None

    def generate(
        self, prompt: str, action: str | None = None, origin: str = "plugin", wait: bool = False
    ) -> dict[str, Any]:
        """Queue an image of `prompt` for `action` (None: the default action); the reply says whether it started,
        waits or was dropped."""
        ...


class CommandHost(ABC):
    """What a plugin's command gets from `command_host()`: images made with the user's settings."""

    @abstractmethod
    def generate(self, prompt: str, action: str | None = None, **fields: Any) -> list[GeneratedImage]:
        """Make the images of `prompt` (Request `fields` may override settings), save them, run `action`."""


def command_host() -> CommandHost:
    """The CommandHost of the `dreamtray` command line running the current click command (a plugin's command)."""
    import click

    host = click.get_current_context().find_object(CommandHost)
    if host is None:
        raise click.ClickException("This command makes images only when it runs as part of `dreamtray`.")
    return host


_LAZY = {
    "Request": "dreamtray.request",
    "RequestError": "dreamtray.request",
    "Result": "dreamtray.request",
    "Style": "dreamtray.styles",
    "StyleError": "dreamtray.styles",
    "load_package_packs": "dreamtray.styles",
    "Engine": "dreamtray.engine.client",
    "EngineFactory": "dreamtray.engine.client",
    "Job": "dreamtray.engine.client",
    "EngineError": "dreamtray.engine.client",
    "EngineUnavailable": "dreamtray.engine.client",
    "JobFailed": "dreamtray.engine.client",
    "JobCancelled": "dreamtray.engine.client",
    "ServiceEngine": "dreamtray.engine.client",
    "JobRecord": "dreamtray.engine.job_record",
    "SamplerError": "dreamtray.samplers",
    "a1111_sampler": "dreamtray.samplers",
    "write_atomically": "dreamtray.atomic",
    "Config": "dreamtray.config",
    "read_config": "dreamtray.config",
    "plugin_settings": "dreamtray.config",
    "save_plugin_setting": "dreamtray.config",
    "display_server": "dreamtray.display",
}

__all__ = [
    "Action",
    "CommandHost",
    "Config",
    "Engine",
    "EngineError",
    "EngineFactory",
    "EngineUnavailable",
    "GeneratedImage",
    "Job",
    "JobCancelled",
    "JobFailed",
    "JobRecord",
    "MenuItem",
    "Request",
    "RequestError",
    "Result",
    "SamplerError",
    "ServiceEngine",
    "Style",
    "StyleError",
    "TrayHost",
    "a1111_sampler",
    "display_server",
    "load_package_packs",
    "command_host",
    "plugin_settings",
    "read_config",
    "save_plugin_setting",
    "write_atomically",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'dreamtray.api' has no attribute {name!r}")
    value = getattr(import_module(_LAZY[name]), name)
    globals()[name] = value
    return value
