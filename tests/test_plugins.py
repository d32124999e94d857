"""Plugins as third parties ship them: real distributions installed with pip and found by entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cli_env import DreamtrayHome, install_test_plugins

from dreamtray.images.metadata import read_metadata


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    root = tmp_path_factory.mktemp("plugin-home")
    site = install_test_plugins(root / "site")
    env = DreamtrayHome.create(
        root, plugins="hello,broken_import,broken_hooks", PYTHONPATH=str(site), HELLO_LOG=str(root / "hello.log")
    )
    yield env
    env.stop_engine()


def log_entries(home) -> list[dict]:
    path = Path(home.env["HELLO_LOG"])
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_plugins_lists_each_with_version_hooks_and_status(home):
    result = home.run("plugins", "--json", check=True)
    records = {r["name"]: r for r in json.loads(result.stdout)}
    hello = records["hello"]
    assert (hello["version"], hello["distribution"], hello["status"]) == ("1.2.3", "dreamtray-hello", "ok")
    assert {"prepare_request", "register_actions", "image_generated", "register_commands", "tray_menu_items"} <= set(
        hello["hooks"]
    )
    assert records["broken_import"]["status"] == "failed to load"
    assert "this plugin is broken at import" in records["broken_import"]["errors"][0]
    broken = records["broken_hooks"]
    assert broken["status"] == "errors"
    assert any("boom in register_commands" in e for e in broken["errors"])
    assert any("boom in register_actions" in e for e in broken["errors"])
    text = home.run("plugins", check=True).stdout
    assert "hello 1.2.3  [ok]" in text and "broken_import" in text and "failed to load" in text


def test_a_plugin_command_works_next_to_broken_plugins(home):
    result = home.run("hello", "World", check=True)
    assert result.stdout.strip() == "Hello, World!"
    assert "broken" in result.stderr, "the failures are reported in the log"


def test_hooks_run_in_order_and_the_action_gets_the_saved_image(home):
    result = home.run("generate", "a fox", "--size", "64x64", "--seed", "3", "--action", "record", "--json", check=True)
    outcome = json.loads(result.stdout)
    path = Path(outcome["images"][0])
    assert path.parent == home.gallery and path.exists()
    assert read_metadata(path).parameters.prompt == "a fox, hello", "prepare_request changed the prompt"
    entries = log_entries(home)
    assert {"action": "record", "path": str(path), "seed": 3} in entries
    assert {"hook": "image_generated", "size": [64, 64], "prompt": "a fox, hello", "path": str(path)} in entries
    assert "Recorded by hello." in result.stderr


def test_a_failing_action_never_loses_the_image(home):
    before = set(home.gallery.glob("*.png"))
    result = home.run("generate", "a fox", "--size", "64x64", "--seed", "4", "--action", "explode")
    assert result.returncode == 3
    new = set(home.gallery.glob("*.png")) - before
    assert len(new) == 1
    assert "the printer is on fire" in result.stderr and str(new.pop()) in result.stderr


def test_a_plugin_that_raised_half_way_registers_nothing(home):
    result = home.run("generate", "a fox", "--size", "64x64", "--action", "half")
    assert result.returncode == 1
    assert "No action called 'half'" in result.stderr and "record" in result.stderr


def test_trace_switch_logs_every_hook_call(home):
    env = dict(home.env, DREAMTRAY_TRACE_HOOKS="1")
    result = subprocess.run(
        [sys.executable, "-m", "dreamtray", "hello", "you"], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0
    assert "[dreamtray hook] register_commands(cli) -> hello" in result.stderr
    assert "[dreamtray hook] register_commands raised" in result.stderr, "broken_hooks' failure shows in the trace"


def test_a_plugin_folder_loads_unpackaged_plugins_and_private_imports_are_named(home, tmp_path):
    folder = tmp_path / "dev-plugins"
    (folder / "sketch").mkdir(parents=True)
    (folder / "draft.py").write_text(
        "from dreamtray.hookspecs import hookimpl\n"
        "from dreamtray import config\n\n"
        "@hookimpl\n"
        "def prepare_request(request):\n"
        "    from dreamtray.generation import prepare\n"
        "    return request.model_copy(update={'prompt': request.prompt + ', drafted'})\n"
    )
    (folder / "sketch" / "__init__.py").write_text("from dreamtray.api import Action\nfrom .hooks import *  # noqa\n")
    (folder / "sketch" / "hooks.py").write_text(
        "from dreamtray.hookspecs import hookimpl\nfrom dreamtray.api import Action\n\n"
        "@hookimpl\ndef register_actions(register):\n"
        "    register(Action(name='sketch', label='Sketch', run=lambda image: 'Sketched.'))\n"
    )
    env = dict(home.env, DREAMTRAY_PLUGINS_DIR=str(folder))
    listing = subprocess.run(
        [sys.executable, "-m", "dreamtray", "plugins", "--json"], env=env, capture_output=True, text=True, timeout=120
    )
    assert listing.returncode == 0, listing.stderr
    records = {r["name"]: r for r in json.loads(listing.stdout)}
    assert records["draft"]["status"] == "ok" and records["draft"]["hooks"] == ["prepare_request"]
    assert records["draft"]["warnings"] == [
        "imports the private module dreamtray.config, which may change in any release; use dreamtray.api.read_config()",
        "imports the private module dreamtray.generation, which may change in any release; use "
        "dreamtray.api.command_host().generate(...) in a command, image.make_another(...) in an action",
    ]
    assert records["sketch"]["status"] == "ok" and records["sketch"]["warnings"] == []
    assert listing.stderr.count("dreamtray.config") == 0, "listed once, not logged as well"
    text = subprocess.run(
        [sys.executable, "-m", "dreamtray", "--plugins-dir", str(folder), "plugins"],
        env=home.env,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert text.count("warning: imports the private module dreamtray.config") == 1
    assert text.count("boom in register_actions") == 1, "each problem once"


def test_plugins_shows_a_failing_menu_hook_and_styles_name_a_pack_by_its_plugin(home):
    records = {r["name"]: r for r in json.loads(home.run("plugins", "--json", check=True).stdout)}
    assert "raised in tray_menu_items: RuntimeError: boom in tray_menu_items" in records["broken_hooks"]["errors"]
    listed = json.loads(home.run("styles", "--json", check=True).stdout)
    assert {"name": "Hello warm", "pack": "Hello", "source": "plugin:hello"} in listed
