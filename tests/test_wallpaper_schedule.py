"""Scheduled wallpapers: the prompts file, the order of prompts across runs, timing, and the command line."""

from __future__ import annotations

import threading
import time

import pytest
from click.testing import CliRunner

from dreamtray.api import CommandHost
from dreamtray_plugins.wallpaper import commands
from dreamtray_plugins.wallpaper.schedule import PromptCycle, ScheduleError, read_prompts, run_schedule


@pytest.fixture
def prompts_file(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text(
        "# my wallpapers\nmisty mountains at dawn\n\n   \na lighthouse in a storm\n  # not this\nneon city rain\n"
    )
    return path


def test_prompts_file_skips_blank_lines_and_comments(prompts_file):
    assert read_prompts(prompts_file) == ["misty mountains at dawn", "a lighthouse in a storm", "neon city rain"]


def test_prompts_file_without_prompts_is_refused(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing yet\n\n")
    with pytest.raises(ScheduleError, match="has no prompts"):
        read_prompts(empty)
    with pytest.raises(ScheduleError, match="Cannot read"):
        read_prompts(tmp_path / "missing.txt")


def test_prompts_go_round_and_the_place_survives_a_restart(user_dirs, prompts_file, tmp_path):
    first_run = PromptCycle(prompts_file)
    assert [first_run.next(), first_run.next()] == ["misty mountains at dawn", "a lighthouse in a storm"]
    after_login = PromptCycle(prompts_file)
    assert [after_login.next(), after_login.next()] == ["neon city rain", "misty mountains at dawn"]
    other = tmp_path / "other.txt"
    other.write_text("a red fox\n")
    assert PromptCycle(other).next() == "a red fox"
    assert PromptCycle(prompts_file).next() == "a lighthouse in a storm"


def test_schedule_repeats_until_stopped_and_survives_a_failed_run(user_dirs, prompts_file):
    stop, seen, reports = threading.Event(), [], []

    def generate(prompt: str, action: str) -> None:
        seen.append((prompt, action, time.monotonic()))
        if len(seen) == 2:
            raise RuntimeError("engine out of memory")
        if len(seen) == 4:
            stop.set()

    made = run_schedule(PromptCycle(prompts_file), generate, every_hours=0.05 / 3600, stop=stop, report=reports.append)
    assert made == 3
    assert [(p, a) for p, a, _ in seen] == [
        ("misty mountains at dawn", "wallpaper"),
        ("a lighthouse in a storm", "wallpaper"),
        ("neon city rain", "wallpaper"),
        ("misty mountains at dawn", "wallpaper"),
    ]
    gaps = [later - earlier for (_, _, earlier), (_, _, later) in zip(seen, seen[1:], strict=False)]
    assert all(gap >= 0.045 for gap in gaps)
    assert reports[1] == "No wallpaper for 'a lighthouse in a storm': engine out of memory"


class RecordingHost(CommandHost):
    """The command's host, recording what it is asked to make (the schedule's order is under test here)."""

    def __init__(self) -> None:
        self.made: list[tuple[str, str | None]] = []

    def generate(self, prompt, action=None, **fields):
        self.made.append((prompt, action))
        return []


def test_at_login_makes_one_wallpaper_per_login(user_dirs, prompts_file):
    host = RecordingHost()
    made = host.made
    for _ in range(2):
        result = CliRunner().invoke(commands.wallpaper, ["--schedule", str(prompts_file), "--at-login"], obj=host)
        assert result.exit_code == 0, result.output
    assert made == [("misty mountains at dawn", "wallpaper"), ("a lighthouse in a storm", "wallpaper")]
    assert "New wallpaper: a lighthouse in a storm" in result.output


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        ([], "Say what to do"),
        (["--schedule", "{prompts}"], "exactly one of --every HOURS and --at-login"),
        (["--schedule", "{prompts}", "--every", "2", "--at-login"], "exactly one of"),
        (["--undo", "--schedule", "{prompts}"], "--undo goes alone"),
        (["--schedule", "{prompts}", "--every", "0"], "--every"),
    ],
)
def test_command_line_mistakes_are_explained(user_dirs, prompts_file, args, complaint):
    args = [arg.replace("{prompts}", str(prompts_file)) for arg in args]
    result = CliRunner().invoke(commands.wallpaper, args, obj=RecordingHost())
    assert result.exit_code == 2
    assert complaint in result.output
