"""Crafted PNGs: every parser that reads text from a file runs in bounded time and memory, and the commands that
read such a file (`show`, `history`, `generate --from`) answer with the outcome or a clear message, never a hang
or a traceback. Speed is bounded by a generous subprocess timeout, never asserted."""

from __future__ import annotations

import json
import random
import re
import struct
import subprocess
import sys
import zlib

import pytest
from cli_env import DreamtrayHome
from png_samples import a1111_png, png_bytes

from dreamtray.images.metadata import CorruptImageError, MetadataError, parse_parameters, read_metadata
from dreamtray.images.pngchunks import MAX_TEXT_BYTES
from dreamtray.images.settings_line import MAX_SETTINGS, settings_pairs
from dreamtray.prompt_syntax import MAX_DEPTH, parse

A1111_PATTERN = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
"""The pattern A1111 reads its settings line with (modules/infotext_utils.py): the reference, on short lines."""
FIVE_MB = 5 * 2**20
GENEROUS = 60  # seconds: a bound for a hang, not a speed figure (these take well under a second here)

CRAFTED = {
    "pairs": "a fox\n" + "Steps: 4, " * (FIVE_MB // 10),
    "commas": "a fox\n" + ", " * (FIVE_MB // 2),
    "colons": "a fox\n" + ": " * (FIVE_MB // 2),
    "words": "a fox\n" + "a " * (FIVE_MB // 2),
    "open-quotes": "a fox\n" + 'Steps: 4, Seed: 2, Model: "a, ' * (FIVE_MB // 30),
    "escaped-quotes": 'a fox\nSteps: 4, Seed: 2, Size: 64x64, Model: "' + '\\"' * (FIVE_MB // 2),
    "quotes": "a fox\nSteps: 4, Seed: 2, Size: 64x64, " + '"' * FIVE_MB,
    "blanks": " " * FIVE_MB + "a fox\nSteps: 4, Seed: 2, Size: 64x64",
    "backslashes": "\\" * FIVE_MB + "Negative prompt: x\nSteps: 4, Seed: 2, Size: 64x64",
}


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def with_chunks(*chunks: bytes) -> bytes:
    png = png_bytes()
    return png[:33] + b"".join(chunks) + png[33:]


def test_the_settings_line_reads_as_a1111s_pattern_reads_it():
    alphabet = ["a", "b", " ", ",", ":", '"', "\\", "-", "/", "\t", "é", "1", "_", ".", "\u00a0"]
    rng = random.Random(25)
    for _ in range(20000):
        line = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 16)))
        assert settings_pairs(line) == A1111_PATTERN.findall(line), repr(line)
    real = 'Steps: 20, Sampler: DPM++ 2M, CFG scale: 7, Seed: 1, Size: 512x512, Hires prompt: "a, \\"b\\"", ENSD: 31337'
    assert settings_pairs(real) == A1111_PATTERN.findall(real)


def test_a_settings_line_reads_at_most_max_settings_pairs():
    assert len(settings_pairs("Steps: 4, " * (MAX_SETTINGS + 5))) == MAX_SETTINGS


@pytest.mark.parametrize("name", CRAFTED)
def test_a_5_mb_parameters_text_is_read_in_bounded_time(name, tmp_path):
    """Each in its own process, ended by a timeout if it hangs (before: 50 kB took 10 s, 5 MB never ended)."""
    path = tmp_path / f"{name}.png"
    path.write_bytes(a1111_png(CRAFTED[name]))
    script = (
        "import json, sys\n"
        "from dreamtray.images.metadata import read_metadata\n"
        "found = read_metadata(sys.argv[1]).parameters\n"
        "print(json.dumps([len(found.prompt), found.steps, found.seed, len(found.extra)]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=GENEROUS, check=True
    )
    prompt_chars, steps, seed, _ = json.loads(done.stdout)
    expected = parse_parameters(CRAFTED[name])
    assert (prompt_chars, steps, seed) == (len(expected.prompt), expected.steps, expected.seed)
    if name in ("pairs", "escaped-quotes", "quotes", "blanks"):
        assert steps == 4


def test_history_lists_the_other_images_beside_crafted_ones(tmp_path):
    home = DreamtrayHome.create(tmp_path)
    home.gallery.mkdir(parents=True)
    for name in ("commas", "words", "open-quotes"):
        (home.gallery / f"crafted-{name}.png").write_bytes(a1111_png(CRAFTED[name]))
    bomb = zlib.compress(b"a" * (MAX_TEXT_BYTES // 2))
    (home.gallery / "crafted-bombs.png").write_bytes(
        with_chunks(*(chunk(b"zTXt", f"k{i}".encode() + b"\0\0" + bomb) for i in range(4)))
    )
    (home.gallery / "normal.png").write_bytes(a1111_png("a quiet lake\nSteps: 3, Seed: 11, Size: 32x48"))
    listed = home.run("history", "--limit", "10", timeout=GENEROUS, check=True)
    assert "normal.png" in listed.stdout and "a quiet lake" in listed.stdout and "Seed: 11" in listed.stdout
    for name in ("commas", "words", "open-quotes", "bombs"):
        assert f"crafted-{name}.png" in listed.stdout
    assert "inflates beyond" in listed.stdout and "Traceback" not in listed.stderr
    as_json = json.loads(home.run("history", "--json", timeout=GENEROUS, check=True).stdout)
    assert {row["file"].rsplit("/", 1)[-1] for row in as_json} >= {"normal.png", "crafted-bombs.png"}


def test_show_and_generate_from_a_crafted_file_answer_with_a_message(tmp_path):
    home = DreamtrayHome.create(tmp_path)
    path = tmp_path / "words.png"
    path.write_bytes(a1111_png(CRAFTED["words"]))
    shown = home.run("show", str(path), timeout=GENEROUS, check=True)
    assert shown.stdout.startswith(f"{path}: 32x48 PNG")
    made = home.run("generate", "--from", str(path), timeout=GENEROUS)
    assert made.returncode != 0 and "Traceback" not in made.stderr
    assert "words.png" in made.stderr and "20000" in made.stderr, made.stderr


def test_compressed_text_is_bounded_across_all_the_chunks_of_a_file():
    """Three chunks each under the limit but beyond it together: a decompression bomb spread over chunks."""
    bomb = zlib.compress(b"a" * (MAX_TEXT_BYTES // 2))
    itxt = [chunk(b"iTXt", f"i{i}".encode() + b"\0\1\0\0\0" + bomb) for i in range(2)]
    with pytest.raises(CorruptImageError, match="inflates beyond 16 MB in all"):
        read_metadata(with_chunks(chunk(b"zTXt", b"parameters\0\0" + bomb), *itxt))
    plain = chunk(b"tEXt", b"big\0" + b"a" * (MAX_TEXT_BYTES // 2 + 1))
    with pytest.raises(CorruptImageError, match="text is beyond 16 MB in all"):
        read_metadata(with_chunks(plain, plain))


@pytest.mark.parametrize(
    "graph",
    [
        "[" * 100_000 + "]" * 100_000,
        json.dumps({"1": {"inputs": {"positive": ["2", 0], "cfg": 10**4000, "steps": 2}}}),
        json.dumps({"1": {"inputs": {"positive": 7, "negative": [], "seed": "x", "cfg": True}}}),
        json.dumps([1, 2]),
    ],
    ids=["nested", "huge-cfg", "wrong-types", "a-list"],
)
@pytest.mark.parametrize(
    "workflow",
    [
        "{" * 100_000,
        '{"nodes": 5}',
        json.dumps({"nodes": [{"type": ["CLIPTextEncode"], "widgets_values": 3}, {"type": "CLIPTextEncode"}]}),
        '{"nodes": [{"type": "CLIPTextEncode", "widgets_values": ["a red fox"]}]}',
    ],
    ids=["nested", "not-a-list", "wrong-types", "good"],
)
def test_comfyui_chunks_of_any_shape_are_read_or_warned_about(graph, workflow):
    png = png_bytes(texts={"prompt": graph, "workflow": workflow})
    found = read_metadata(png)
    assert found.source == "ComfyUI"
    assert found.prompts == (("a red fox",) if "a red fox" in workflow else ())
    if found.parameters is not None and found.parameters.cfg_scale is not None:
        assert found.parameters.cfg_scale < float("inf")


def test_lineage_that_nests_too_deep_is_left_out(tmp_path):
    from dreamtray.images.lineage import LINEAGE_KEY, lineage_of

    png = png_bytes(texts={LINEAGE_KEY: "[" * 100_000, "parameters": "a fox\nSteps: 2, Seed: 1, Size: 64x48"})
    assert [entry["file"] for entry in lineage_of(png, "parent.png")] == ["parent.png"]


@pytest.mark.parametrize(
    "prompt",
    ["(" * 10_000 + "a)" * 5_000, "[" * 10_000 + "a]" * 5_000, "(a" * 10_000, " " * 20_000 + "x BREAK y"],
    ids=["round", "square", "unclosed", "blanks"],
)
def test_prompt_syntax_reads_20000_characters_in_bounded_time(prompt):
    script = "import sys\nfrom dreamtray.prompt_syntax import parse\nprint(len(parse(sys.stdin.read())))\n"
    done = subprocess.run(
        [sys.executable, "-c", script], input=prompt, capture_output=True, text=True, timeout=GENEROUS, check=True
    )
    assert int(done.stdout) == (2 if "BREAK" in prompt else 1)


def test_brackets_weigh_up_to_max_depth():
    deep = parse("(" * (MAX_DEPTH + 10) + "a" + ")" * (MAX_DEPTH + 10))
    shallow = parse("(" * MAX_DEPTH + "a" + ")" * MAX_DEPTH)
    assert [fragment.text for fragment in deep[0]] == ["a"]
    assert deep[0][0].weight == shallow[0][0].weight == pytest.approx(1.1**MAX_DEPTH)


def test_a_file_too_large_to_be_metadata_is_refused_unread(tmp_path, monkeypatch):
    from dreamtray import image_input

    monkeypatch.setattr(image_input, "MAX_FILE_BYTES", 1000)
    path = tmp_path / "big.png"
    path.write_bytes(png_bytes() + bytes(2000))
    with pytest.raises(MetadataError, match="big.png: larger than 0 MB, too large for an image"):
        read_metadata(path)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("deep.json", "[" * 100_000, "not valid JSON: nested too deep"),
        ("deep-object.json", '{"a":' * 50_000, "not valid JSON: nested too deep"),
        ("deep.toml", "a = " + "[" * 5_000, "nested more than 100 levels"),
        ("latin.csv", "name,prompt\nx,caf\xe9", "not UTF-8 text (byte 17)"),
        ("nul\0name.toml", "", "the path holds a NUL character"),
    ],
)
def test_style_files_that_nest_deep_or_cannot_be_read_are_a_style_error(tmp_path, name, text, message):
    from dreamtray.styles import StyleError, load_style_file

    path = tmp_path / name
    if "\0" not in name:
        path.write_bytes(text.encode("latin-1") if name.endswith(".csv") else text.encode())
    with pytest.raises(StyleError, match=re.escape(message)):
        load_style_file(path)


def test_a_style_file_too_large_is_refused_unread(tmp_path, monkeypatch):
    from dreamtray import styles

    monkeypatch.setattr(styles, "MAX_STYLE_FILE_BYTES", 100)
    path = tmp_path / "big.csv"
    path.write_text("name,prompt\n" + "x,{prompt}\n" * 20)
    with pytest.raises(styles.StyleError, match="big.csv: larger than 0 MB, too large for a style file"):
        styles.load_style_file(path)


@pytest.mark.parametrize("kind", ["fifo", "device", "nul"])
def test_show_refuses_what_is_no_regular_file_at_once(tmp_path, kind):
    import os

    home = DreamtrayHome.create(tmp_path)
    path = tmp_path / "pipe.png"
    if kind == "fifo":
        os.mkfifo(path)  # nothing ever writes: a read would wait for ever
    elif kind == "device":
        path.symlink_to("/dev/zero")  # a read would never end
    else:
        with pytest.raises(MetadataError, match="the path holds a NUL character"):
            read_metadata(tmp_path / "a\0b.png")
        return
    result = home.run("show", str(path), timeout=GENEROUS)
    assert result.returncode == 1 and "not a regular file" in result.stderr and "Traceback" not in result.stderr
