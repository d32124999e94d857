"""`series` and `refine` end to end on the tiny model: real diffusers in this process, behind the Engine interface."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner
from fixtures_engine import pixels
from PIL import Image

from dreamtray import generation
from dreamtray.app import App
from dreamtray.cli.context import Context
from dreamtray.cli.refine import COMMANDS as REFINE_COMMANDS
from dreamtray.cli.refine import refine
from dreamtray.cli.series import COMMANDS, series
from dreamtray.images.gallery import Gallery
from dreamtray.images.lineage import LINEAGE_KEY, image_texts
from dreamtray.images.metadata import PARAMETERS_KEY, REQUEST_KEY
from dreamtray.images.series import load_manifest
from dreamtray.request import Request, Result
from dreamtray.styles import Style, StyleRegistry

SMALL = ["--width", "64", "--height", "64", "--steps", "1"]


class FinishedJob:
    id = "in-process"

    def __init__(self, events: list[dict[str, Any]], result: Result):
        self._events, self._result = events, result

    def events(self) -> Iterator[dict[str, Any]]:
        yield from self._events

    def result(self) -> Result:
        return self._result

    def cancel(self) -> None:
        raise AssertionError("nothing cancels here")


class InProcessEngine:
    """The Engine interface over the engine's own Runner; requests and results cross JSON as over HTTP."""

    name = "in-process"

    def __init__(self, runner):
        self.runner = runner
        self.submitted: list[Request] = []
        self.events: list[dict[str, Any]] = []

    def submit(self, request: Request) -> FinishedJob:
        request = Request.model_validate_json(request.model_dump_json())
        self.submitted.append(request)
        events: list[dict[str, Any]] = []
        result = self.runner.generate(request, emit=events.append)
        self.events += events
        return FinishedJob(events, Result.model_validate_json(result.model_dump_json()))


@pytest.fixture
def engine(runner, tiny_folder):
    return InProcessEngine(runner)


def in_process_app(engine, folder, registry: StyleRegistry | None = None) -> Context:
    """The command line's context over an application whose engine runs in this process and whose gallery
    (with the series folder in it) is `folder`."""
    app = App(config_path=folder / "config.toml")
    app.engine, app.gallery, app.styles = engine, Gallery(folder), registry or StyleRegistry()
    return Context(app)


@pytest.fixture
def services(engine, tmp_path):
    registry = StyleRegistry()
    registry.add(Style(name="Ink", prompt="ink sketch of {prompt}", negative_prompt="color", pack="Test"))
    registry.add(Style(name="Pinned", prompt="{prompt}, dusk", seed=4242, pack="Test"))
    return in_process_app(engine, tmp_path, registry)


def series_manifests(tmp_path):
    return list((tmp_path / "series").glob("*/series.json"))


def invoke(command, args, services):
    result = CliRunner().invoke(command, args, obj=services, catch_exceptions=False)
    return result


def test_commands_are_exposed():
    assert (COMMANDS, REFINE_COMMANDS) == ([series], [refine])


