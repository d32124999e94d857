"""The `dreamtray` command line: one module per command group, loaded when a command runs; plugins add theirs
through `register_commands`. Every command reaches the application one way: `cli.context.pass_app`."""

from __future__ import annotations

from importlib import import_module
from typing import Any

import click

from dreamtray.app import App
from dreamtray.cli.context import Context
from dreamtray.cli.terminal import printable_errors
from dreamtray.plugins import PluginHost

COMMAND_MODULES = {
    "generate": "generate",
    "expand": "expand",
    "doctor": "engine",
    "engine": "engine",
    "plugins": "plugins",
    "install": "plugins",
    "uninstall": "plugins",
    "history": "gallery",
    "show": "gallery",
    "config": "gallery",
    "styles": "styles",
    "series": "series",
    "refine": "refine",
    "autostart": "install",
    "launcher": "install",
    "desktop-check": "install",
    "serve": "serve",
    "run": "tray",
    "trigger": "tray",
}
"""Where each command lives (`dreamtray.cli.<module>`), imported only when it runs or when help lists it."""


class LazyGroup(click.Group):
    """A group that imports a command's module, and the plugins' commands, only when they are needed.

    `dreamtray run` then imports the tray and nothing else, which keeps the icon's start-up short.
    """

    def __init__(self, plugin_host: PluginHost, **attrs: object) -> None:
        super().__init__(**attrs)
        self.plugin_host: PluginHost | None = plugin_host

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        with printable_errors():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx: click.Context) -> Any:
        with printable_errors():
            return super().invoke(ctx)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        if command is None and name in COMMAND_MODULES:
            self._import(COMMAND_MODULES[name])
            command = super().get_command(ctx, name)
        if command is None:
            self._add_plugin_commands()
            command = super().get_command(ctx, name)
        return command

    def list_commands(self, ctx: click.Context) -> list[str]:
        for module in sorted(set(COMMAND_MODULES.values())):
            self._import(module)
        self._add_plugin_commands()
        return super().list_commands(ctx)

    def _import(self, module_name: str) -> None:
        for command in import_module(f"{__name__}.{module_name}").COMMANDS:
            self.commands.setdefault(command.name, command)

    def _add_plugin_commands(self) -> None:
        host, self.plugin_host = self.plugin_host, None
        if host is not None:
            host.call("register_commands", cli=self)


def build_cli(app: App) -> LazyGroup:
    """A new `dreamtray` group for `app`: the built-in commands, then (when first needed) those of the plugins."""

    @click.group("dreamtray", cls=LazyGroup, plugin_host=app.plugins)
    @click.version_option(package_name="dreamtray")
    def cli() -> None:
        """dreamtray: select text anywhere, press a key, get an image from a local diffusion engine."""

    return cli


def main() -> None:
    app = App()
    try:
        build_cli(app)(prog_name="dreamtray", obj=Context(app))
    finally:
        if "plugins" in app.__dict__:  # plugins were loaded: give hooks still running a bounded time
            app.plugins.wait_later()
