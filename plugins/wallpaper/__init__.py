"""First-party plugin: make a generated image the desktop wallpaper, undo it, or change it on a schedule.

Uses only dreamtray's public plugin interface.
"""

from __future__ import annotations

from dreamtray.api import Action
from dreamtray.hookspecs import hookimpl

from .apply import set_wallpaper, shape_request
from .commands import wallpaper


@hookimpl
def register_actions(register):
    register(Action(name="wallpaper", label="Set as wallpaper", run=set_wallpaper, shape_request=shape_request))


@hookimpl
def register_commands(cli):
    cli.add_command(wallpaper)
