"""Selected text: cleaning rules, and real reads of PRIMARY and of a synthetic copy under Xvfb."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from xsession import wait_until

from dreamtray.desktop.selection import NothingSelected, Selection, clean_text, read_selection


def test_control_characters_are_dropped_and_whitespace_collapsed():
    text, truncated = clean_text("  a\x07 red\x1b[31m\tfox\r\n\n jumps\u202e  ")
    assert text == "a red[31m fox jumps"
    assert truncated is False


def test_long_text_is_cut_at_a_word_boundary_and_reported():
    words = " ".join(f"word{i}" for i in range(400))
    text, truncated = clean_text(words, limit=100)
    assert truncated is True
    assert len(text) <= 100
    assert words.startswith(text)
    assert words[len(text)] == " "


def test_unbroken_long_text_is_cut_at_the_limit():
    text, truncated = clean_text("x" * 5000, limit=1000)
    assert (len(text), truncated) == (1000, True)


def test_emoji_sequences_and_accents_survive():
    text, _ = clean_text("caf\u00e9 \U0001f469\u200d\U0001f680 \u00fcber".encode())
    assert text == "caf\u00e9 \U0001f469\u200d\U0001f680 \u00fcber"


@pytest.mark.parametrize("raw", [b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", bytes(range(128, 256)) * 4])
def test_binary_data_is_not_a_selection(raw):
    with pytest.raises(NothingSelected, match="not text"):
        clean_text(raw)


@pytest.mark.parametrize("raw", ["", "   \n\t ", b"\xe2\x80\xa8\x7f  "])
def test_blank_selection_is_nothing_selected(raw):
    with pytest.raises(NothingSelected, match="Nothing is selected"):
        clean_text(raw)


@pytest.fixture
def serve_primary(xsession):
    """Serve bytes as the X PRIMARY selection with xclip, as a selecting application would."""
    servers = []

    def serve(data: bytes) -> None:
        proc = xsession.spawn(["xclip", "-quiet", "-selection", "primary", "-i"], stdin=subprocess.PIPE)
        proc.stdin.write(data)
        proc.stdin.close()
        servers.append(proc)
        wait_until(lambda: xsession.selection_owned("PRIMARY"), 5, "xclip to own PRIMARY")

    yield serve
    for proc in servers:
        proc.terminate()
        proc.wait(timeout=5)
    wait_until(lambda: not xsession.selection_owned("PRIMARY"), 5, "PRIMARY to be released")


def test_primary_selection_is_read_on_x11(serve_primary):
    serve_primary("  a lighthouse\n in a storm, oil painting  ".encode())
    assert read_selection() == Selection("a lighthouse in a storm, oil painting", False, "primary")


def test_huge_primary_selection_is_bounded_quickly(serve_primary):
    serve_primary(b"lorem ipsum dolor " * 200_000)  # 3.6 MB
    started = time.monotonic()
    selection = read_selection()
    assert time.monotonic() - started < 2
    assert selection.truncated is True
    assert 800 < len(selection.text) <= 1000
    assert selection.text.startswith("lorem ipsum dolor lorem")


def test_binary_primary_selection_is_refused(serve_primary):
    serve_primary(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00")
    with pytest.raises(NothingSelected, match="not text"):
        read_selection()


def test_no_primary_owner_means_nothing_selected(xsession):
    assert not xsession.selection_owned("PRIMARY")
    with pytest.raises(NothingSelected, match="Nothing is selected"):
        read_selection()


GTK_ENTRY = """
import sys, gi
gi.require_version("Gtk", "3.0")
from gi.repository import Gtk, GLib
window = Gtk.Window(title="dreamtray-selection-test")
entry = Gtk.Entry()
entry.set_text(sys.argv[1])
window.add(entry)
window.show_all()
def ready():
    entry.grab_focus()
    entry.select_region(0, -1)
    print("ready", flush=True)
GLib.timeout_add(300, ready)
Gtk.main()
"""


@pytest.fixture
def gtk_entry_with_selection(xsession):
    """A focused GTK text entry whose text is selected: the target of a synthetic ctrl+c."""
    proc = xsession.spawn([sys.executable, "-c", GTK_ENTRY, "a quiet harbour at dawn"], stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"ready"
    window = xsession.run(["xdotool", "search", "--sync", "--name", "dreamtray-selection-test"], text=True)
    xsession.run(["xdotool", "windowfocus", "--sync", window.stdout.split()[0]], check=True)
    yield
    proc.terminate()
    proc.wait(timeout=5)


def test_synthetic_copy_reads_selection_and_restores_clipboard_text(gtk_entry_with_selection):
    import copykitten

    copykitten.copy("what the user had copied")
    selection = read_selection(source="copy")
    assert selection == Selection("a quiet harbour at dawn", False, "copy")
    assert copykitten.paste() == "what the user had copied"


def test_synthetic_copy_restores_a_clipboard_image(gtk_entry_with_selection):
    import copykitten

    pixels = bytes(range(256)) * 4 * 4  # 4096 bytes = 32x32 RGBA
    copykitten.copy_image(pixels, 32, 32)
    assert read_selection(source="copy").text == "a quiet harbour at dawn"
    assert copykitten.paste_image() == (pixels, 32, 32)


def test_non_ascii_primary_selection_arrives_intact(serve_primary):
    serve_primary("caf\u00e9 \u00fcber Stra\u00dfe, \u6771\u4eac\u306e\u591c \U0001f30c".encode())
    assert read_selection().text == "caf\u00e9 \u00fcber Stra\u00dfe, \u6771\u4eac\u306e\u591c \U0001f30c"


def test_primary_is_read_over_the_x_connection_itself_in_pieces_when_large(serve_primary):
    from dreamtray.desktop.x_selection import read_x_selection

    text = "caf\u00e9 \U0001f30c ".encode() * 50_000  # 600 kB: more than one piece (INCR)
    serve_primary(text)
    assert read_x_selection("PRIMARY", 1000) == text[:1000]
    assert read_x_selection("PRIMARY", len(text)) == text
    assert read_x_selection("PRIMARY", 256 * 1024) == text[: 256 * 1024]


def test_no_owner_over_the_x_connection_is_empty(xsession):
    from dreamtray.desktop.x_selection import read_x_selection

    assert not xsession.selection_owned("PRIMARY")
    assert read_x_selection("PRIMARY") == b""


def test_a_broken_x_connection_is_opened_again(serve_primary):
    from dreamtray.desktop import x_selection

    serve_primary(b"a harbour at dawn")
    assert x_selection.read_x_selection("PRIMARY") == b"a harbour at dawn"
    x_selection._kept.conn.close()  # as when the X server went away and came back
    with pytest.raises(x_selection.XSelectionError):
        x_selection.read_x_selection("PRIMARY")
    assert read_selection().text == "a harbour at dawn", "the next read connects again"
