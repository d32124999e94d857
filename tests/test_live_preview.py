"""The prompt box's live preview in a real `dreamtray run` under Xvfb: real key presses (xdotool) in the real box,
GTK's (pystray's gtk back end) and Tk's (its xorg back end, as where GTK is missing), previews made by the tiny
model in the tray's own engine, and the engine asked what became of each job."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from tiny_text_model import build_text_model
from tray_process import TrayProcess, newest, press, shown_window, tray_home
from xsession import wait_until

from dreamtray.desktop.prompt_box import TITLE
from dreamtray.images.metadata import read_metadata
from dreamtray.request import Request

STYLES = """\
[pack]
name = "Test"

[[style]]
name = "Quick"
prompt = "{prompt}, quick sketch"
width = 128
height = 128
steps = 2

[[style]]
name = "Long"
prompt = "{prompt}"
steps = 40
"""


@pytest.fixture(scope="module", params=["gtk", "xorg"], ids=["gtk-box", "tk-box"])
def host(tray, tmp_path_factory, request):
    root = tmp_path_factory.mktemp("live-home")
    # torch for quality fast: the tiny model's previews start at once (no OpenVINO conversion first)
    model = build_text_model(root / "text-model")
    config = f'style = "Quick"\nexpansion_model = "{model}"\n[engine]\nruntime = "torch"\n'
    home = tray_home(root, tray, config=config, PYSTRAY_BACKEND=request.param)
    styles = root / "data" / "dreamtray" / "styles"
    styles.mkdir(parents=True)
    (styles / "test.toml").write_text(STYLES)
    process = TrayProcess(home)
    if request.param == "gtk":  # the xorg back end's icon window names no process to find it by
        process.wait_docked()
    else:
        wait_until(lambda: process.trigger("status", timeout=30).returncode == 0, 60, "the tray to answer")
    process.wait_started()
    wait_until(lambda: (root / "state/dreamtray/engine.json").is_file(), 60, "the engine service")
    yield process
    process.stop()
    home.stop_engine()


@pytest.fixture
def engine(host):
    """A client of the tray's own engine, to ask it about the preview jobs."""
    from dreamtray.engine.client import ServiceEngine

    state = json.loads((host.home.root / "state/dreamtray/engine.json").read_text())
    token = (host.home.root / "data/dreamtray/engine-token").read_text().strip()
    client = ServiceEngine(state["url"], token)
    yield client
    client.close()


@contextmanager
def engine_held(engine) -> Iterator[None]:
    """A slow job straight on the engine: preview jobs wait behind it until the block ends."""
    job = engine.submit(Request(prompt="the block", seed=1, width=256, height=256, steps=150, quality="balanced"))
    try:
        next(event for event in job.events() if event["kind"] == "step")
        yield
    finally:
        job.cancel()


def live(host) -> dict:
    return host.status()["live_preview"]


def jobs_for(host, prompt: str) -> list[dict]:
    return [job for job in (live(host) or {"jobs": []})["jobs"] if job["prompt"] == prompt]


def shown(host, prompt: str, timeout: float = 300) -> dict:
    """The live state once the box shows the preview of `prompt`."""
    return wait_until(
        lambda: (state := live(host)) and state["shown"] and state["shown"]["prompt"] == prompt and state,
        timeout,
        f"the preview of {prompt!r}",
        0.2,
    )


def engine_status(engine, job_id: str) -> str:
    return engine.call("GET", f"/v1/jobs/{job_id}")["status"]


def open_box(host, tray) -> None:
    host.wait_idle()
    assert host.trigger("prompt").returncode == 0
    wait_until(lambda: shown_window(tray, TITLE), 30, "the prompt box")


def type_text(tray, text: str) -> None:
    tray.run(["xdotool", "type", "--delay", "40", text], check=True)


def gallery(host) -> list[Path]:
    return newest(host.home.gallery)


def test_previews_follow_the_typed_text_and_enter_makes_the_image_with_the_previews_seed(host, tray, engine):
    before = gallery(host)
    open_box(host, tray)
    type_text(tray, "a fox")
    first = shown(host, "a fox")
    type_text(tray, " in deep snow")
    state = shown(host, "a fox in deep snow")
    assert state["shown"]["seed"] == first["shown"]["seed"] == state["seed"], "one seed for every preview of a box"
    shown_job = state["shown"]["job"]
    answer = engine.call("GET", f"/v1/jobs/{shown_job}")["result"]
    result = answer["request"]
    assert result["prompt"] == "a fox in deep snow, quick sketch", "the config's style shapes the preview"
    assert (result["width"], result["height"], result["quality"]) == (256, 256, "fast")
    assert gallery(host) == before, "previews never enter the gallery"
    press(tray, "Return")
    made = wait_until(lambda: [p for p in gallery(host) if p not in before], 300, "the image Enter makes", 0.2)
    host.wait_idle()
    assert len(made) == 1
    metadata = read_metadata(made[0])
    assert metadata.request.seed == state["seed"] == metadata.parameters.seed
    assert metadata.request.unstyled.prompt == "a fox in deep snow"
    assert metadata.parameters.model == answer["model"], "the same model as the preview"
    assert host.status()["heavy_modules"] == [], "the live preview loads no engine side into the tray"


