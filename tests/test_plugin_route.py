"""One route for every image: a plugin with all seven hooks (tests/plugins/hello, written from docs/plugins.md)
sees each image of `generate`, `generate --from`, refine and the tray's tasks exactly once: `prepare_request`
once per request, `image_generated` once per saved image; `--from` applies the plugin's change once.

Other entry points add their cases here with `hello_home` (the command line) or `hello_app` (in process)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_env import DreamtrayHome
from PIL import Image

from dreamtray import generation, route
from dreamtray.app import App
from dreamtray.images.metadata import read_metadata
from dreamtray.plugins import PluginHost


@pytest.fixture(scope="module")
def hello_home(tmp_path_factory, site):
    root = tmp_path_factory.mktemp("route-home")
    env = DreamtrayHome.create(root, plugins="hello", PYTHONPATH=str(site), HELLO_LOG=str(root / "hello.log"))
    yield env
    env.stop_engine()


@pytest.fixture
def hello_app(site, engine, tmp_path, monkeypatch):
    """An App with only the hello plugin, this test's gallery and the shared tiny engine."""
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("HELLO_LOG", str(tmp_path / "hello.log"))
    config = tmp_path / "config.toml"
    config.write_text(f'model = "tiny"\ngallery = "{tmp_path / "gallery"}"\ndefault_action = "record"\n')
    app = App(config_path=config)
    app.__dict__["plugins"] = PluginHost(only=["hello"])
    app.__dict__["engine"] = engine
    yield app
    app.plugins.wait_later(timeout=10.0)


def hook_calls(log: Path, hook: str) -> list[dict]:
    entries = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return [entry for entry in entries if entry.get("hook") == hook]


def new_calls(log: Path, hook: str, before: int) -> list[dict]:
    return hook_calls(log, hook)[before:]


def pixels(path: Path) -> bytes:
    with Image.open(path) as image:
        return image.convert("RGB").tobytes()


def test_generate_and_from_pass_each_hook_once_and_from_applies_the_change_once(hello_home):
    log = Path(hello_home.env["HELLO_LOG"])
    made = hello_home.run("generate", "a fox", "--size", "64x64", "--steps", "1", "--seed", "5", "--json", check=True)
    [first] = map(Path, json.loads(made.stdout)["images"])
    assert [call["prompt"] for call in hook_calls(log, "prepare_request")] == ["a fox"]
    assert [call["path"] for call in hook_calls(log, "image_generated")] == [str(first)]
    assert read_metadata(first).parameters.prompt == "a fox, hello"

    again = hello_home.run("generate", "--from", str(first), "--json", check=True)
    [second] = map(Path, json.loads(again.stdout)["images"])
    assert [call["prompt"] for call in new_calls(log, "prepare_request", 1)] == ["a fox"], "the user's prompt again"
    assert [call["path"] for call in new_calls(log, "image_generated", 1)] == [str(second)]
    assert read_metadata(second).parameters.prompt == "a fox, hello", "the suffix is not doubled"
    assert pixels(second) == pixels(first)


def test_generate_names_the_model_really_used_when_the_user_named_none(hello_home):
    made = hello_home.run("generate", "a hen", "--size", "64x64", "--steps", "1", "--json", check=True)
    [path] = map(Path, json.loads(made.stdout)["images"])
    assert read_metadata(path).request.model == "tiny"


def test_the_trays_task_and_refine_pass_each_hook_once(hello_app, tmp_path):
    log = tmp_path / "hello.log"
    task = route.Task("record", "a cat", chosen=route.chosen_action(hello_app, "record"))
    report = route.run_task(hello_app, task)
    assert report.ok, report
    hello_app.plugins.wait_later()
    assert [call["prompt"] for call in hook_calls(log, "prepare_request")] == ["a cat"]
    assert [call["path"] for call in hook_calls(log, "image_generated")] == [str(report.image)]

    refined = route.run_task(hello_app, route.Task(route.REFINE_LAST, "in the snow"))
    assert refined.ok, refined
    hello_app.plugins.wait_later()
    assert refined.image.name.endswith("-refined.png") and refined.image.parent == report.image.parent
    assert [call["prompt"] for call in new_calls(log, "prepare_request", 1)] == ["in the snow, a cat"]
    assert [call["path"] for call in new_calls(log, "image_generated", 1)] == [str(refined.image)]
    assert "Recorded by hello." in refined.body, "the default action got the refined image"
    assert read_metadata(refined.image).parameters.prompt == "in the snow, a cat, hello", "the suffix once"


def test_refine_on_the_route_keeps_styles_and_lineage(hello_app, tmp_path):
    log = tmp_path / "hello.log"
    [original] = generation.generate(hello_app, route.request_for(hello_app, prompt="a boat", seed=2, steps=1)).paths
    outcome = generation.refine(hello_app, original, "at night", styles=("Hello warm",), seed=3, steps=1)
    hello_app.plugins.wait_later()
    [path] = outcome.paths
    metadata = read_metadata(path)
    assert metadata.parameters.prompt == "at night, a boat, hello, warm light"
    assert metadata.request.styles == ("Hello warm",)
    assert original.name in json.dumps(metadata.texts), "the refined image names its original"
    assert [call["path"] for call in hook_calls(log, "image_generated")] == [str(original), str(path)]


