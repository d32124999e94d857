"""`dreamtray refine`: change an image by a description (image-to-image), along the route every image takes."""

from __future__ import annotations

from pathlib import Path

import click

from dreamtray.cli.context import Context, pass_app
from dreamtray.cli.terminal import echo
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
@pass_app
def refine(
    ctx: Context,
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
    from dreamtray import generation
    from dreamtray.cli.generate import cancel_on_interrupt
    from dreamtray.cli.progress import progress_printer
    from dreamtray.engine.client import EngineError
    from dreamtray.images.gallery import GalleryError
    from dreamtray.styles import StyleError

    names = [name.strip() for part in style_names for name in part.split(",") if name.strip()]
    given = {"seed": seed, "model": model, "steps": steps, "styles": names or None}
    jobs: list = []
    try:
        outcome = generation.refine(
            ctx.app,
            image,
            change,
            strength=strength,
            only_change=only_change,
            out=out,
            on_event=progress_printer("refine"),
            on_job=jobs.append,
            **{key: value for key, value in given.items() if value is not None},
        )
    except KeyboardInterrupt as exc:
        cancel_on_interrupt(jobs, exc)
    except (ValueError, EngineError, StyleError) as exc:
        raise click.ClickException(str(exc).strip("'\"")) from None
    except GalleryError as exc:
        raise click.ClickException(f"The refined image could not be saved: {exc}") from None
    for message in outcome.messages:
        echo(message, err=True)
    echo(str(outcome.paths[0]))


COMMANDS: list[click.Command] = [refine]
