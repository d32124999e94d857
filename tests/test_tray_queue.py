"""The queue and the prompt box in a real `dreamtray run` under Xvfb: real key presses (xdotool), the real GTK
menu and prompt box, the menu's items and callbacks through `dreamtray trigger menu`, images made by the tiny
model. The tray's queue holds three images here; a slow job straight on the tray's engine holds the queue still
while a test looks at it."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from tray_process import (
    TrayProcess,
    newest,
    open_menu_and_pick,
    press,
    primary_text,
    serve_primary,
    shown_window,
    tray_home,
)
from xsession import wait_until

from dreamtray.desktop.prompt_box import TITLE
from dreamtray.images.metadata import read_metadata
from dreamtray.request import Request

STYLES = """\
[pack]
name = "Test"

[[style]]
name = "Small"
prompt = "{prompt}"
width = 64
height = 64
steps = 2

[[style]]
name = "Slow"
prompt = "{prompt}"
width = 256
height = 256
steps = 150
"""
PROMPTS = ["a red kite", "a blue door", "a green pear"]


@pytest.fixture(scope="module")
def host(tray, tmp_path_factory):
    root = tmp_path_factory.mktemp("queue-home")
    # Quality balanced: its full VAE keeps the first job busy while the next presses queue behind it.
    home = tray_home(root, tray, config='style = "Small"\nqueue_length = 3\n[engine]\nquality = "balanced"\n')
    styles = root / "data" / "dreamtray" / "styles"
    styles.mkdir(parents=True)
    (styles / "test.toml").write_text(STYLES)
    process = TrayProcess(home)
    process.docked, _ = process.wait_docked()
    process.wait_started()
    wait_until(lambda: (root / "state/dreamtray/engine.json").is_file(), 60, "the engine service")
    yield process
    process.stop()
    home.stop_engine()


def gallery(host) -> list[Path]:
    return newest(host.home.gallery)


def queue(host) -> list[dict]:
    result = host.trigger("queue", "--json", timeout=30)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["jobs"]


def prompts(host) -> list[str]:
    return [job["prompt"] for job in queue(host)]


@contextmanager
def engine_held(host) -> Iterator[None]:
    """A slow job straight on the tray's engine: the tray's own jobs wait behind it until the block ends."""
    from dreamtray.engine.client import ServiceEngine

    state = json.loads((host.home.root / "state/dreamtray/engine.json").read_text())
    token = (host.home.root / "data/dreamtray/engine-token").read_text().strip()
    engine = ServiceEngine(state["url"], token)
    # balanced: the torch path, slow enough to hold the queue (fast on OpenVINO ends 150 tiny steps in moments)
    job = engine.submit(Request(prompt="the block", seed=1, width=256, height=256, steps=150, quality="balanced"))
    try:
        next(event for event in job.events() if event["kind"] == "step")
        yield
    finally:
        job.cancel()
        engine.close()


def from_bottom(host, label: str) -> int:
    """How many Up presses from the bottom of the open menu reach the top-level item starting with `label`
    (as `trigger menu` lists them: separators and items that cannot be picked are skipped by the keys)."""
    top = [line for line in host.trigger("menu").stdout.splitlines() if not line.startswith((" ", "-----", "\t"))]
    top = [line for line in top if not line.endswith(" (off)")]
    return len(top) - next(i for i, line in enumerate(top) if line.startswith(label))


def wait_new_images(host, before: list[Path], count: int) -> list[Path]:
    made = wait_until(
        lambda: len(new := [p for p in gallery(host) if p not in before]) >= count and new, 300, "the new images", 0.2
    )
    host.wait_idle()
    return made


def test_key_presses_queue_in_order_a_full_queue_drops_and_says_so_once(host, tray, notifications):
    host.wait_idle()
    before = gallery(host)
    with engine_held(host):
        for count, prompt in enumerate(PROMPTS, 1):
            serve_primary(tray, prompt)
            press(tray, "ctrl+alt+i")
            wait_until(lambda: len(queue(host)) == count, 30, f"press {count} in the queue")  # noqa: B023
        jobs = queue(host)
        assert [(j["state"], j["action"], j["prompt"]) for j in jobs] == [
            ("running", "clipboard", PROMPTS[0]),
            ("waiting", "clipboard", PROMPTS[1]),
            ("waiting", "clipboard", PROMPTS[2]),
        ]
        serve_primary(tray, "one too many")
        tray.run(["xdotool", "key", "--delay", "80", *["ctrl+alt+i"] * 3], check=True)
        wait_until(lambda: host.log_text().count("the queue is full") >= 3, 30, "three dropped presses in the log")
        assert prompts(host) == PROMPTS
        shown = wait_until(
            lambda: "The queue is full" in (names := [n["summary"] for n in notifications()])
            and names.count("Queued") == 2
            and names,
            10,
            "the notifications (sent from their own thread)",
        )
        assert shown.count("The queue is full") == 1, shown
        assert shown.count("Queued") == 2, shown

        listed = host.trigger("queue").stdout
        first, second, third = (j["number"] for j in jobs)
        assert f"#{first} making: clipboard: {PROMPTS[0]}" in listed
        assert f"#{second} waiting: clipboard: {PROMPTS[1]}" in listed

        menu = host.trigger("menu").stdout.splitlines()
        assert "Queue: 1 making, 2 waiting" in menu
        assert f"  Cancel #{third} (waiting) clipboard: {PROMPTS[2]}" in menu
        picked = host.trigger("menu", "Queue", f"Cancel #{second}")
        assert picked.returncode == 0, picked.stderr
        wait_until(lambda: prompts(host) == [PROMPTS[0], PROMPTS[2]], 30, f"#{second} to leave the queue")
    made = wait_new_images(host, before, 2)
    assert [read_metadata(p).parameters.prompt for p in made] == [PROMPTS[0], PROMPTS[2]]
    assert queue(host) == []


def test_cancel_the_waiting_image_says_so_to_a_trigger_that_waits_for_it(host):
    host.wait_idle()
    with engine_held(host):
        assert host.trigger("clipboard", "--prompt", "the first").returncode == 0
        waiter = subprocess.Popen(
            [sys.executable, "-m", "dreamtray", "trigger", "clipboard", "--prompt", "never made", "--wait"],
            env=host.home.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        number = wait_until(lambda: len(jobs := queue(host)) == 2 and jobs[1]["number"], 30, "the waiting image")
        cancelled = host.trigger("cancel", str(number))
        assert cancelled.returncode == 0 and f"Cancelled #{number}" in cancelled.stdout
        out, err = waiter.communicate(timeout=60)
        assert waiter.returncode == 1 and "The image was cancelled" in err
        assert host.trigger("cancel", str(number)).returncode == 1
    host.wait_idle()


def test_cancel_the_running_image_from_the_real_menu(host, tray, notifications):
    host.wait_idle()
    before = gallery(host)
    assert host.trigger("clipboard", "--prompt", "a slow snail", "--style", "Slow").returncode == 0
    wait_until(lambda: (jobs := queue(host)) and jobs[0]["percent"], 120, "the slow image to make progress")
    open_menu_and_pick(tray, host.docked, ["Up"] * from_bottom(host, "Queue: ") + ["Right", "Return"])
    tray.run(["xdotool", "mousemove", "0", "0"], check=True)  # off the icon: its tooltip would stay on screen
    wait_until(lambda: host.status()["pending"] == 0, 60, "the running image to stop")
    assert gallery(host) == before
    wait_until(lambda: any(n["summary"] == "The image was cancelled" for n in notifications()), 10, "the notice")


def test_the_engine_lets_as_many_jobs_wait_as_the_tray_queue_holds(host):
    from dreamtray.engine.client import ServiceEngine

    state = json.loads((host.home.root / "state/dreamtray/engine.json").read_text())
    token = (host.home.root / "data/dreamtray/engine-token").read_text().strip()
    engine = ServiceEngine(state["url"], token)
    try:
        assert engine.health()["max_queue"] == 3 == host.status()["queue_length"]
    finally:
        engine.close()


def test_nothing_selected_the_hotkey_opens_the_prompt_box_and_enter_makes_the_image(host, tray):
    host.wait_idle()
    before = gallery(host)
    keeper = serve_primary(tray, "  ")  # a blank selection: nothing selected
    press(tray, "ctrl+alt+i")
    wait_until(lambda: shown_window(tray, TITLE), 30, "the prompt box")
    tray.run(["xdotool", "type", "--delay", "30", "a paper lantern"], check=True)
    press(tray, "Return")
    [made] = wait_new_images(host, before, 1)
    assert read_metadata(made).parameters.prompt == "a paper lantern"
    assert not shown_window(tray, TITLE)
    assert keeper.poll() is None and primary_text(tray) == "  ", "the selection is still the one that was there"
    history = json.loads((host.home.root / "state/dreamtray/prompt-history.json").read_text())
    assert history[0] == "a paper lantern"
    assert host.status()["heavy_modules"] == [], "the prompt box loads no engine side into the tray"


def test_the_prompt_box_offers_the_last_prompts(host, tray):
    host.wait_idle()
    history = json.loads((host.home.root / "state/dreamtray/prompt-history.json").read_text())
    before = gallery(host)
    assert host.trigger("prompt").returncode == 0
    wait_until(lambda: shown_window(tray, TITLE), 30, "the prompt box")
    tray.run(["xdotool", "key", "--delay", "200", "alt+Down", "Return", "Return"], check=True)
    [made] = wait_new_images(host, before, 1)
    assert read_metadata(made).parameters.prompt == history[0]


def test_the_prompt_box_leaves_a_real_selection_alone_and_escape_makes_nothing(host, tray):
    host.wait_idle()
    before = gallery(host)
    keeper = serve_primary(tray, "text selected elsewhere")
    assert host.trigger("prompt").returncode == 0
    wait_until(lambda: shown_window(tray, TITLE), 30, "the prompt box")
    tray.run(["xdotool", "type", "--delay", "30", "never made"], check=True)
    press(tray, "Escape")
    wait_until(lambda: not shown_window(tray, TITLE), 30, "the prompt box to close")
    assert host.status()["pending"] == 0 and gallery(host) == before
    assert keeper.poll() is None and primary_text(tray) == "text selected elsewhere"


def test_the_menu_lists_the_prompt_box_and_an_empty_queue(host):
    host.wait_idle()
    menu = host.trigger("menu").stdout.splitlines()
    assert "Type a prompt…" in menu and "Queue: empty (off)" in menu
    wrong = host.trigger("menu", "No such item")
    assert wrong.returncode == 1 and "No menu item 'No such item'" in wrong.stderr
