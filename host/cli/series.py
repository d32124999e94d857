"""`dreamtray series`: a consistent set of images, extendable later."""

from __future__ import annotations

from pathlib import Path

import click

from dreamtray.cli.progress import follow
from dreamtray.cli.styles import chosen_styles, services
from dreamtray.images.series import (
    Manifest,
    SeriesError,
    Settings,
    add_image,
    load_manifest,
    new_manifest,
    save_contact_sheet,
    save_manifest,
    series_folder,
)
from dreamtray.request import MAX_SEED, MAX_SIDE, MIN_SIDE, RequestError

SIDE = click.IntRange(MIN_SIDE, MAX_SIDE)
SEED = click.IntRange(0, MAX_SEED)
SHARED_OPTIONS = ("count", "style_names", "seed", "width", "height", "steps", "guidance", "model", "negative", "out")


@click.command("series")
@click.argument("prompt")
@click.option("--count", type=click.IntRange(1, 16), default=4, show_default=True, help="Images per prompt.")
@click.option("--style", "style_names", multiple=True, help="Style to apply (repeat to stack, in order).")
@click.option("--seed", type=SEED, help="Base seed: image i uses seed + i. Default: a style's seed, else random.")
@click.option("--width", type=SIDE)
@click.option("--height", type=SIDE)
@click.option("--steps", type=click.IntRange(1, 150))
@click.option("--guidance", type=click.FloatRange(0, 30))
@click.option("--model", help="Model preset, hub id or file; default: the engine's.")
@click.option("--negative", default="", help="Negative prompt, before the styles' own.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for a new series (default: a new one in the gallery's series folder).",
)
@click.option(
    "--extend",
    type=click.Path(exists=True, path_type=Path),
    help="Add a row for PROMPT to an existing series (its series.json or folder), with the same look.",
)
@click.pass_context
def series(ctx: click.Context, prompt: str, extend: Path | None, **options: object) -> None:
    """Make a set of images that share styles, seeds, size and model, with a contact sheet and a manifest.

    Image i of every row uses seed base + i, so rows made later with --extend start from the same noise.
    """
    if extend is not None:
        given = [
            f"--{name.removesuffix('_names')}"
            for name in SHARED_OPTIONS
            if ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE
        ]
        if given:
            raise click.UsageError(
                f"{', '.join(given)} cannot be used with --extend: the series keeps its own settings"
            )
        try:
            manifest, folder = load_manifest(extend)
        except SeriesError as exc:
            raise click.ClickException(str(exc)) from None
    else:
        settings = Settings(
            negative_prompt=options["negative"],
            width=options["width"],
            height=options["height"],
            steps=options["steps"],
            guidance=options["guidance"],
            model=options["model"],
        )
        styles = chosen_styles(ctx, options["style_names"])
        manifest = new_manifest(options["count"], styles, settings, options["seed"])
        folder = options["out"] or series_folder(services(ctx).series_dir, prompt)
        if (folder / "series.json").exists():
            raise click.ClickException(f"{folder} already holds a series: use --extend {folder}")
    make_row(ctx, manifest, folder, prompt)
    click.echo(folder / "series.json")


def make_row(ctx: click.Context, manifest: Manifest, folder: Path, prompt: str) -> None:
    """Generate one image per column for `prompt`, saving the manifest after each and the contact sheet at the end."""
    engine = services(ctx).engine()
    row = manifest.rows
    for column in range(manifest.count):
        try:
            request = manifest.request_for(prompt, column)
        except (RequestError, ValueError) as exc:
            raise click.ClickException(str(exc)) from None
        result = follow(engine.submit(request), f"image {column + 1}/{manifest.count}")
        if not manifest.images:
            manifest.pin(result.request, result)
        try:
            image = add_image(manifest, folder, prompt, row, column, result)
            save_manifest(manifest, folder)
        except SeriesError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"{folder / image.file}  seed {image.seed}", err=True)
    save_contact_sheet(manifest, folder)


COMMANDS: list[click.Command] = [series]
