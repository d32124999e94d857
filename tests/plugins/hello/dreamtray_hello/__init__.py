"""A small third-party plugin: a prompt suffix, an action that records the image, a command and a log."""

import json
import os

import click

from dreamtray.api import Action, MenuItem
from dreamtray.hookspecs import hookimpl


def _log(entry: dict) -> None:
    with open(os.environ["HELLO_LOG"], "a") as log:
        log.write(json.dumps(entry) + "\n")


@hookimpl
def prepare_request(request):
    return request.model_copy(update={"prompt": request.prompt + ", hello"})


@hookimpl
def register_actions(register):
    def record(image):
        _log({"action": "record", "path": str(image.path), "seed": image.request.seed})
        return "Recorded by hello."

    register(Action(name="record", label="Record", run=record))


@hookimpl
def image_generated(image, request, path):
    _log({"hook": "image_generated", "size": list(image.size), "prompt": request.prompt, "path": str(path)})


@hookimpl
def register_commands(cli):
    @cli.command()
    @click.argument("name")
    def hello(name):
        """Say hello."""
        click.echo(f"Hello, {name}!")


@hookimpl
def tray_menu_items(host):
    return [MenuItem("Say hello", lambda host: _log({"menu": "hello"}))]


def _explode(image):
    raise RuntimeError("the printer is on fire")


@hookimpl(specname="register_actions")
def register_exploding_action(register):
    register(Action(name="explode", label="Explode", run=_explode))
