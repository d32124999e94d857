"""`dreamtray install` and `uninstall`: plugins (or any package) in dreamtray's own environment, with pip."""

from __future__ import annotations

import subprocess
import sys

import click


def _pip(*args: str) -> None:
    """Run pip in dreamtray's own environment."""
    result = subprocess.run([sys.executable, "-m", "pip", *args])
    if result.returncode:
        raise click.ClickException(f"pip {args[0]} failed (exit code {result.returncode}).")


@click.command()
@click.argument("packages", nargs=-1, required=True)
@click.option("--upgrade", "-U", is_flag=True)
def install(packages: tuple[str, ...], upgrade: bool) -> None:
    """Install plugins (or any package) into dreamtray's environment with pip."""
    _pip("install", *(["--upgrade"] if upgrade else []), *packages)


@click.command()
@click.argument("packages", nargs=-1, required=True)
def uninstall(packages: tuple[str, ...]) -> None:
    """Remove plugins from dreamtray's environment with pip."""
    _pip("uninstall", "--yes", *packages)


COMMANDS: list[click.Command] = [install, uninstall]
