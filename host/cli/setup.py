"""Commands for setting dreamtray up on the desktop: start at login, the menu launcher, the desktop's needs.

`COMMANDS` joins the `dreamtray` command group. The installer scripts run the same commands as
`python -m dreamtray.cli.setup ...`, which loads no plugins (so a broken plugin cannot stop an uninstall).
"""

from __future__ import annotations

import click

from dreamtray.cli.terminal import echo
from dreamtray.desktop import autostart as login
from dreamtray.desktop import check as desktop_check
from dreamtray.desktop import launcher as menu


@click.group()
def autostart() -> None:
    """Start dreamtray when you log in: on, off or status."""


@autostart.command("on")
def autostart_on() -> None:
    """Start dreamtray at every login from now on."""
    try:
        where = login.enable()
    except OSError as problem:
        raise click.ClickException(f"could not switch start at login on: {problem}") from problem
    click.echo(f"dreamtray will start at login ({where}).")


@autostart.command("off")
def autostart_off() -> None:
    """Stop starting dreamtray at login."""
    try:
        removed = login.disable()
    except OSError as problem:
        raise click.ClickException(f"could not switch start at login off: {problem}") from problem
    click.echo("dreamtray will no longer start at login." if removed else "dreamtray was not set to start at login.")


@autostart.command("status")
def autostart_status() -> None:
    """Say whether dreamtray starts at login, and where that is recorded."""
    click.echo(f"on ({login.where()})" if login.is_enabled() else "off")


@click.group()
def launcher() -> None:
    """The launcher in the desktop's application menu: install or remove."""


@launcher.command("install")
def launcher_install() -> None:
    """Install (or refresh) the menu launcher and its icon for this user (and a start at login that is on)."""
    try:
        written = menu.install()
        if login.is_enabled():  # the start at login runs the same command: keep it current too
            login.enable()
    except OSError as problem:
        raise click.ClickException(f"could not install the launcher: {problem}") from problem
    click.echo(f"launcher installed: {written[0]}")


@launcher.command("remove")
def launcher_remove() -> None:
    """Remove the menu launcher and its icons."""
    removed = menu.remove()
    click.echo(f"launcher removed: {removed[0]}" if removed else "no launcher was installed.")


@click.command("desktop-check")
def desktop_check_command() -> None:
    """Check what the desktop must provide (clipboard tool, tray support, permissions), with fixes."""
    findings = desktop_check.check()
    for finding in findings:
        echo(finding.line())
    if not findings:
        click.echo("nothing extra is needed on this desktop.")


COMMANDS: list[click.Command] = [autostart, launcher, desktop_check_command]

setup_group = click.Group(
    "dreamtray-setup", commands=COMMANDS, help="Set dreamtray up on this desktop (used by the installer scripts)."
)

if __name__ == "__main__":
    setup_group()
