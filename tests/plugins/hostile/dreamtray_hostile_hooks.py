"""Misbehaves without raising: wrong registrations, wrong returns (chosen by HOSTILE_PREPARE), a slow hook; and,
when HOSTILE_INTERRUPT names a hook, raises KeyboardInterrupt in it."""

import os
import time
from pathlib import Path

import dreamtray


def _interrupt(hook):
    if os.environ.get("HOSTILE_INTERRUPT") == hook:
        raise KeyboardInterrupt


@dreamtray.hookimpl
def register_actions(register):
    _interrupt("register_actions")
    register("not an action")
    register(dreamtray.Action(name="fine", label="Fine", run=lambda image: "Fine ran."))


@dreamtray.hookimpl
def register_engines(register):
    _interrupt("register_engines")
    register("an engine without a factory")
    register("lacking", lambda settings: Lacking())


class Lacking:
    """An engine without models() and close(), and without a name."""

    def submit(self, request): ...

    def health(self): ...

    def unload(self): ...


@dreamtray.hookimpl
def prepare_request(request):
    _interrupt("prepare_request")
    kind = os.environ.get("HOSTILE_PREPARE", "")
    if kind == "dict":
        return {"prompt": "a dict"}
    if kind == "str":
        return "a string"
    if kind == "invalid":
        return request.model_copy(update={"width": -5})
    if kind == "exit":
        raise SystemExit(4)
    if kind == "mutate":  # in place, around the frozen model's guard
        object.__setattr__(request, "width", 5)
    return None


@dreamtray.hookimpl
def image_generated(image, request, path):
    """Log the start, then wait (up to a minute) for the release file before logging the end."""
    _interrupt("image_generated")
    log = Path(os.environ["HOSTILE_LOG"])
    with log.open("a") as file:
        file.write(f"start {path}\n")
    release = Path(os.environ["HOSTILE_RELEASE"])
    deadline = time.monotonic() + 60
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    with log.open("a") as file:
        file.write(f"end {path}\n")


@dreamtray.hookimpl
def tray_menu_items(host):
    _interrupt("tray_menu_items")
    return ["not a menu item", dreamtray.MenuItem("Hostile but fine", lambda host: None)]


@dreamtray.hookimpl
def register_styles(register):
    _interrupt("register_styles")


@dreamtray.hookimpl
def register_commands(cli):
    _interrupt("register_commands")
