"""The `dreamtray` command line: a click group that plugins extend through `register_commands`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import click

from dreamtray.app import App, set_current_app
from dreamtray.plugins import PluginHost


class Context:
    """Carried on click's context: the lazily built application."""

    def __init__(self, app: App | None = None) -> None:
        self.app = app or App()

    @property
    def style_services(self):
        """What the styles, series and refine commands take from the application."""
        from dreamtray.cli.styles import StyleServices

        app = self.app
        return StyleServices(
            registry=lambda: app.styles, engine=lambda: app.engine, series_dir=app.gallery.folder / "series"
        )


pass_app = click.make_pass_decorator(Context, ensure=True)


COMMAND_MODULES = {
    "history": "gallery",
    "show": "gallery",
    "config": "gallery",
    "styles": "styles",
    "series": "series",
    "refine": "series",
    "autostart": "install",
    "launcher": "install",
    "desktop-check": "install",
    "serve": "serve",
    "run": "tray",
    "trigger": "tray",
}
"""Commands that live in their own modules, imported only when they run (or when help lists them)."""


class LazyGroup(click.Group):
    """A group that imports a command's module, and the plugins' commands, only when they are needed.

    `dreamtray run` then imports the tray and nothing else, which keeps the icon's start-up short.
    """

    plugin_host: PluginHost | None = None

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
        from importlib import import_module

        for command in import_module(f"{__package__}.{module_name}").COMMANDS:
            self.commands.setdefault(command.name, command)

    def _add_plugin_commands(self) -> None:
        host, self.plugin_host = self.plugin_host, None
        if host is not None:
            host.call("register_commands", cli=self)


@click.group(cls=LazyGroup)
@click.version_option(package_name="dreamtray")
def cli() -> None:
    """dreamtray: select text anywhere, press a key, get an image from a local diffusion engine."""


def parse_size(value: str | None) -> tuple[int | None, int | None]:
    if not value:
        return None, None
    try:
        width, height = (int(side) for side in value.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not WIDTHxHEIGHT, for example 512x512", param_hint="--size") from None
    return width, height


@cli.command()
@click.argument("prompt", required=False)
@click.option(
    "--model",
    "-m",
    help="Preset (sd-turbo, sdxl-turbo, flux-schnell, tiny, auto), hub id, folder or .safetensors file.",
)
@click.option("--seed", type=int, help="Seed for reproducible images; random when left out (and reported).")
@click.option("--steps", type=int, help="Denoising steps (default: the model's).")
@click.option("--size", help="WIDTHxHEIGHT, snapped to what the model accepts (default: the model's native size).")
@click.option(
    "--count", "-n", type=int, default=1, show_default=True, help="How many images (seeds seed, seed+1, ...)."
)
@click.option("--guidance", type=float, help="Classifier-free guidance scale (default: the model's).")
@click.option("--negative", default="", help="Negative prompt.")
@click.option("--sampler", help="Sampler, by A1111 name (Euler a, DPM++ 2M...) or diffusers scheduler class.")
@click.option("--style", "styles", multiple=True, help="Style to apply; repeat to stack (default: the config's).")
@click.option("--action", help="What to do with the image too: an action name (clipboard, wallpaper...).")
@click.option(
    "--from",
    "from_image",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Reproduce an image from its metadata; other options override.",
)
@click.option(
    "--out", "-o", type=click.Path(file_okay=False, path_type=Path), help="Also copy the PNGs into this folder."
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_app
def generate(
    ctx: Context,
    prompt,
    model,
    seed,
    steps,
    size,
    count,
    guidance,
    negative,
    sampler,
    styles,
    action,
    from_image,
    out,
    as_json,
) -> None:
    """Generate images from PROMPT; they are saved in the gallery with their parameters."""
    from dreamtray import generation
    from dreamtray.cli.progress import progress_printer
    from dreamtray.engine.client import EngineError
    from dreamtray.request import Request, RequestError

    app = ctx.app
    width, height = parse_size(size)
    given = {
        "prompt": prompt,
        "model": model,
        "seed": seed,
        "steps": steps,
        "width": width,
        "height": height,
        "guidance": guidance,
        "sampler": sampler,
        "count": count if count != 1 else None,
        "negative_prompt": negative or None,
        "styles": tuple(styles) or None,
    }
    fields = {key: value for key, value in given.items() if value is not None}
    if from_image is not None:
        from dreamtray.engine.presets import SAMPLERS
        from dreamtray.images.metadata import MetadataError, request_from_image

        try:
            base = request_from_image(from_image, samplers=SAMPLERS).model_dump(exclude_defaults=True)
        except MetadataError as exc:
            raise click.ClickException(str(exc)) from None
        base.pop("init_image", None)
        fields = base | fields
    elif prompt is None:
        raise click.UsageError("Give a PROMPT, or --from IMAGE to reproduce an image.")
    if "styles" not in fields and app.config.style:
        fields["styles"] = app.config.style
    try:
        request = Request.parse(**fields)
        outcome = generation.generate(app, request, action, on_event=progress_printer())
    except RequestError as exc:
        raise click.BadParameter(str(exc)) from None
    except (EngineError, generation.UnknownAction, KeyError) as exc:
        raise click.ClickException(str(exc).strip("'\"")) from None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        for path in outcome.paths:
            shutil.copy2(path, out / path.name)
    for message in outcome.messages:
        click.echo(message, err=True)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "images": [str(p) for p in outcome.paths],
                    "seeds": outcome.result.seeds,
                    "request": outcome.result.request.model_dump(mode="json", exclude={"init_image"}),
                    "warnings": outcome.result.warnings,
                },
                indent=2,
            )
        )
    else:
        for path, seed in zip(outcome.paths, outcome.result.seeds, strict=True):
            click.echo(f"{path}  (seed {seed})")
    if outcome.failed_actions:
        sys.exit(3)


