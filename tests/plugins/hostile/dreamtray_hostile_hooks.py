"""Misbehaves without raising: wrong registrations, wrong returns (chosen by HOSTILE_PREPARE), a slow hook."""

import os
import time
from pathlib import Path

import dreamtray


@dreamtray.hookimpl
def register_actions(register):
    register("not an action")
    register(dreamtray.Action(name="fine", label="Fine", run=lambda image: "Fine ran."))


@dreamtray.hookimpl
def register_engines(register):
    register("an engine without a factory")


@dreamtray.hookimpl
def prepare_request(request):
    kind = os.environ.get("HOSTILE_PREPARE", "")
    if kind == "dict":
        return {"prompt": "a dict"}
    if kind == "str":
        return "a string"
    if kind == "invalid":
        return request.model_copy(update={"width": -5})
    if kind == "exit":
        raise SystemExit(4)
    return None


@dreamtray.hookimpl
def image_generated(image, request, path):
    """Log the start, then wait (up to a minute) for the release file before logging the end."""
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
    return ["not a menu item", dreamtray.MenuItem("Hostile but fine", lambda host: None)]
