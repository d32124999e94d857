"""The wallpaper plugin as dreamtray loads it, for the desktop tests: its action, and `wallpaper --undo`."""

from __future__ import annotations

import pluggy
from click.testing import CliRunner, Result

import dreamtray.hookspecs
from dreamtray.api import Action
from dreamtray_plugins.wallpaper.commands import wallpaper as wallpaper_command


def wallpaper_action() -> Action:
    """The wallpaper plugin's action, found through its entry point as the plugin host finds it."""
    manager = pluggy.PluginManager("dreamtray")
    manager.add_hookspecs(dreamtray.hookspecs)
    manager.load_setuptools_entrypoints("dreamtray", name="wallpaper")
    actions: list[Action] = []
    manager.hook.register_actions(register=actions.append)
    return actions[0]


def undo_command() -> Result:
    """`dreamtray wallpaper --undo` as the command line runs it."""
    return CliRunner().invoke(wallpaper_command, ["--undo"])