@cli.command()
@click.option("--json", "as_json", is_flag=True)
@pass_app
def doctor(ctx: Context, as_json: bool) -> None:
    """Report the GPUs, memory and CPU, and what dreamtray will do with each model on them."""
    from dreamtray.cli.doctor import diagnose, render

    report = diagnose(ctx.app)
    click.echo(json.dumps(report, indent=2) if as_json else render(report))


@cli.group()
def engine() -> None:
    """The local engine service: status, unload the model, stop."""


@engine.command("status")
@pass_app
def engine_status(ctx: Context) -> None:
    client = ctx.app.local_engine.running()
    if client is None:
        click.echo("The engine is not running; it starts by itself on the first request.")
        return
    click.echo(json.dumps(client.health(), indent=2))


@engine.command("unload")
@pass_app
def engine_unload(ctx: Context) -> None:
    """Free the model's memory now (the next request loads it again)."""
    if ctx.app.local_engine.running() is None:
        click.echo("The engine is not running.")
        return
    ctx.app.local_engine.unload()
    click.echo("Model unloaded; its memory is free.")


@engine.command("stop")
@pass_app
def engine_stop(ctx: Context) -> None:
    ctx.app.local_engine.stop()
    click.echo("The engine is stopped.")


@cli.command()
@click.option("--json", "as_json", is_flag=True)
@pass_app
def plugins(ctx: Context, as_json: bool) -> None:
    """List the installed plugins with their version, hooks and status."""
    host = ctx.app.plugins
    host.load()
    # Run the registration hooks (commands are otherwise added lazily), so a plugin that raises there shows it.
    host.actions()
    cli.list_commands(click.get_current_context())
    records = [record.as_dict() for record in host.records.values()]
    if as_json:
        click.echo(json.dumps(records, indent=2))
        return
    for record in records:
        version = f" {record['version']}" if record["version"] else ""
        click.echo(f"{record['name']}{version}  [{record['status']}]  hooks: {', '.join(record['hooks']) or '-'}")
        for error in record["errors"]:
            click.echo(f"    {error}")


def _pip(*args: str) -> None:
    """Run pip in dreamtray's own environment."""
    result = subprocess.run([sys.executable, "-m", "pip", *args])
    if result.returncode:
        raise click.ClickException(f"pip {args[0]} failed (exit code {result.returncode}).")


@cli.command()
@click.argument("packages", nargs=-1, required=True)
@click.option("--upgrade", "-U", is_flag=True)
def install(packages: tuple[str, ...], upgrade: bool) -> None:
    """Install plugins (or any package) into dreamtray's environment with pip."""
    _pip("install", *(["--upgrade"] if upgrade else []), *packages)


@cli.command()
@click.argument("packages", nargs=-1, required=True)
def uninstall(packages: tuple[str, ...]) -> None:
    """Remove plugins from dreamtray's environment with pip."""
    _pip("uninstall", "--yes", *packages)


def build_cli(app: App) -> LazyGroup:
    """The full command line: the built-in commands, then (when first needed) those of the plugins."""
    cli.plugin_host = app.plugins
    return cli


def main() -> None:
    app = App()
    set_current_app(app)
    build_cli(app)(prog_name="dreamtray", obj=Context(app))