def test_series_then_extend_keeps_the_look_and_reproduces(services, engine, runner, tmp_path):
    made = invoke(series, ["a red fox", "--count", "3", "--style", "Ink", "--seed", "100", *SMALL], services)
    assert made.exit_code == 0, made.output
    (manifest_path,) = series_manifests(tmp_path)
    assert made.stdout.strip() == str(manifest_path)
    manifest, folder = load_manifest(manifest_path)
    assert [image.seed for image in manifest.images] == [100, 101, 102]
    assert [image.file for image in manifest.images] == ["01-a-red-fox.png", "02-a-red-fox.png", "03-a-red-fox.png"]
    assert manifest.settings.model == "tiny" and (manifest.settings.width, manifest.settings.height) == (64, 64)
    first = (folder / "01-a-red-fox.png").read_bytes()
    assert Image.open(io.BytesIO(first)).size == (64, 64)
    assert image_texts(first)[PARAMETERS_KEY].startswith("ink sketch of a red fox\nNegative prompt: color\n")
    assert Image.open(folder / "contact-sheet.png").size == (3 * 72 + 8, 72 + 8)

    extended = invoke(series, ["--extend", str(manifest_path), "the fox in winter"], services)
    assert extended.exit_code == 0, extended.output
    manifest, _ = load_manifest(folder)
    row = manifest.images[3:]
    assert [(image.row, image.column, image.seed) for image in row] == [(1, 0, 100), (1, 1, 101), (1, 2, 102)]
    assert all(image.request.prompt == "ink sketch of the fox in winter" for image in row)
    assert all((image.request.width, image.request.steps, image.request.model) == (64, 1, "tiny") for image in row)
    assert Image.open(folder / "contact-sheet.png").size == (3 * 72 + 8, 2 * 72 + 8)

    again = runner.generate(manifest.images[1].request)
    assert pixels(again.images[0]) == pixels((folder / manifest.images[1].file).read_bytes())


def test_series_seed_comes_from_a_pinned_style(services, tmp_path):
    made = invoke(series, ["a boat", "--count", "2", "--style", "Pinned", *SMALL], services)
    assert made.exit_code == 0, made.output
    (manifest_path,) = series_manifests(tmp_path)
    manifest, _ = load_manifest(manifest_path)
    assert [image.seed for image in manifest.images] == [4242, 4243]


def test_extend_refuses_options_that_would_change_the_look(services, tmp_path):
    made = invoke(series, ["a fox", "--count", "1", "--out", str(tmp_path / "s"), *SMALL], services)
    assert made.exit_code == 0
    refused = CliRunner().invoke(
        series, ["--extend", str(tmp_path / "s"), "--count", "2", "--style", "Ink", "x"], obj=services
    )
    assert refused.exit_code == 2
    assert "--count, --style cannot be used with --extend" in refused.stderr
    again = CliRunner().invoke(series, ["a fox", "--out", str(tmp_path / "s"), *SMALL], obj=services)
    assert again.exit_code == 1 and "already holds a series" in again.stderr


def test_unknown_style_stops_before_the_engine(services, engine):
    result = CliRunner().invoke(series, ["a fox", "--style", "Nope"], obj=services)
    assert result.exit_code == 1 and "unknown style 'Nope'" in result.stderr
    assert engine.submitted == []


def test_refine_reuses_the_loaded_model_and_records_lineage(services, engine, runner, tmp_path):
    invoke(
        series,
        ["a red fox", "--count", "1", "--style", "Ink", "--seed", "7", "--out", str(tmp_path / "s"), *SMALL],
        services,
    )
    original_path = tmp_path / "s" / "01-a-red-fox.png"
    original = original_path.read_bytes()
    loads_before, events_before = runner.load_count, len(engine.events)

    made = invoke(refine, [str(original_path), "snow falling", "--strength", "0.5", "--seed", "3"], services)
    assert made.exit_code == 0, made.output
    refined_path = tmp_path / "s" / "01-a-red-fox-refined.png"
    assert made.stdout.strip() == str(refined_path)
    assert runner.load_count == loads_before, "img2img shares the loaded modules"
    assert not [e for e in engine.events[events_before:] if e["kind"] == "loading"]

    sent = engine.submitted[-1]
    assert sent.prompt == "ink sketch of snow falling, a red fox", "the series' style applied once, on the route"
    assert (sent.negative_prompt, sent.model, sent.steps, sent.strength, sent.seed) == ("color", "tiny", 1, 0.5, 3)
    assert Image.open(io.BytesIO(sent.init_image)).tobytes() == Image.open(original_path).convert("RGB").tobytes()

    refined = refined_path.read_bytes()
    assert Image.open(io.BytesIO(refined)).size == (64, 64)
    assert pixels(refined) != pixels(original)
    chunks = image_texts(refined)
    lineage = json.loads(chunks[LINEAGE_KEY])
    assert lineage == [
        {
            "file": "01-a-red-fox.png",
            "sha256": hashlib.sha256(original).hexdigest(),
            "parameters": image_texts(original)[PARAMETERS_KEY],
        }
    ]
    assert "Denoising strength: 0.5" in chunks[PARAMETERS_KEY]
    assert json.loads(chunks[REQUEST_KEY])["prompt"] == "ink sketch of snow falling, a red fox"

    twice = invoke(refine, [str(refined_path), "a lantern", "--only-change"], services)
    assert twice.exit_code == 0, twice.output
    second = image_texts((tmp_path / "s" / "01-a-red-fox-refined-refined.png").read_bytes())
    chain = [entry["file"] for entry in json.loads(second[LINEAGE_KEY])]
    assert chain == ["01-a-red-fox-refined.png", "01-a-red-fox.png"]
    assert engine.submitted[-1].prompt == "a lantern"
    assert runner.load_count == loads_before