def test_the_docs_engine_back_end_is_the_one_tested_and_makes_images(hello_home, tmp_path):
    """docs/plugins.md's walk-through shows the hello engine whole; that very code makes, saves and reproduces."""
    import re

    from cli_env import TEST_PLUGINS

    docs = (Path(__file__).parents[1] / "docs" / "plugins.md").read_text()
    shown = re.search(r"## Walk-through: an engine back end.*?```python\n(.*?)```", docs, re.S)[1]
    source = (TEST_PLUGINS / "hello" / "dreamtray_hello" / "engine.py").read_text()
    assert source.endswith(shown) and source.count('"""') - shown.count('"""') == 2, "only the module docstring"

    home = DreamtrayHome(tmp_path, dict(hello_home.env))
    for name in ("CONFIG", "DATA", "CACHE", "STATE"):
        home.env[f"XDG_{name}_HOME"] = str(tmp_path / name.lower())
    home.env["XDG_PICTURES_DIR"] = str(tmp_path / "pictures")
    config = tmp_path / "config" / "dreamtray" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text('[engine]\nbackend = "hello"\n[engine.backends.hello]\nmodel = "hello-colours"\nnative = 64\n')
    made = home.run("generate", "a fox", "--seed", "9", "--json", check=True)
    [path] = map(Path, json.loads(made.stdout)["images"])
    metadata = read_metadata(path)
    assert metadata.request.model == "hello-colours" and metadata.parameters.model == "hello-colours"
    assert (metadata.width, metadata.height) == (64, 64) and metadata.parameters.prompt == "a fox, hello"
    again = home.run("generate", "--from", str(path), "--json", check=True)
    assert pixels(Path(json.loads(again.stdout)["images"][0])) == pixels(path)


def test_an_actions_extra_image_passes_the_hook_once_and_reproduces_without_a_doubled_change(hello_app, tmp_path):
    from dreamtray.api import Action
    from dreamtray.hookspecs import hookimpl
    from dreamtray.images.metadata import reproduce_image

    class Twice:
        @staticmethod
        @hookimpl
        def register_actions(register):
            def twice(image):
                extra = image.make_another(image.request.model_copy(update={"seed": 77}))
                return f"Also {extra.path.name}."

            register(Action(name="twice", label="Twice", run=twice))

    hello_app.plugins.register(Twice, name="twice")
    log = tmp_path / "hello.log"
    request = route.request_for(hello_app, prompt="a kite", seed=5, steps=1)
    outcome = generation.generate(hello_app, request, hello_app.plugins.action("twice"))
    hello_app.plugins.wait_later()
    [extra] = outcome.extras
    assert [call["prompt"] for call in hook_calls(log, "prepare_request")] == ["a kite"], "not again for the extra"
    assert sorted(call["path"] for call in hook_calls(log, "image_generated")) == sorted(
        [str(outcome.paths[0]), str(extra.path)]
    )
    again = reproduce_image(extra.path).request
    assert (again.prompt, again.seed) == ("a kite", 77), "the user's prompt: the plugin's change applies once"


def test_the_refine_and_series_commands_pass_each_hook_once(hello_home):
    log = Path(hello_home.env["HELLO_LOG"])
    made = hello_home.run("generate", "a fox", "--size", "64x64", "--steps", "1", "--seed", "5", "--json", check=True)
    [first] = map(Path, json.loads(made.stdout)["images"])
    asked, heard = len(hook_calls(log, "prepare_request")), len(hook_calls(log, "image_generated"))

    refined = hello_home.run("refine", str(first), "in the snow", "--steps", "1", check=True)
    target = Path(refined.stdout.strip().splitlines()[-1])
    assert [call["prompt"] for call in new_calls(log, "prepare_request", asked)] == ["in the snow, a fox"]
    assert [call["path"] for call in new_calls(log, "image_generated", heard)] == [str(target)]
    assert read_metadata(target).parameters.prompt == "in the snow, a fox, hello", "the suffix once"

    asked, heard = len(hook_calls(log, "prepare_request")), len(hook_calls(log, "image_generated"))
    made = hello_home.run(
        "series", "a hen", "--count", "2", "--size", "64x64", "--steps", "1", "--seed", "9", check=True
    )
    folder = Path(made.stdout.strip().splitlines()[-1]).parent
    images = sorted(folder.glob("0*.png"))
    assert [path.name for path in images] == ["01-a-hen.png", "02-a-hen.png"]
    assert [call["prompt"] for call in new_calls(log, "prepare_request", asked)] == ["a hen", "a hen"]
    assert sorted(call["path"] for call in new_calls(log, "image_generated", heard)) == [str(p) for p in images]
    assert all(read_metadata(path).parameters.prompt == "a hen, hello" for path in images)
