"""`dreamtray engine status|unload|stop`: the local engine, seen from outside."""

from __future__ import annotations

import json

import click

from dreamtray.cli.context import Context, pass_app


@click.group()
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
    from dreamtray.engine.client import EngineError

    try:
        now = ctx.app.local_engine.unload()
    except EngineError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo("Model unloaded; its memory is free." if now else "A job is running: the model is unloaded after it.")


@engine.command("stop")
@pass_app
def engine_stop(ctx: Context) -> None:
    """Stop the engine and its worker, a running job included (it is cancelled); says so if it cannot."""
    from dreamtray.engine.client import EngineError

    try:
        stopped = ctx.app.local_engine.stop()
    except EngineError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo("The engine is stopped." if stopped else "The engine was not running.")


COMMANDS: list[click.Command] = [engine]
