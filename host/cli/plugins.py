"""`dreamtray plugins`: the plugins dreamtray loads, their hooks and each problem they have."""

from __future__ import annotations

import json

import click

from dreamtray.cli.context import Context, pass_app
from dreamtray.cli.terminal import printable, printable_json


@click.command()
@click.option("--json", "as_json", is_flag=True)
@pass_app
def plugins(ctx: Context, as_json: bool) -> None:
    """List the installed plugins with their version, hooks and status (each problem once)."""
    import logging

    from dreamtray.engine.backends import engine_factories
    from dreamtray.request import Request

    logging.getLogger("dreamtray.plugins").setLevel(logging.ERROR)  # the problems are listed below, not logged too
    host = ctx.app.plugins
    host.load()
    # Run the registration hooks (commands are otherwise added lazily), prepare_request on a sample and the menu
    # items for an idle tray, so that a plugin that raises there, or registers or returns the wrong kind of thing,
    # shows it.
    host.actions()
    engine_factories(host)
    host.prepare_request(Request(prompt="a sample prompt"))
    host.menu_items(IdleTray())
    root = click.get_current_context().find_root()
    root.command.list_commands(root)
    records = [record.as_dict() for record in host.records.values()]
    if as_json:
        click.echo(printable_json(json.dumps(records, indent=2, ensure_ascii=False)))
        return
    for record in records:
        version = f" {record['version']}" if record["version"] else ""
        line = f"{record['name']}{version}  [{record['status']}]  hooks: {', '.join(record['hooks']) or '-'}"
        click.echo(printable(line, one_line=True))
        for error in record["errors"]:
            click.echo(printable(f"    {error}", one_line=True))
        for warning in record["warnings"]:
            click.echo(printable(f"    warning: {warning}", one_line=True))


class IdleTray:
    """The TrayHost that `dreamtray plugins` shows plugins' menu items to: an idle tray that queues nothing."""

    state = "idle"
    paused = False
    last_prompt: str | None = None

    def generate(self, prompt: str, action: str | None = None, origin: str = "plugin", wait: bool = False) -> dict:
        return {"ok": False, "message": "`dreamtray plugins` only lists the menu items; no tray is running."}


COMMANDS: list[click.Command] = [plugins]
