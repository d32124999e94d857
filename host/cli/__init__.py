"""The `dreamtray` command line: one module per command group, loaded when a command runs; plugins add theirs
through `register_commands`. Every command reaches the application one way: `cli.context.pass_app`."""

from __future__ import annotations

import os
from importlib import import_module
from typing import Any

import click

from dreamtray.app import App
from dreamtray.cli.context import Context
from dreamtray.cli.terminal import printable_errors
from dreamtray.plugins import ENV_PLUGINS_DIR, PluginHost, PluginInterrupt

COMMAND_MODULES = {
    "generate": "generate",
    "expand": "expand",
    "doctor": "doctor",
    "engine": "engine",
    "plugins": "plugins",
    "install": "install",
    "uninstall": "install",
    "history": "gallery",
    "show": "gallery",
    "config": "config",
    "styles": "styles",
    "series": "series",
    "refine": "refine",
    "autostart": "setup",
    "launcher": "setup",
    "desktop-check": "setup",
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
        """Run the command; Ctrl+C (or a plugin's KeyboardInterrupt) while a plugin ran says which, and exits 130."""
        try:
            with printable_errors():
                return super().invoke(ctx)
        except PluginInterrupt as exc:
            click.echo(f"\n{exc}", err=True)
            ctx.exit(130)

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


def _use_plugins_dir(ctx: click.Context, param: click.Parameter, folder: str | None) -> None:
    """`--plugins-dir`: read while the arguments are parsed, before any plugin loads (they load lazily)."""
    if folder:
        os.environ[ENV_PLUGINS_DIR] = folder


def build_cli(app: App) -> LazyGroup:
    """A new `dreamtray` group for `app`: the built-in commands, then (when first needed) those of the plugins."""

    @click.group("dreamtray", cls=LazyGroup, plugin_host=app.plugins)
    @click.version_option(package_name="dreamtray")
    @click.option(
        "--plugins-dir",
        type=click.Path(file_okay=False, exists=True),
        is_eager=True,
        expose_value=False,
        callback=_use_plugins_dir,
        help=f"Also load each NAME.py and NAME/ package in this folder as a plugin, without installing it (for "
        f"writing one; ${ENV_PLUGINS_DIR} does the same).",
    )
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
