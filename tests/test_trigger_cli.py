"""`dreamtray trigger` as a user types it, against a control server in this process: what it prints of the
tray's answers (prompts from the selection may carry terminal escapes), and the numbers it takes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dreamtray.desktop import control

HOSTILE = "a fox \x1b]0;owned\x07 \x1b[2J \u202eevil \x9b31m"


@pytest.fixture
def tray_answers(runtime):
    """A control server answering every command with a message and images holding terminal escapes."""
    seen = []

    def handler(message):
        seen.append(message)
        return {"ok": True, "message": f"#1 making: {HOSTILE}\n#2 waiting: {HOSTILE}", "images": [HOSTILE]}

    server = control.ControlServer(handler)
    server.start()
    yield seen
    server.stop()


def trigger(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dreamtray", "trigger", *args], capture_output=True, encoding="utf-8", timeout=60
    )


@pytest.mark.parametrize("args", [["queue"], ["menu"], ["menu", "Queue"], ["clipboard"]])
def test_trigger_output_shows_escapes_never_sends_them(tray_answers, args):
    result = trigger(*args)
    assert result.returncode == 0, result.stderr
    assert not any(char in result.stdout for char in "\x1b\x07\u202e\x9b")
    assert r"a fox \x1b]0;owned\x07 \x1b[2J \u202eevil \x9b31m" in result.stdout
    assert result.stdout.count("\n") == 3, "the message's own lines stay lines"


def test_trigger_json_output_is_escaped_json(tray_answers):
    result = trigger("queue", "--json")
    assert result.returncode == 0
    assert not any(char in result.stdout for char in "\x1b\x07\u202e\x9b")
    assert "\\u001b]0;owned" in result.stdout


@pytest.mark.parametrize("number", ["²", "٣", "１", "1_0", "99999999999", "2x", ""])
def test_cancel_takes_only_a_queue_number_in_ascii_digits(tray_answers, number):
    result = trigger("cancel", number)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "cancel takes the number of one image of the queue" in result.stderr
    assert tray_answers == [], "nothing was sent"


def test_cancel_sends_the_number(tray_answers):
    assert trigger("cancel", "#3").returncode == 0
    assert tray_answers[-1]["number"] == 3


def test_words_after_an_action_are_echoed_escaped(tray_answers):
    result = trigger("pause", "\x1b]0;owned\x07")
    assert result.returncode == 2 and "\x1b" not in result.stderr and r"\x1b]0;owned\x07" in result.stderr
