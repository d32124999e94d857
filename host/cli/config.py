"""`dreamtray config path|show|set`: the settings file."""

from __future__ import annotations

import click

from dreamtray.cli.context import Context, pass_app
from dreamtray.cli.terminal import echo
from dreamtray.config import (
    ConfigFileError,
    ConfigValueError,
    ConfigWriteError,
    config_path,
    set_value,
    show,
)


@click.group("config")
def config_group() -> None:
    """Read and change the settings file."""


@config_group.command("path")
def config_path_command() -> None:
    """Print where the settings file is (it may not exist yet)."""
    echo(config_path())


@config_group.command("show")
@pass_app
def config_show(ctx: Context) -> None:
    """Print every setting with its current value, as TOML."""
    loaded = ctx.loaded_config()
    note = "" if loaded.path.exists() else " (no such file yet: these are the defaults)"
    echo(f"# {loaded.path}{note}")
    actions = {"hotkeys": ctx.app.hotkeys, "default_action": ctx.app.default_action}  # the keys actions suggest too
    echo(show(loaded.config.model_copy(update=actions)), nl=False)


@config_group.command("set")
@click.argument("key")
@click.argument("value")
@click.pass_context
def config_set(ctx: click.Context, key: str, value: str) -> None:
    """Set KEY (for example engine.memory_policy or hotkeys.clipboard) to VALUE, keeping the file's comments."""
    path = config_path()
    try:
        if key == "style":
            _check_styles(ctx, value)
        set_value(key, value, path)
    except ConfigValueError as exc:
        echo(f"Error: {exc}", err=True)
        ctx.exit(2)
    except ConfigWriteError as exc:
        raise click.ClickException(str(exc)) from None
    except ConfigFileError as exc:
        raise click.ClickException(f"{exc}; mend or remove the file first") from None
    echo(f"{key} = {value} saved in {path}")


def _check_styles(ctx: click.Context, names: str) -> None:
    """A ConfigValueError unless every comma-separated name in `names` is a known style."""
    from dreamtray.request import Request
    from dreamtray.styles import StyleError

    app = ctx.ensure_object(Context).app
    try:
        app.styles.resolve(Request.model_validate({"prompt": "x", "styles": names}).styles)
    except StyleError as exc:
        raise ConfigValueError("style", str(exc)) from None


COMMANDS: list[click.Command] = [config_group]
