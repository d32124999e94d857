"""Command line for the tray: `dreamtray run` starts it, `dreamtray trigger ACTION` sends it an action."""

from __future__ import annotations

import json
import logging
import re
import sys

import click

from dreamtray.cli.context import Context, pass_app
from dreamtray.cli.terminal import printable

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
    from dreamtray.desktop.control import AlreadyRunning, ControlError
    from dreamtray.desktop.tray import TrayUnavailable, run_tray

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.DEBUG if verbose else logging.WARNING)
    app = ctx.app
    app.exit_after_idle = 0  # the engine lives as long as the tray, which stops it on quit
    try:
        run_tray(app)
    except (AlreadyRunning, ControlError, TrayUnavailable) as exc:
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
    from dreamtray.desktop.control import ControlError, send

    message: dict[str, object] = {"action": action, "wait": wait, **_arguments(action, words)}
    if prompt is not None:
        message["prompt"] = prompt
    if style is not None:
        message["style"] = style
    try:
        reply = send(message, timeout=3600 if wait else 10)
    except ControlError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json or action == "status":
        click.echo(json.dumps(reply, indent=2))  # ASCII: every control character and bidi mark as \u escape
    else:  # prompts from the selection may carry terminal escapes: shown, never sent raw
        click.echo(printable(str(reply.get("message", ""))), err=not reply.get("ok"))
        for image in reply.get("images", []):
            click.echo(printable(str(image), one_line=True))
    if not reply.get("ok"):
        sys.exit(1)


def _arguments(action: str, words: tuple[str, ...]) -> dict[str, object]:
    """The message's extra fields for the actions that take words after ACTION."""
    if action == "menu":
        return {"path": list(words)}
    if action == "cancel":
        if len(words) != 1 or not _QUEUE_NUMBER.fullmatch(words[0]):
            raise click.UsageError("cancel takes the number of one image of the queue: `dreamtray trigger cancel 2`.")
        return {"number": int(words[0].lstrip("#"))}
    if words:
        shown = printable(" ".join(words)[:200], one_line=True)
        raise click.UsageError(f"{printable(action[:100], one_line=True)} takes nothing after it (got '{shown}').")
    return {}


_QUEUE_NUMBER = re.compile(r"#?[0-9]{1,9}")
"""An image's number in the queue: ASCII digits only (int() also takes '²' via isdigit, and other scripts')."""

COMMANDS: list[click.Command] = [run, trigger]
