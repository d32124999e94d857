"""`dreamtray styles`: list the styles from plugins and the user styles folder, and show one in full."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from dreamtray.cli.context import Context, StyleServices
from dreamtray.cli.terminal import printable, printable_json
from dreamtray.styles import Style, StyleError, StyleRegistry

if TYPE_CHECKING:
    pass


def services(ctx: click.Context) -> StyleServices:
    """The style services a caller put on the context (tests do), else those of the command line's Context."""
    return ctx.find_object(StyleServices) or ctx.ensure_object(Context).style_services


def registry(ctx: click.Context) -> StyleRegistry:
    """The style registry, with its loading problems (broken files, replaced names) shown as warnings."""
    loaded = services(ctx).registry()
    for problem in loaded.problems:
        click.echo(printable(f"warning: {problem}"), err=True)
    return loaded


def chosen_styles(ctx: click.Context, names: tuple[str, ...]) -> list[Style]:
    """The styles named by `--style` options (each may hold several, comma-separated); unknown ones are errors."""
    if not names:
        return []
    known = registry(ctx)
    try:
        return [known.get(name) for part in names for name in part.split(",") if name.strip()]
    except StyleError as exc:
        raise click.ClickException(str(exc)) from None


@click.group("styles", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON: one object per style.")
@click.pass_context
def styles(ctx: click.Context, as_json: bool) -> None:
    """List the styles with their pack and source; `styles show NAME` prints one in full."""
    if ctx.invoked_subcommand is not None:
        return
    found = list(registry(ctx))
    if as_json:
        click.echo(json.dumps([{"name": s.name, "pack": s.pack, "source": s.source} for s in found], indent=2))
        return
    if not found:
        click.echo("No styles. Drop .toml, Fooocus .json or A1111 styles.csv files in the user styles folder.")
        return
    name_width = max(len(style.name) for style in found)
    pack_width = max(len(style.pack) for style in found)
    for style in found:
        click.echo(printable(f"{style.name:<{name_width}}  {style.pack:<{pack_width}}  {style.source}", one_line=True))


@styles.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the style as JSON.")
@click.pass_context
def show(ctx: click.Context, name: str, as_json: bool) -> None:
    """Print a style's template, negative prompt and settings."""
    try:
        style = registry(ctx).get(name)
    except StyleError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(printable_json(style.model_dump_json(indent=2)))
        return
    click.echo(printable(describe(style)))


def describe(style: Style) -> str:
    """A style as readable lines: what `styles show` prints."""
    lines = [
        f"name:      {style.name}",
        f"pack:      {style.pack}",
        f"source:    {style.source}",
    ]
    if style.description:
        lines.append(f"about:     {style.description}")
    lines += [f"template:  {style.prompt}", f"negative:  {style.negative_prompt or '(none)'}"]
    for key, value in style.settings.items():
        if key == "loras":
            value = ", ".join(f"{lora.source} x{lora.scale:g}" for lora in value)
        elif key == "models":
            value = ", ".join(value)
        lines.append(f"{key + ':':<10} {value}")
    return "\n".join(lines)


COMMANDS: list[click.Command] = [styles]
