"""Command line for the tray: `dreamtray run` starts it, `dreamtray trigger ACTION` sends it an action."""

from __future__ import annotations

import json
import logging
import sys

import click

from dreamtray.cli.context import Context, pass_app

TRIGGER_HELP = """Send ACTION to the running tray, as a hotkey would: bind this to a custom shortcut on desktops where
global hotkeys cannot work (Wayland).

\b
ACTION is an action name (clipboard, wallpaper, or one a plugin adds), which makes an image from the selected
text; or ACTION-again (a new image from the last prompt, e.g. wallpaper-again); or one of: unload (free the
model's memory), pause, resume (the hotkeys), status, quit."""


@click.command("run")
@click.option("--verbose", "-v", is_flag=True, help="Log more (to stderr).")
@pass_app
def run(ctx: Context, verbose: bool) -> None:
    """Start the tray: icon, menu, global hotkeys, and the engine in the background."""
    from dreamtray.desktop.control import AlreadyRunning
    from dreamtray.desktop.tray import TrayUnavailable, run_tray

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.DEBUG if verbose else logging.WARNING)
    app = ctx.app
    app.exit_after_idle = 0  # the engine lives as long as the tray, which stops it on quit
    try:
        run_tray(app)
    except (AlreadyRunning, TrayUnavailable) as exc:
        raise click.ClickException(str(exc)) from None


@click.command("trigger", help=TRIGGER_HELP)
@click.argument("action")
@click.option("--prompt", help="Use this text instead of the selection.")
@click.option("--wait", is_flag=True, help="Wait until the image is made, and tell how it went.")
@click.option("--json", "as_json", is_flag=True, help="Print the tray's answer as JSON.")
def trigger(action: str, prompt: str | None, wait: bool, as_json: bool) -> None:
    from dreamtray.desktop.control import NotRunning, send

    message: dict[str, object] = {"action": action, "wait": wait}
    if prompt is not None:
        message["prompt"] = prompt
    try:
        reply = send(message, timeout=3600 if wait else 10)
    except NotRunning as exc:
        raise click.ClickException(str(exc)) from None
    if as_json or action == "status":
        click.echo(json.dumps(reply, indent=2))
    else:
        click.echo(reply.get("message", ""), err=not reply.get("ok"))
        for image in reply.get("images", []):
            click.echo(image)
    if not reply.get("ok"):
        sys.exit(1)


COMMANDS: list[click.Command] = [run, trigger]
