"""Plugins that misbehave without raising (sys.exit at import or in a hook, registrations and returns of the
wrong kind, a slow image_generated hook) are contained, named and reported; the host goes on. Real plugin
distributions, pip-installed into a temporary site folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_env import DreamtrayHome

from dreamtray import generation, plugins
from dreamtray.app import App
from dreamtray.plugins import PluginHost
from dreamtray.request import Request


@pytest.fixture(scope="module")
def home(tmp_path_factory, site):
    root = tmp_path_factory.mktemp("hostile-home")
    env = DreamtrayHome.create(
        root,
        plugins="hello,hostile_exit,hostile_hooks",
        PYTHONPATH=str(site),
        HELLO_LOG=str(root / "hello.log"),
        HOSTILE_LOG=str(root / "hostile.log"),
        HOSTILE_RELEASE=str(root / "release"),
    )
    (root / "release").touch()  # the CLI runs do not wait on the slow hook
    yield env
    env.stop_engine()


def test_a_plugin_calling_sys_exit_at_import_does_not_end_the_commands(home):
    listing = home.run("plugins", "--json")
    assert listing.returncode == 0, listing.stderr
    records = {record["name"]: record for record in json.loads(listing.stdout)}
    assert records["hostile_exit"]["status"] == "failed to load"
    assert "it called sys.exit(3)" in records["hostile_exit"]["errors"][0]
    assert records["hello"]["status"] == "ok"
    helped = home.run("--help")
    assert helped.returncode == 0 and "generate" in helped.stdout and "hello" in helped.stdout
    made = home.run("generate", "a fox", "--size", "64x64", "--steps", "1", "--action", "fine")
    assert made.returncode == 0 and "Fine ran." in made.stderr and "Traceback" not in made.stderr


def test_registrations_of_the_wrong_kind_are_named_and_left_out(home):
    records = {record["name"]: record for record in json.loads(home.run("plugins", "--json", check=True).stdout)}
    errors = records["hostile_hooks"]["errors"]
    assert records["hostile_hooks"]["status"] == "errors"
    assert any("register_actions gave 'not an action': not a dreamtray.api.Action; left out" in e for e in errors)
    assert any("register_engines gave 'an engine without a factory'" in e for e in errors)
    text = home.run("plugins", check=True).stdout
    assert "hostile_hooks 0.0.1  [errors]" in text and "not a dreamtray.api.Action" in text


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("dict", "prepare_request returned a dict, not a Request; its change was left out"),
        ("str", "prepare_request returned a str, not a Request; its change was left out"),
        ("invalid", "prepare_request returned an invalid request (width: Input should be greater than or equal"),
        ("exit", "raised in prepare_request: it called sys.exit(4)"),
    ],
)
def test_prepare_request_returning_the_wrong_thing_is_named(home, kind, message):
    env = DreamtrayHome(home.root, {**home.env, "HOSTILE_PREPARE": kind})
    made = env.run("generate", "a fox", "--size", "64x64", "--steps", "1", "--json")
    assert made.returncode == 0, made.stderr
    assert f"plugin hostile_hooks {message}" in made.stderr and "Traceback" not in made.stderr
    request = json.loads(made.stdout)["request"]
    assert request["prompt"] == "a fox, hello" and request["width"] == 64, "hello's change stays, the bad one not"
    listed = {r["name"]: r for r in json.loads(env.run("plugins", "--json", check=True).stdout)}
    assert any(message in error for error in listed["hostile_hooks"]["errors"])


def test_a_slow_image_hook_does_not_hold_up_the_next_image(site, engine, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("HOSTILE_LOG", str(tmp_path / "hostile.log"))
    monkeypatch.setenv("HOSTILE_RELEASE", str(tmp_path / "release"))
    monkeypatch.setattr(plugins, "SLOW_HOOK_SECONDS", 1.0)
    config = tmp_path / "config.toml"
    config.write_text(f'model = "tiny"\ngallery = "{tmp_path / "gallery"}"\n')
    app = App(config_path=config)
    app.__dict__["plugins"] = PluginHost(only=["hostile_hooks"])
    app.__dict__["engine"] = engine
    log = Path(tmp_path / "hostile.log")
    try:
        first = generation.generate(app, Request(prompt="first", seed=1, width=64, height=64, steps=1))
        second = generation.generate(app, Request(prompt="second", seed=2, width=64, height=64, steps=1))
        assert second.paths[0].exists()
        assert f"end {first.paths[0]}" not in log.read_text(), "the first image's hook was still running"
        app.plugins.wait_later(timeout=2.0)
        errors = app.plugins.records["hostile_hooks"].errors
        assert any("image_generated ran for over 1 s; later images did not wait for it" in e for e in errors)
    finally:
        (tmp_path / "release").touch()
        app.plugins.wait_later(timeout=10.0)
    assert f"end {first.paths[0]}" in log.read_text() and f"end {second.paths[0]}" in log.read_text()


def test_a_menu_item_of_the_wrong_kind_is_named_and_left_out(site, xsession, user_dirs, monkeypatch):
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("DREAMTRAY_PLUGINS", "hostile_hooks")
    monkeypatch.setenv("PYSTRAY_BACKEND", "gtk")
    from dreamtray.desktop.menu import build_menu
    from dreamtray.desktop.tray import TrayHost

    host = TrayHost(App())
    try:
        texts = [item.text for item in build_menu(host).items]
    finally:
        host.queue.close()
    assert "Hostile but fine" in texts and "not a menu item" not in texts
    errors = host.app.plugins.records["hostile_hooks"].errors
    assert any("tray_menu_items gave 'not a menu item': not a dreamtray.api.MenuItem; left out" in e for e in errors)


@pytest.mark.parametrize(
    ("hook", "command"),
    [
        ("prepare_request", ["generate", "a fox", "--size", "64x64", "--steps", "1"]),
        ("register_actions", ["generate", "a fox", "--size", "64x64", "--steps", "1", "--action", "fine"]),
        ("register_engines", ["plugins"]),
        ("register_commands", ["plugins"]),
        ("tray_menu_items", ["plugins"]),
        ("register_styles", ["styles"]),
    ],
)
def test_a_keyboard_interrupt_in_a_hook_cancels_naming_the_plugin(home, hook, command):
    env = DreamtrayHome(home.root, {**home.env, "HOSTILE_INTERRUPT": hook})
    result = env.run(*command)
    assert result.returncode == 130, result.stderr
    assert f"Cancelled while plugin hostile_hooks ran ({hook})." in result.stderr
    assert "Traceback" not in result.stderr


def test_a_keyboard_interrupt_at_import_cancels_naming_the_plugin(home):
    env = DreamtrayHome(home.root, {**home.env, "DREAMTRAY_PLUGINS": "hello,hostile_interrupt"})
    before = set(env.gallery.glob("*.png"))
    result = env.run("generate", "a fox", "--size", "64x64", "--steps", "1")
    assert result.returncode == 130, result.stderr
    assert "Cancelled while plugin hostile_interrupt ran (while it was loading)." in result.stderr
    assert "Traceback" not in result.stderr and set(env.gallery.glob("*.png")) == before


def test_a_keyboard_interrupt_in_image_generated_is_named_and_the_image_kept(home):
    env = DreamtrayHome(home.root, {**home.env, "HOSTILE_INTERRUPT": "image_generated"})
    result = env.run("generate", "a fox", "--size", "64x64", "--steps", "1", "--json")
    assert result.returncode == 0, result.stderr
    assert "plugin hostile_hooks raised in image_generated: KeyboardInterrupt" in result.stderr
    assert "Traceback" not in result.stderr and Path(json.loads(result.stdout)["images"][0]).exists()


def test_a_keyboard_interrupt_off_the_main_thread_is_a_contained_failure(site, monkeypatch):
    """The tray runs jobs on a thread: there, a plugin's KeyboardInterrupt is its failure, not a cancel."""
    import threading

    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("HOSTILE_INTERRUPT", "prepare_request")
    host = PluginHost(only=["hostile_hooks"])
    given = Request(prompt="a fox")
    prepared = []
    thread = threading.Thread(target=lambda: prepared.append(host.prepare_request(given)))
    thread.start()
    thread.join(30)
    assert prepared == [given]
    assert host.records["hostile_hooks"].errors == [
        "raised in prepare_request: KeyboardInterrupt (Ctrl+C, or the plugin raised it)"
    ]


def test_a_request_changed_in_place_is_named_and_left_out(home):
    env = DreamtrayHome(home.root, {**home.env, "HOSTILE_PREPARE": "mutate"})
    made = env.run("generate", "a fox", "--size", "64x64", "--steps", "1", "--json")
    assert made.returncode == 0, made.stderr
    assert (
        "plugin hostile_hooks prepare_request changed the request in place into an invalid one (width:" in made.stderr
    )
    assert json.loads(made.stdout)["request"]["width"] == 64


def test_an_engine_lacking_members_is_named_with_its_plugin_never_a_traceback(home, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('model = "tiny"\n[engine]\nbackend = "lacking"\n')
    env = DreamtrayHome(home.root, {**home.env, "DREAMTRAY_CONFIG": str(config)})
    made = env.run("generate", "a fox", "--size", "64x64", "--steps", "1")
    assert made.returncode == 1 and "Traceback" not in made.stderr
    assert "The lacking engine (plugin hostile_hooks) lacks models, close (the Engine protocol" in made.stderr
