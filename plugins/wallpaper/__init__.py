"""First-party plugin: make a generated image the desktop wallpaper, undo it, or change it on a schedule.

Uses only dreamtray's public plugin interface.
"""

from __future__ import annotations

from dreamtray.api import Action, MenuItem, save_plugin_setting
from dreamtray.hookspecs import hookimpl

from .apply import PLUGIN, configured_mode, set_wallpaper, shape_request
from .commands import wallpaper
from .layout import MODES


@hookimpl
def register_actions(register):
    register(
        Action(
            name="wallpaper",
            label="Set as wallpaper",
            run=set_wallpaper,
            shape_request=shape_request,
            hotkey="<ctrl>+<alt>+w",
        )
    )


@hookimpl
def register_commands(cli):
    cli.add_command(wallpaper)


@hookimpl
def tray_menu_items(host):
    """'Wallpapers': the modes for several monitors, as radio items saved in `[plugins.wallpaper]`."""

    def choice(mode, label):
        return MenuItem(
            label,
            lambda host: save_plugin_setting(PLUGIN, "mode", mode),
            checked=lambda host: configured_mode() == mode,
        )

    return [MenuItem("Wallpapers", items=tuple(choice(mode, label) for mode, label in MODES.items()))]
