"""`dreamtray wallpaper`: undo the last change, or make wallpapers on a schedule."""

from __future__ import annotations

from pathlib import Path

import click

from dreamtray.api import command_host

from .apply import undo
from .schedule import PromptCycle, ScheduleError, run_schedule
from .setters import WallpaperError


@click.command("wallpaper")
@click.option("--undo", "undo_last", is_flag=True, help="Bring back the wallpaper from before the last change.")
@click.option(
    "--schedule",
    "prompts_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Make wallpapers from the prompts in this file (one a line, # for comments), in turn.",
)
@click.option(
    "--every", "every_hours", type=click.FloatRange(min=0.01), help="With --schedule: a new wallpaper every HOURS."
)
@click.option(
    "--at-login", is_flag=True, help="With --schedule: one new wallpaper now, then exit (for startup applications)."
)
def wallpaper(undo_last: bool, prompts_file: Path | None, every_hours: float | None, at_login: bool) -> None:
    """Undo the last wallpaper change, or make new wallpapers from a list of prompts."""
    if undo_last:
        if prompts_file or every_hours or at_login:
            raise click.UsageError("--undo goes alone, without --schedule, --every or --at-login.")
        try:
            restored = undo()
        except WallpaperError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo("Wallpaper restored: " + ", ".join(str(placement.path) for placement in restored))
        return
    if prompts_file is None:
        raise click.UsageError("Say what to do: --undo, or --schedule PROMPTS_FILE with --every HOURS or --at-login.")
    if (every_hours is None) == (not at_login):
        raise click.UsageError("--schedule needs exactly one of --every HOURS and --at-login.")
    try:
        run_schedule(
            PromptCycle(prompts_file), command_host().generate, None if at_login else every_hours, report=click.echo
        )
    except ScheduleError as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        click.echo("Schedule stopped.")
