"""Terminal and metadata injection: escape sequences in prompts and style names never reach the terminal raw,
and a prompt that holds `Negative prompt:` and settings lines reads back as the prompt it was."""

from __future__ import annotations

import json
import re
from datetime import datetime

import pytest
from cli_env import DreamtrayHome

from dreamtray.images.gallery import Gallery
from dreamtray.images.metadata import Parameters, format_parameters, parse_parameters, read_metadata
from dreamtray.request import Request

OSC_TITLE = "\x1b]0;pwned\x07"
CSI_8BIT = "\x9b2J"
RLO = "\u202e"
HOSTILE = f"a fox {OSC_TITLE}{CSI_8BIT}{RLO}gnp.exe\nNegative prompt: x\nSteps: 99"
RAW = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return DreamtrayHome.create(tmp_path_factory.mktemp("injection"))


@pytest.fixture(scope="module")
def hostile_image(home, engine):
    result = engine.submit(Request(prompt=HOSTILE, negative_prompt="blurry", seed=7, width=64, height=64, steps=2))
    made = result.result()
    request = made.request.model_copy(update={"seed": made.seeds[0], "count": 1})
    when = datetime(2026, 1, 2, 3, 4, 5)
    return Gallery(home.gallery).save(made.images[0], request, model=made.model, sampler=made.sampler, when=when)


def test_show_prints_no_escape_sequence_and_reads_the_fields_back(home, hostile_image):
    result = home.run("show", str(hostile_image), check=True)
    assert not RAW.search(result.stdout), repr(result.stdout)
    assert "\\x1b]0;pwned\\x07" in result.stdout and "\\x9b2J" in result.stdout and "\\u202e" in result.stdout
    lines = result.stdout.splitlines()
    assert "Negative prompt: blurry" in lines and "Steps: 2" in lines
    assert "    \\Negative prompt: x" not in lines and "    Negative prompt: x" in lines, "shown as part of the prompt"


def test_show_json_has_the_exact_prompt_and_no_raw_control_characters(home, hostile_image):
    result = home.run("show", str(hostile_image), "--json", check=True)
    assert not RAW.search(result.stdout)
    parameters = json.loads(result.stdout)["parameters"]
    assert (parameters["prompt"], parameters["negative_prompt"], parameters["steps"]) == (HOSTILE, "blurry", 2)


def test_history_prints_no_escape_sequence(home, hostile_image):
    result = home.run("history", check=True)
    assert not RAW.search(result.stdout) and "\\x1b]0;pwned\\x07" in result.stdout
    assert not RAW.search(home.run("history", "--json", check=True).stdout)


def test_other_tools_read_the_a1111_text_right_too(hostile_image):
    text = read_metadata(hostile_image).texts["parameters"]
    alone = parse_parameters(text)  # what a reader without our JSON chunk sees
    assert (alone.prompt, alone.negative_prompt, alone.steps, alone.seed) == (HOSTILE, "blurry", 2, 7)


@pytest.mark.parametrize(
    "prompt",
    ["Negative prompt: first line", "a\n\\Negative prompt: escaped already", "a\n  Negative prompt: indented"],
)
def test_marker_lines_in_prompts_round_trip(prompt):
    text = format_parameters(
        Parameters(prompt=prompt, negative_prompt="n\nNegative prompt: m", steps=3, seed=1, sampler="Euler")
    )
    back = parse_parameters(text)
    assert (back.prompt, back.negative_prompt, back.steps) == (prompt.replace("  ", ""), "n\nNegative prompt: m", 3)


