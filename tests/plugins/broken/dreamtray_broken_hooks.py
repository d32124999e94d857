"""Raises in every hook it implements."""

import dreamtray


def _fail(hook):
    raise RuntimeError(f"boom in {hook}")


@dreamtray.hookimpl
def register_actions(register):
    register(dreamtray.Action(name="half", label="Half", run=lambda image: None))
    _fail("register_actions")


@dreamtray.hookimpl
def register_styles(register):
    _fail("register_styles")


@dreamtray.hookimpl
def register_engines(register):
    _fail("register_engines")


@dreamtray.hookimpl
def prepare_request(request):
    _fail("prepare_request")


@dreamtray.hookimpl
def image_generated(image, request, path):
    _fail("image_generated")


@dreamtray.hookimpl
def tray_menu_items(host):
    _fail("tray_menu_items")


@dreamtray.hookimpl
def register_commands(cli):
    _fail("register_commands")
