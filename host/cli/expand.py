"""`dreamtray expand TEXT`: the prompt grown by the engine's text model, as `generate --expand` would use it."""

from __future__ import annotations

import json

import click

from dreamtray.cli.context import Context, pass_app


@click.command()
@click.argument("text")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), help="Seed: one seed, one expansion (random when left out).")
@click.option("--json", "as_json", is_flag=True, help="Print the words, the expansion and the seed as JSON.")
@pass_app
def expand(ctx: Context, text: str, seed: int | None, as_json: bool) -> None:
    """Grow TEXT into a fuller prompt with a small local text model (downloaded on first use, its size told first)."""
    from dreamtray.engine.client import EngineError
    from dreamtray.prompt_expansion import expand as expand_prompt

    if not text.strip():
        raise click.BadParameter("the text is empty: write a few words to expand", param_hint="TEXT")
    try:
        grown = expand_prompt(ctx.app, text, seed)
    except EngineError as exc:
        raise click.ClickException(str(exc)) from None
    for note in grown.notes:
        click.echo(note, err=True)
    if as_json:
        fields = {"words": grown.words, "expansion": grown.expansion, "seed": grown.seed, "seconds": grown.seconds}
        click.echo(json.dumps(fields, indent=2))
        return
    click.echo(grown.expansion)
    click.echo(f"(seed {grown.seed}, {grown.seconds:.2f} s; `generate --expand --seed {grown.seed}` uses it)", err=True)


COMMANDS: list[click.Command] = [expand]