def test_each_keystroke_cancels_the_stale_preview_and_the_engine_sees_it(host, tray, engine):
    open_box(host, tray)
    with engine_held(engine):
        type_text(tray, "a kite")
        [stale] = wait_until(lambda: jobs_for(host, "a kite"), 60, "the preview job of 'a kite'")
        assert engine_status(engine, stale["id"]) == "queued"
        type_text(tray, " over hills")
        [fresh] = wait_until(lambda: jobs_for(host, "a kite over hills"), 60, "the preview job of the whole text")
        wait_until(lambda: engine_status(engine, stale["id"]) == "cancelled", 30, "the engine to cancel the stale job")
        assert engine.health()["queued"] == 1, "one preview waits behind the running job, no more"
        queue = json.loads(host.trigger("queue", "--json").stdout)
        assert queue["preview"]["prompt"] == "a kite over hills", "the queue shows the preview being made"
        menu = host.trigger("menu").stdout.splitlines()
        assert "Preview (prompt box): a kite over hills (off)" in menu, "and so does the tray's menu"
    state = shown(host, "a kite over hills")
    assert [job["state"] for job in state["jobs"] if job["prompt"].startswith("a kite")] == ["cancelled", "shown"]
    assert engine_status(engine, fresh["id"]) == "done"
    press(tray, "Escape")
    wait_until(lambda: not shown_window(tray, TITLE), 30, "the prompt box to close")


def test_closing_the_box_mid_preview_leaves_nothing_running(host, tray, engine):
    # a preview of many steps: the box closes while the engine makes it
    assert host.trigger("menu", "Style", "Test", "Long").returncode == 0
    config = host.home.root / "config/dreamtray/config.toml"
    wait_until(lambda: 'style = "Long"' in config.read_text(), 30, "the style to change")
    try:
        open_box(host, tray)
        type_text(tray, "a moth")
        [job] = wait_until(lambda: jobs_for(host, "a moth"), 60, "the preview job")
        wait_until(lambda: engine.health()["running"] == job["id"], 120, "the preview to run")
        press(tray, "Escape")
        wait_until(lambda: not shown_window(tray, TITLE), 30, "the prompt box to close")
        wait_until(lambda: engine_status(engine, job["id"]) == "cancelled", 60, "the engine to cancel the preview")
        health = engine.health()
        assert health["running"] is None and health["queued"] == 0
        state = live(host)
        assert not state["open"] and [j["state"] for j in state["jobs"]] == ["cancelled"]
        assert json.loads(host.trigger("queue", "--json").stdout)["preview"] is None
    finally:
        assert host.trigger("menu", "Style", "Test", "Quick").returncode == 0
        wait_until(lambda: 'style = "Quick"' in config.read_text(), 30, "the style to change back")


def test_the_expansion_shows_before_the_image_is_made_and_its_edit_is_what_enter_makes(host, tray, engine):
    before = gallery(host)
    open_box(host, tray)
    seed = live(host)["seed"]
    press(tray, "alt+e")  # the box's "Expand the prompt" toggle
    type_text(tray, "a fox")
    expected = json.loads(host.home.run("expand", "a fox", "--seed", str(seed), "--json", check=True).stdout)
    grown = expected["expansion"]
    shown(host, grown)  # the preview is made from the expansion, shown in the box before any image
    assert gallery(host) == before
    press(tray, "alt+x")  # to the expansion, to edit it
    press(tray, "End")
    type_text(tray, " at dusk")
    state = shown(host, f"{grown} at dusk")
    press(tray, "Return")
    made = wait_until(lambda: [p for p in gallery(host) if p not in before], 300, "the image Enter makes", 0.2)
    host.wait_idle()
    request = read_metadata(made[0]).request
    assert request.expanded_from == "a fox" and request.unstyled.prompt == f"{grown} at dusk"
    assert request.seed == seed == state["shown"]["seed"]


def made_from_the_box(host, tray, text: str, *keys: str) -> Path:
    """Open the box, press `keys`, type `text`, Enter: the one new image in the gallery."""
    before = gallery(host)
    open_box(host, tray)
    for key in keys:
        press(tray, key)
    type_text(tray, text)
    press(tray, "Return")
    [made] = wait_until(lambda: [p for p in gallery(host) if p not in before], 300, "the image Enter makes", 0.2)
    wait_until(lambda: not shown_window(tray, TITLE), 30, "the prompt box to close")
    host.wait_idle()
    return made


def test_same_subject_in_the_box_keeps_the_last_images_subject_and_the_metadata_names_the_method(host, tray):
    reference = read_metadata(made_from_the_box(host, tray, "a red fox")).request
    metadata = read_metadata(made_from_the_box(host, tray, "the fox asleep", "alt+s"))  # "Same subject"
    subject = metadata.request.subject
    assert subject is not None and subject.reference is not None
    assert subject.reference.seed == reference.seed and subject.reference.prompt == "a red fox"  # as typed
    assert metadata.request.unstyled.prompt == "the fox asleep"
    assert subject.method == "shared-attention", "auto on torch: the engine's choice, named in the metadata"
    assert metadata.parameters.extra["Same subject"].startswith("shared-attention, reference: seed ")
    plain = read_metadata(made_from_the_box(host, tray, "a plain owl")).request
    assert plain.subject is None, "the toggle starts off at each opening"


@pytest.mark.parametrize(
    ("settings", "reason"),
    [
        ("live_preview = false\n", "Live preview is off (`live_preview` in the config)."),
        (
            '[engine]\nbackend = "openai"\n[engine.backends.openai]\nurl = "http://127.0.0.1:9"\n',
            "No live preview: the openai engine charges for each image.",
        ),
        ('[engine]\nbackend = "a1111"\n[engine.backends.a1111]\nurl = "http://127.0.0.1:9"\n', ""),
        ("", ""),
    ],
)
def test_the_box_says_why_it_makes_no_previews(tmp_path, monkeypatch, settings, reason):
    from dreamtray.app import App
    from dreamtray.desktop.live_preview import live_off_reason

    monkeypatch.setenv("DREAMTRAY_PLUGINS", "remote")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    config = tmp_path / "config.toml"
    config.write_text('model = "tiny"\n' + settings)
    assert live_off_reason(App(config)) == reason