def test_refine_any_image_without_metadata(services, engine, tmp_path):
    path = tmp_path / "photo.jpg"
    Image.new("RGB", (96, 64), (200, 30, 30)).save(path)
    made = invoke(refine, [str(path), "a blue sky", "--model", "tiny", "--steps", "2"], services)
    assert made.exit_code == 0, made.output
    sent = engine.submitted[-1]
    assert (sent.prompt, sent.width, sent.height, sent.strength) == ("a blue sky", 96, 64, 0.6)
    out = tmp_path / "photo-refined.png"
    assert Image.open(out).size == (96, 64)
    assert json.loads(image_texts(out.read_bytes())[LINEAGE_KEY])[0]["parameters"] == ""


def test_refine_of_a_non_image_is_a_clear_error(services, engine, tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("not an image")
    result = CliRunner().invoke(refine, [str(path), "more"], obj=services)
    assert result.exit_code == 1
    assert f"{path}: not an image (12 bytes); give a PNG, JPEG or WebP file" in result.stderr
    assert engine.submitted == []


def test_refine_is_usable_without_the_command_line(services, tmp_path):
    """What a script or plugin calls: the route's refine on an App, an image file, a change; progress as events."""
    original = tmp_path / "last.png"
    Image.new("RGB", (64, 64), (30, 90, 30)).save(original)
    steps_seen = []

    def on_event(event):
        if event["kind"] == "step":
            steps_seen.append(event["step"])

    outcome = generation.refine(
        services.app,
        original,
        "a red barn",
        strength=0.5,
        model="tiny",
        steps=4,
        on_event=on_event,
        out=tmp_path / "out" / "barn.png",
    )
    assert outcome.paths == [tmp_path / "out" / "barn.png"]
    assert steps_seen == [1, 2]
    lineage = json.loads(image_texts(outcome.paths[0].read_bytes())[LINEAGE_KEY])
    assert lineage[0]["file"] == "last.png"
    with pytest.raises(ValueError, match=f"{tmp_path / 'nope.png'}: not an image"):
        (tmp_path / "nope.png").write_text("x")
        generation.refine(services.app, tmp_path / "nope.png", "x")


def test_a_series_folder_that_cannot_take_an_image_keeps_it_elsewhere_and_says_where(services, tmp_path, user_dirs):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the series folder's parent should be")
    result = invoke(series, ["a red kite", "--count", "1", "--out", str(blocker / "kites"), *SMALL], services)
    assert result.exit_code == 1
    assert f"the series folder {blocker / 'kites'} cannot take 01-a-red-kite.png" in result.output
    [kept] = (user_dirs["XDG_DATA_HOME"] / "dreamtray/unsaved").glob("*.png")
    assert f"The image is kept at {kept}." in result.output
    texts = image_texts(kept.read_bytes())
    assert json.loads(texts[REQUEST_KEY])["prompt"] == "a red kite"
    assert "Traceback" not in result.output
