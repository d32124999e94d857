"""`dreamtray generate`: images from a prompt, or again from an image's metadata."""

from __future__ import annotations

import base64
import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click

from dreamtray.cli.context import Context, pass_app
from dreamtray.cli.terminal import echo


def parse_size(value: str | None) -> tuple[int | None, int | None]:
    """`--size`: (None, None) when not given."""
    from dreamtray.request import parse_size as parse

    if not value:
        return None, None
    try:
        return parse(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--size") from None


@click.command()
@click.argument("prompt", required=False)
@click.option(
    "--model",
    "-m",
    help="Preset (sd-turbo, sdxs, sdxl-turbo, flux-schnell, tiny, auto), hub id, folder or .safetensors file.",
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
@click.option(
    "--quality",
    type=click.Choice(["fast", "balanced", "best"]),
    help="fast: the TAESD decoder (TAESD), OpenVINO on a CPU; balanced: the full VAE; best: the reference pixels "
    "(default: the config's engine.quality).",
)
@click.option(
    "--preview",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write a small preview of the image to this PNG file at every step, while it forms.",
)
@click.option(
    "--expand/--no-expand",
    "expand",
    default=None,
    help="Grow the prompt with the text model first, with the image's seed (default: the config's expand_prompts).",
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
    quality,
    preview,
    expand,
    as_json,
) -> None:
    """Generate images from PROMPT; they are saved in the gallery with their parameters."""
    from dreamtray import generation, route
    from dreamtray.cli.progress import progress_printer
    from dreamtray.engine.client import EngineError
    from dreamtray.images.gallery import GalleryError
    from dreamtray.plugins import UnknownAction
    from dreamtray.request import RequestError
    from dreamtray.styles import StyleError

    app = ctx.app
    for problem in app.loaded_config.problems:  # the rest of the config still applies
        echo(f"warning: {problem}", err=True)
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
        "quality": quality,
        "preview_every": 1 if preview else None,
    }
    fields = {key: value for key, value in given.items() if value is not None}
    if from_image is not None:
        from dreamtray.images.metadata import MetadataError, reproduce_image

        try:
            found = reproduce_image(from_image)
        except (MetadataError, RequestError) as exc:
            raise click.ClickException(str(exc)) from None
        for warning in found.warnings:
            echo(f"warning: {from_image}: {warning}", err=True)
        base = found.request.model_dump(exclude_defaults=True)
        base.pop("init_image", None)
        fields = base | fields
        if expand:
            note = "note: --from repeats the image's own prompt (its expansion included), not expanded again."
            click.echo(note, err=True)
    elif prompt is None:
        raise click.UsageError("Give a PROMPT, or --from IMAGE to reproduce an image.")
    elif expand or (expand is None and app.config.expand_prompts):
        fields |= expanded_fields(app, prompt, seed)
    jobs: list = []
    try:
        request = route.request_for(app, **fields)
        chosen = app.plugins.action(action) if action else None
        outcome = generation.generate(
            app, request, chosen, on_event=with_previews(progress_printer(), preview), on_job=jobs.append
        )
    except KeyboardInterrupt as exc:
        cancel_on_interrupt(jobs, exc)
    except RequestError as exc:
        raise click.BadParameter(str(exc)) from None
    except (EngineError, UnknownAction, StyleError, KeyError) as exc:
        raise click.ClickException(str(exc).strip("'\"")) from None
    except GalleryError as exc:
        raise click.ClickException(f"The image could not be saved: {exc}") from None
    if out is not None:
        try:
            out.mkdir(parents=True, exist_ok=True)
            for path in outcome.paths:
                shutil.copy2(path, out / path.name)
        except OSError as exc:
            where = ", ".join(str(path) for path in outcome.paths)
            raise click.ClickException(
                f"Could not copy the images into {out} ({exc.strerror or exc}); they are saved at {where}."
            ) from None
    for message in outcome.messages:
        echo(message, err=True)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "images": [str(p) for p in outcome.paths],
                    "seeds": outcome.result.seeds,
                    "extra_images": [str(image.path) for image in outcome.extras],
                    "request": outcome.result.request.model_dump(mode="json", exclude={"init_image"}),
                    "warnings": outcome.result.warnings,
                },
                indent=2,
            )
        )
    else:
        for path, seed in zip(outcome.paths, outcome.result.seeds, strict=True):
            echo(f"{path}  (seed {seed})")
        for image in outcome.extras:
            echo(f"{image.path}  (seed {image.request.seed}, made for the action)")
    if outcome.failed_actions:
        sys.exit(3)


def expanded_fields(app: Any, words: str, seed: int | None) -> dict[str, Any]:
    """The request's prompt grown from `words` with the image's seed, the words kept apart (`expanded_from`)."""
    from dreamtray.engine.client import EngineError
    from dreamtray.prompt_expansion import expand

    try:
        grown = expand(app, words, seed)
    except EngineError as exc:
        raise click.ClickException(f"The prompt could not be expanded: {exc}") from None
    for note in grown.notes:
        click.echo(note, err=True)
    click.echo(f"expanded: {grown.expansion}", err=True)
    return {"prompt": grown.expansion, "expanded_from": words, "seed": grown.seed}


def with_previews(on_event: Callable[[dict[str, Any]], None], path: Path | None) -> Callable[[dict[str, Any]], None]:
    """`on_event`, and each preview event's image written to `path` (replaced whole, never half-written)."""
    if path is None:
        return on_event

    def on_event_and_preview(event: dict[str, Any]) -> None:
        if event.get("kind") == "preview":
            from dreamtray.atomic import write_atomically

            write_atomically(path, base64.b64decode(event["png"]), mode=0o644)
        on_event(event)

    return on_event_and_preview


COMMANDS: list[click.Command] = [generate]


def cancel_on_interrupt(jobs: list, interrupt: KeyboardInterrupt | None = None) -> NoReturn:
    """Ctrl+C: cancel the engine's job too (a download keeps what it fetched), then exit 130 as shells expect.
    An interrupt while a plugin ran says which plugin (PluginInterrupt)."""
    from dreamtray.engine.client import EngineError

    for job in jobs:
        try:
            job.cancel()
        except EngineError:
            pass  # the engine is gone or the job over: nothing left to stop
    click.echo(f"\n{str(interrupt or '') or 'Cancelled.'}", err=True)  # a plain Ctrl+C has no text
    sys.exit(130)
