"""`dreamtray series`: a consistent set of images, extendable later."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import click

from dreamtray.cli.context import Context
from dreamtray.cli.progress import progress_printer
from dreamtray.cli.styles import chosen_styles, services
from dreamtray.engine.client import EngineError
from dreamtray.images.metadata import given_texts
from dreamtray.images.series import (
    Manifest,
    SeriesError,
    SeriesImage,
    Settings,
    add_image,
    load_manifest,
    new_manifest,
    reference_picture,
    save_contact_sheet,
    save_manifest,
    save_reference,
    series_folder,
)
from dreamtray.request import (
    MAX_SEED,
    MAX_SIDE,
    MIN_SIDE,
    SUBJECT_METHODS,
    Request,
    RequestError,
    Result,
    Subject,
    parse_size,
)
from dreamtray.styles import Style, StyleRegistry

SIDE = click.IntRange(MIN_SIDE, MAX_SIDE)
SEED = click.IntRange(0, MAX_SEED)
SHARED_OPTIONS = (
    "count",
    "style_names",
    "seed",
    "size",
    "width",
    "height",
    "steps",
    "guidance",
    "model",
    "negative",
    "out",
    "same_subject",
    "reference",
    "method",
    "plugin_method",
    "subject_strength",
    "ip_adapter",
)


def size_option(text: str | None) -> tuple[int, int] | None:
    """`--size WIDTHxHEIGHT` read with the one size parser."""
    if text is None:
        return None
    try:
        return parse_size(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command("series")
@click.argument("prompts", metavar="PROMPT...", nargs=-1, required=True)
@click.option("--count", type=click.IntRange(1, 16), default=4, show_default=True, help="Images per prompt.")
@click.option("--style", "style_names", multiple=True, help="Style to apply (repeat to stack, in order).")
@click.option("--seed", type=SEED, help="Base seed: image i uses seed + i. Default: a style's seed, else random.")
@click.option("--size", callback=lambda ctx, param, value: size_option(value), help="WIDTHxHEIGHT, as for generate.")
@click.option("--width", type=SIDE, hidden=True)  # the older spelling of --size, still read
@click.option("--height", type=SIDE, hidden=True)
@click.option("--steps", type=click.IntRange(1, 150))
@click.option("--guidance", type=click.FloatRange(0, 30))
@click.option("--model", help="Model preset, hub id or file; default: the engine's.")
@click.option("--negative", default="", help="Negative prompt, before the styles' own.")
@click.option("--same-subject", is_flag=True, help="Every image keeps the subject of the first (or of --reference).")
@click.option(
    "--reference",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A picture whose subject every image keeps (implies --same-subject).",
)
@click.option(
    "--method",
    type=click.Choice(["auto", *SUBJECT_METHODS]),
    default="auto",
    show_default=True,
    help="How the subject is kept; auto: by the model and the back end (docs/style-packs.md).",
)
@click.option("--plugin-method", help="A same-subject method a plugin brings, by name (`subject_methods` hook).")
@click.option(
    "--subject-strength",
    type=click.FloatRange(0, 1, min_open=True),
    default=0.55,
    show_default=True,
    help="init-image: how much may change; ip-adapter: the adapter's scale.",
)
@click.option(
    "--ip-adapter",
    type=click.Path(exists=True, dir_okay=False),
    help="IP-Adapter weight file (its CLIP image encoder in image_encoder/ beside it).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for a new series (default: a new one in the gallery's series folder).",
)
@click.option(
    "--extend",
    type=click.Path(exists=True, path_type=Path),
    help="Add a row for each PROMPT to an existing series (its series.json or folder), with the same look "
    "(and subject).",
)
@click.pass_context
def series(ctx: click.Context, prompts: tuple[str, ...], extend: Path | None, **options: Any) -> None:
    """Make a set of images that share styles, seeds, size and model (one row per PROMPT), with a contact sheet
    and a manifest; with --same-subject every image also keeps the first image's subject.

    Image i of every row uses seed base + i, so rows made later with --extend start from the same noise.
    """
    if extend is not None:
        given = [
            f"--{name.removesuffix('_names').replace('_', '-')}"
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
            width=options["width"] or (options["size"] or (None, None))[0],
            height=options["height"] or (options["size"] or (None, None))[1],
            steps=options["steps"],
            guidance=options["guidance"],
            model=options["model"],
        )
        styles = chosen_styles(ctx, options["style_names"])
        manifest = new_manifest(options["count"], styles, settings, options["seed"], subject_for(ctx, options))
        folder = options["out"] or series_folder(services(ctx).series_dir, prompts[0])
        if (folder / "series.json").exists():
            raise click.ClickException(f"{folder} already holds a series: use --extend {folder}")
        try:
            save_reference(manifest, folder)
        except SeriesError as exc:
            raise click.ClickException(str(exc)) from None
    for prompt in prompts:
        make_row(ctx, manifest, folder, prompt)
    if manifest.subject is not None:
        click.echo(f"Same subject: {manifest.subject.describe()}", err=True)
    click.echo(folder / "series.json")


def subject_for(ctx: click.Context, options: dict[str, Any]) -> Subject | None:
    """The subject to keep as the options ask (None without --same-subject or --reference): the method, and the
    reference picture read and checked now, before anything is made."""
    plugin = options["plugin_method"]
    if not (options["same_subject"] or options["reference"] or plugin):
        return None
    image, name = None, ""
    if options["reference"] is not None:
        try:
            image, name = reference_picture(options["reference"])
        except SeriesError as exc:
            raise click.ClickException(str(exc)) from None
    if plugin is not None and plugin not in route_host(ctx).plugins.subject_methods():
        known = ", ".join(sorted(route_host(ctx).plugins.subject_methods())) or "none"
        raise click.ClickException(f"no plugin brings the same-subject method {plugin!r} (installed: {known})")
    return Subject(
        method=options["method"],
        image=image,
        image_name=name,
        strength=options["subject_strength"],
        adapter=options["ip_adapter"],
        plugin=plugin,
    )


class SeriesRoute:
    """The application as a series' images travel the one route (generation.generate): its own parts, but the
    styles are the copies the manifest keeps, so a row added later looks like the first even after a style
    changed."""

    def __init__(self, app: Any, styles: Iterable[Style]) -> None:
        self._app = app
        self.styles = StyleRegistry()
        for style in styles:
            self.styles.add(style)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._app, name)


def route_host(ctx: click.Context) -> Any:
    """The application the command line runs on."""
    return ctx.ensure_object(Context).app


def plugin_kept(app: Any, manifest: Manifest, folder: Path, request: Request) -> Request:
    """`request` as the plugin's same-subject method changes it, given the reference picture's bytes."""
    method = app.plugins.subject_methods()[manifest.subject.plugin]
    if manifest.subject.image is not None:
        reference = manifest.subject.image
    else:
        reference = (folder / manifest.images[0].file).read_bytes() if manifest.images else None
    try:
        return Request.model_validate(method.keep(request, reference).model_dump())
    except Exception as exc:  # plugin code: its failure is named, never a traceback
        raise click.ClickException(f"the same-subject method {method.name!r} failed: {exc}") from None


def make_row(ctx: click.Context, manifest: Manifest, folder: Path, prompt: str) -> None:
    """Generate one image per column for `prompt` through the one route (plugins, styles, the engine, the gallery,
    `image_generated`), keep a copy in the series folder, save the manifest after each image and the contact
    sheet at the end."""
    from dreamtray import generation

    app = route_host(ctx)
    row = manifest.rows
    for column in range(manifest.count):
        try:
            request = manifest.request_for(prompt, column)
            if manifest.subject is not None and manifest.subject.plugin:
                request = plugin_kept(app, manifest, folder, request)
        except (RequestError, ValueError) as exc:
            raise click.ClickException(str(exc)) from None
        label = f"image {column + 1}/{manifest.count}"
        kept: list[SeriesImage] = []

        def keep_in_series(result: Result, given: Request, warn: Any, column: int = column) -> list[Path]:
            """The route's place for a series image: the series folder, recorded in the manifest."""
            if not manifest.images:
                manifest.pin(result.request, result)
            kept.append(add_image(manifest, folder, prompt, row, column, result, texts=given_texts(given)))
            save_manifest(manifest, folder)
            return [folder / kept[-1].file]

        try:
            outcome = generation.generate(
                SeriesRoute(app, manifest.styles), request, on_event=progress_printer(label), save=keep_in_series
            )
        except (EngineError, SeriesError) as exc:
            raise click.ClickException(str(exc)) from None
        result, (image,) = outcome.result, kept
        for message in outcome.messages:
            click.echo(message, err=True)
        method = f"  {result.request.subject.describe()}" if result.request.subject else ""
        click.echo(f"{folder / image.file}  seed {image.seed}{method}", err=True)
    save_contact_sheet(manifest, folder)


COMMANDS: list[click.Command] = [series]
