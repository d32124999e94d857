"""`dreamtray series` (a consistent set of images, extendable later) and `dreamtray refine` (image-to-image)."""

from __future__ import annotations

from pathlib import Path

import click

from dreamtray.cli.progress import progress_printer
from dreamtray.cli.styles import registry, services
from dreamtray.engine.client import EngineError, Job
from dreamtray.images.refine import refine_file
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
from dreamtray.request import MAX_SEED, MAX_SIDE, MIN_SIDE, RequestError, Result
from dreamtray.styles import Style, StyleError

SIDE = click.IntRange(MIN_SIDE, MAX_SIDE)
SEED = click.IntRange(0, MAX_SEED)
SHARED_OPTIONS = ("count", "style_names", "seed", "width", "height", "steps", "guidance", "model", "negative", "out")


def follow(job: Job, label: str) -> Result:
    """Show the job's progress on stderr and return its result; engine problems become CLI errors."""
    show = progress_printer(label)
    try:
        for event in job.events():
            show(event)
        return job.result()
    except EngineError as exc:
        raise click.ClickException(str(exc)) from None


def chosen_styles(ctx: click.Context, names: tuple[str, ...]) -> list[Style]:
    if not names:
        return []
    known = registry(ctx)
    try:
        return [known.get(name) for part in names for name in part.split(",") if name.strip()]
    except StyleError as exc:
        raise click.ClickException(str(exc)) from None


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


@click.command("refine")
@click.argument("image", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("change")
@click.option(
    "--strength",
    type=click.FloatRange(0, 1, min_open=True),
    default=0.6,
    show_default=True,
    help="How much may change: near 0 keeps the image, 1 redraws it.",
)
@click.option("--style", "style_names", multiple=True, help="Style to apply on top (repeat to stack).")
@click.option("--seed", type=SEED)
@click.option("--model", help="Default: the model that made the image, when its PNG says so.")
@click.option("--steps", type=click.IntRange(1, 150))
@click.option("--only-change", is_flag=True, help="Use CHANGE as the whole prompt, not added to the original's.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Default: IMAGE-refined.png beside it.")
@click.pass_context
def refine(
    ctx: click.Context,
    image: Path,
    change: str,
    strength: float,
    style_names: tuple[str, ...],
    seed: int | None,
    model: str | None,
    steps: int | None,
    only_change: bool,
    out: Path | None,
) -> None:
    """Change an image by a description (image-to-image); the new PNG names its original in its metadata."""
    styles = chosen_styles(ctx, style_names)
    try:
        target = refine_file(
            services(ctx).engine(),
            image,
            change,
            strength=strength,
            styles=styles,
            only_change=only_change,
            out=out,
            wait=lambda job: follow(job, "refine"),
            seed=seed,
            model=model,
            steps=steps,
        )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(target)


COMMANDS: list[click.Command] = [series, refine]
