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
text (or opens the prompt box when nothing is selected); or ACTION-again (a new image from the last prompt,
e.g. wallpaper-again); or one of:
  prompt          open the prompt box
  queue           list the images being made and waiting, by number
  cancel N        cancel image N of the queue (a waiting one leaves it, the running one stops)
  menu [ITEM...]  list the tray menu, or pick the item these labels lead to (a label's start is enough)
  unload (free the model's memory), pause, resume (the hotkeys), status, quit."""


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
@click.argument("words", nargs=-1)
@click.option("--prompt", help="Use this text instead of the selection.")
@click.option("--style", help="Use this style (comma-separated names; '' for none) instead of the config's.")
@click.option("--wait", is_flag=True, help="Wait until the image is made, and tell how it went.")
@click.option("--json", "as_json", is_flag=True, help="Print the tray's answer as JSON.")
def trigger(
    action: str, words: tuple[str, ...], prompt: str | None, style: str | None, wait: bool, as_json: bool
) -> None:
    from dreamtray.desktop.control import NotRunning, send

    message: dict[str, object] = {"action": action, "wait": wait, **_arguments(action, words)}
    if prompt is not None:
        message["prompt"] = prompt
    if style is not None:
        message["style"] = style
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


def _arguments(action: str, words: tuple[str, ...]) -> dict[str, object]:
    """The message's extra fields for the actions that take words after ACTION."""
    if action == "menu":
        return {"path": list(words)}
    if action == "cancel":
        if len(words) != 1 or not words[0].lstrip("#").isdigit():
            raise click.UsageError("cancel takes the number of one image of the queue: `dreamtray trigger cancel 2`.")
        return {"number": int(words[0].lstrip("#"))}
    if words:
        raise click.UsageError(f"{action} takes nothing after it (got {' '.join(words)!r}).")
    return {}


COMMANDS: list[click.Command] = [run, trigger]
