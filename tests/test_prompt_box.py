"""The prompt box on its own: its Tk form driven by real key presses (xdotool) in the test X session, the
choice of toolkit, and the prompt history file. The GTK form is driven inside the real tray (test_tray_queue)."""

from __future__ import annotations

import threading

import pytest
from tray_process import primary_text, serve_primary, shown_window
from xsession import wait_until

from dreamtray.desktop.prompt_box import (
    TITLE,
    Choice,
    GtkPromptBox,
    Offer,
    TkPromptBox,
    make_prompt_box,
)
from dreamtray.desktop.prompt_history import KEEP, load_history, remember

OFFER = Offer(
    history=["a red kite over the sea", "a snowy cabin"],
    styles=["Watercolor", "Photo"],
    style="Photo",
    actions=["clipboard", "wallpaper"],
    action="wallpaper",
)


@pytest.fixture
def tk_box(xsession):
    """A Tk prompt box in this process; yields (open, choices), each open's box closed by the end."""
    box = TkPromptBox()
    choices: list[Choice] = []
    chosen = threading.Event()

    def on_choice(choice: Choice) -> None:
        choices.append(choice)
        chosen.set()

    def open_box() -> int:
        box.open(OFFER, on_choice)
        return wait_until(lambda: shown_window(xsession, TITLE), 20, "the prompt box on screen")

    yield open_box, choices, chosen
    if shown_window(xsession, TITLE):
        xsession.run(["xdotool", "key", "Escape"])
    wait_until(lambda: not shown_window(xsession, TITLE), 20, "the prompt box to close")


def test_tk_box_typed_prompt_and_enter_give_the_choice_and_leave_primary_alone(xsession, tk_box):
    open_box, choices, chosen = tk_box
    serve_primary(xsession, "text the user had selected")
    open_box()
    xsession.run(["xdotool", "type", "--delay", "20", "a lighthouse at dusk"], check=True)
    xsession.run(["xdotool", "key", "Return"], check=True)
    assert chosen.wait(20), "Enter made no choice"
    assert choices == [Choice("a lighthouse at dusk", "Photo", "wallpaper")]
    wait_until(lambda: not shown_window(xsession, TITLE), 20, "the prompt box to close")
    assert primary_text(xsession) == "text the user had selected"


def test_tk_box_escape_closes_it_without_a_choice(xsession, tk_box):
    open_box, choices, _ = tk_box
    open_box()
    xsession.run(["xdotool", "type", "--delay", "20", "never made"], check=True)
    xsession.run(["xdotool", "key", "Escape"], check=True)
    wait_until(lambda: not shown_window(xsession, TITLE), 20, "the prompt box to close")
    assert choices == []


def test_tk_box_enter_on_an_empty_prompt_keeps_it_open(xsession, tk_box):
    open_box, choices, _ = tk_box
    open_box()
    xsession.run(["xdotool", "key", "Return"], check=True)
    xsession.run(["xdotool", "type", "--delay", "20", "late"], check=True)
    xsession.run(["xdotool", "key", "Return"], check=True)
    wait_until(lambda: choices, 20, "the choice")
    assert choices == [Choice("late", "Photo", "wallpaper")]


def test_the_toolkit_follows_the_tray(xsession):
    assert isinstance(make_prompt_box({"PYSTRAY_BACKEND": "gtk"}), GtkPromptBox)
    assert isinstance(make_prompt_box({"PYSTRAY_BACKEND": "appindicator"}), GtkPromptBox)
    assert isinstance(make_prompt_box({"PYSTRAY_BACKEND": "xorg"}), TkPromptBox)


def test_history_keeps_the_newest_prompts_once_each(tmp_path):
    path = tmp_path / "history.json"
    assert load_history(path) == []
    for number in range(KEEP + 3):
        remember(f"prompt {number}", path)
    remember("prompt 5", path)
    history = load_history(path)
    assert history[0] == "prompt 5" and len(history) == KEEP
    assert history[1:3] == [f"prompt {KEEP + 2}", f"prompt {KEEP + 1}"]
    assert history.count("prompt 5") == 1
    assert remember("   ", path) == history


def test_a_damaged_history_file_is_an_empty_history(tmp_path):
    path = tmp_path / "history.json"
    path.write_text("{not json")
    assert load_history(path) == []
    path.write_text('{"a": 1}')
    assert load_history(path) == []
    assert remember("a fresh start", path) == ["a fresh start"]