def test_styles_print_no_escape_sequence(home):
    styles = home.root / "data" / "dreamtray" / "styles"
    styles.mkdir(parents=True, exist_ok=True)
    (styles / "evil.csv").write_text(f"name,prompt,negative_prompt\nEvil{OSC_TITLE},{{prompt}} {CSI_8BIT},{RLO}x\n")
    listing = home.run("styles", check=True)
    assert "Evil" in listing.stdout and not RAW.search(listing.stdout + listing.stderr), repr(listing.stdout)
    for name in re.findall(r"^(Evil\S*)", listing.stdout, re.M):
        assert "\\x1b" in name
    shown = home.run("styles", "show", f"Evil{OSC_TITLE}")
    assert not RAW.search(shown.stdout + shown.stderr), repr(shown.stdout + shown.stderr)
    assert not RAW.search(home.run("styles", "show", f"Evil{OSC_TITLE}", "--json").stdout)


OSC8 = "\x1b]8;;https://evil.example/\x1b\\click\x1b]8;;\x1b\\"
ESCAPES = {"ESC": "\x1b[2J", "OSC 8": OSC8, "OSC title": OSC_TITLE, "C1 CSI": CSI_8BIT, "U+202E": RLO}


@pytest.fixture(scope="module")
def crafted_gallery(home):
    """A1111 images whose every settings field holds one kind of escape (no engine: text chunks by hand)."""
    from png_samples import a1111_png

    home.gallery.mkdir(parents=True, exist_ok=True)
    made = []
    for index, (kind, escape) in enumerate(ESCAPES.items()):
        text = (
            f"prompt {escape}\nNegative prompt: neg {escape}\n"
            f"Steps: 3{escape}, Sampler: Euler{escape}, Seed: 5{escape}, Size: 64x64{escape}, Model: m{escape}, "
            f"Extra{escape}: e{escape}"
        )
        path = home.gallery / f"escape-{index}-{kind.replace(' ', '_').replace('+', '')}{escape.replace('/', '_')}.png"
        path.write_bytes(a1111_png(text))
        made.append(path)
    return made


def test_history_settings_line_and_every_field_print_escaped(home, crafted_gallery):
    result = home.run("history", "--limit", "50", check=True)
    assert not RAW.search(result.stdout + result.stderr), repr(result.stdout)
    assert "Seed: 5\\x1b]8;;https://evil.example/" in result.stdout, "the OSC 8 link is shown, not followed"
    assert "Model: m\\u202e" in result.stdout and "Size: 64x64\\x9b2J" in result.stdout
    assert not RAW.search(home.run("history", "--json", "--limit", "50", check=True).stdout)


def test_show_prints_every_field_of_a_crafted_image_escaped(home, crafted_gallery):
    for path in crafted_gallery:
        for args in ((), ("--json",)):
            result = home.run("show", str(path), *args, check=True)
            assert not RAW.search(result.stdout + result.stderr), repr(result.stdout)
            assert re.search(r"\\(x1b|u001b|x9b|u009b|u202e)", result.stdout), result.stdout


def test_error_messages_that_quote_a_file_name_print_escaped(home, crafted_gallery):
    missing = home.run("show", str(home.gallery / f"gone{OSC_TITLE}.png"))
    assert missing.returncode == 2 and "gone\\x1b]0;pwned\\x07.png" in missing.stderr
    broken = home.gallery.parent / f"broken{OSC8.replace('/', '_')}.png"
    broken.write_bytes(b"not a png")
    failed = home.run("show", str(broken))
    assert failed.returncode == 1 and "not a PNG file" in failed.stderr
    unknown = home.run(f"nosuchcommand{OSC_TITLE}")
    for result in (missing, failed, unknown):
        assert not RAW.search(result.stdout + result.stderr), repr(result.stderr)


def test_engine_messages_print_escaped(capsys):
    from dreamtray.cli.progress import progress_printer

    on_event = progress_printer()
    for escape in ESCAPES.values():
        on_event({"kind": "warning", "message": f"hub says {escape}"})
        on_event({"kind": "download", "stage": "message", "message": f"file {escape}"})
    printed = capsys.readouterr()
    assert "hub says" in printed.err and not RAW.search(printed.out + printed.err), repr(printed.err)
