"""A third-party plugin with all seven hooks, written from docs/plugins.md: a prompt suffix, an action that records
the image, a style pack, an engine back end, a command, a menu item and a log of every image it hears about.

Every call of `prepare_request` and `image_generated` is logged (JSON lines in $HELLO_LOG), so tests can check
that each entry point's image passes each hook exactly once."""

import json
import os

import click

from dreamtray.api import Action, MenuItem, load_package_packs
from dreamtray.hookspecs import hookimpl
from dreamtray_hello.engine import HelloEngine


def _log(entry: dict) -> None:
    with open(os.environ["HELLO_LOG"], "a") as log:
        log.write(json.dumps(entry) + "\n")


@hookimpl
def prepare_request(request):
    _log({"hook": "prepare_request", "prompt": request.prompt})
    return request.model_copy(update={"prompt": request.prompt + ", hello"})


@hookimpl
def register_styles(register):
    for style in load_package_packs(__name__):
        register(style)


@hookimpl
def register_engines(register):
    register("hello", HelloEngine)


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
