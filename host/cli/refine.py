"""`dreamtray refine`: change an image by a description (image-to-image)."""

from __future__ import annotations

from pathlib import Path

import click

from dreamtray.cli.progress import follow
from dreamtray.cli.styles import chosen_styles, services
from dreamtray.images.refine import refine_file
from dreamtray.request import MAX_SEED

SEED = click.IntRange(0, MAX_SEED)


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


COMMANDS: list[click.Command] = [refine]
