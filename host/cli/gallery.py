"""Command line for the gallery: `history` and `show IMAGE`."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import click

from dreamtray.cli.context import Context, pass_app
from dreamtray.cli.terminal import printable, printable_json
from dreamtray.images.gallery import Gallery
from dreamtray.images.metadata import ImageMetadata, MetadataError, read_metadata


def metadata_as_dict(path: Path, metadata: ImageMetadata) -> dict[str, Any]:
    """An image's metadata as JSON-ready data (an init image is given by its size, not its bytes)."""
    request = None
    if metadata.request is not None:
        request = metadata.request.model_dump(mode="json", exclude={"init_image"})
        request["init_image_bytes"] = len(metadata.request.init_image or b"")
    parameters = metadata.parameters
    return {
        "file": str(path),
        "source": metadata.source,
        "width": metadata.width,
        "height": metadata.height,
        "parameters": dataclasses.asdict(parameters) if parameters else None,
        "settings": parameters.settings() if parameters else {},
        "request": request,
        "prompts": list(metadata.prompts),
        "texts": {key: value for key, value in metadata.texts.items() if key != "dreamtray"},
        "warnings": list(metadata.warnings),
    }


def _indented(text: str) -> str:
    return text.replace("\n", "\n    ")


def describe(path: Path, metadata: ImageMetadata) -> str:
    """An image's metadata for people: who wrote it, the prompts, then one line per setting."""
    lines = [f"{path}: {metadata.width}x{metadata.height} PNG, metadata written by {metadata.source}"]
    parameters = metadata.parameters
    if parameters is not None:
        lines.append(f"Prompt: {_indented(parameters.prompt)}")
        request = metadata.request
        if request is not None and request.expanded_from is not None:
            expansion = request.unstyled.prompt if request.unstyled else request.prompt
            lines.append(f"Your words: {_indented(request.expanded_from)}")
            lines.append(f"Expansion: {_indented(expansion)}")
        if parameters.negative_prompt:
            lines.append(f"Negative prompt: {_indented(parameters.negative_prompt)}")
        lines += [f"{key}: {_indented(value)}" for key, value in parameters.settings().items()]
    other_prompts = [text for text in metadata.prompts if parameters is None or text != parameters.prompt]
    if other_prompts:
        lines.append("Other prompt texts in the file:" if parameters else "Prompt texts in the file:")
        lines += [f"  - {_indented(text)}" for text in other_prompts]
    return "\n".join(lines)


@click.command()
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1), help="How many images.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@pass_app
def history(ctx: Context, limit: int, as_json: bool) -> None:
    """List the most recent images in the gallery, newest first."""
    gallery = Gallery(ctx.loaded_config().config.gallery)
    entries = gallery.history(limit)
    if as_json:
        rows = []
        for entry in entries:
            row = metadata_as_dict(entry.path, entry.metadata) if entry.metadata else {"file": str(entry.path)}
            rows.append(row | {"modified": entry.modified.isoformat(timespec="seconds"), "error": entry.error})
        click.echo(printable_json(json.dumps(rows, indent=2, ensure_ascii=False)))
        return
    if not entries:
        click.echo(printable(f"No images yet in {gallery.folder}"))
        return
    for entry in entries:
        click.echo(printable(f"{entry.modified:%Y-%m-%d %H:%M:%S}  {entry.path}", one_line=True))
        parameters = entry.metadata.parameters if entry.metadata else None
        if parameters is not None:
            prompt = parameters.prompt.replace("\n", " ")
            click.echo(printable(f"    {prompt[:100]}{'...' if len(prompt) > 100 else ''}", one_line=True))
            settings = parameters.settings()
            shown = ", ".join(f"{key}: {settings[key]}" for key in ("Seed", "Size", "Model") if key in settings)
            click.echo(printable(f"    {shown}", one_line=True))
        else:
            click.echo(printable(f"    {entry.error}", one_line=True))


@click.command("show")
@click.argument("image", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def show_image(image: Path, as_json: bool) -> None:
    """Print how IMAGE was made: prompt, seed, steps, sampler, size, model.

    Reads dreamtray's PNGs, AUTOMATIC1111's (and tools writing its format) and ComfyUI's.
    """
    try:
        metadata = read_metadata(image)
    except MetadataError as exc:
        raise click.ClickException(str(exc)) from None
    for warning in metadata.warnings:
        click.echo(printable(f"warning: {image}: {warning}"), err=True)
    if as_json:
        click.echo(printable_json(json.dumps(metadata_as_dict(image, metadata), indent=2, ensure_ascii=False)))
    else:
        click.echo(printable(describe(image, metadata)))


COMMANDS: list[click.Command] = [history, show_image]
