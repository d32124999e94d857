"""The gallery: safe names for any prompt, atomic saving, no overwriting, history."""

from __future__ import annotations

import errno
import os
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import pytest
from png_samples import pixels, png_bytes

from dreamtray import atomic as atomic_module
from dreamtray.images.gallery import Gallery, GalleryError, default_gallery_folder, slugify
from dreamtray.images.metadata import DREAMTRAY, read_metadata, request_from_image
from dreamtray.request import Request, Result

WHEN = datetime(2026, 11, 28, 13, 5, 9)
WINDOWS_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}


def save(gallery: Gallery, request: Request, png: bytes | None = None, when: datetime = WHEN):
    return gallery.save(png or png_bytes(), request, model="tiny", sampler="euler", when=when)


def files_in(folder):
    return sorted(path.name for path in folder.iterdir())


def test_saves_with_time_slug_and_seed_and_metadata(tmp_path):
    gallery = Gallery(tmp_path / "gallery")
    original = png_bytes()
    path = save(gallery, Request(prompt="A red fox, in the SNOW!", seed=42, steps=3), original)
    assert path == tmp_path / "gallery" / "20261128-130509-a-red-fox-in-the-snow-42.png"
    metadata = read_metadata(path)
    assert metadata.source == DREAMTRAY
    assert metadata.request.prompt == "A red fox, in the SNOW!"
    assert metadata.parameters.model == "tiny"
    assert pixels(path.read_bytes()) == pixels(original)


def test_slug_is_short_and_cut_at_a_word():
    assert slugify("one two three four five six seven eight nine ten") == "one-two-three-four-five-six-seven-eight"
    assert slugify("x" * 100) == "x" * 40
    assert slugify("!!! ... ///") == "image"


HOSTILE_PROMPTS = [
    "../../etc/passwd",
    "..\\..\\Windows\\System32\\config",
    "/absolute/path",
    "C:\\Users\\me\\evil",
    ".hidden",
    "..",
    "a" * 10_000,
    "word " * 2_000,
    "nul\0byte\0here",
    "control \x01\x1b[31m\x7f chars\r\nand lines",
    "CON",
    "nul.txt",
    "LPT1",
    "com1 ",
    "\u202etxt.exe",
    "雪の中の赤い狐 🦊 Ünïcödé ﬁ ２０２６",
    '<>:"|?*',
    "~/.ssh/id_rsa",
    "%2e%2e%2fetc",
]


@pytest.mark.parametrize("prompt", HOSTILE_PROMPTS)
def test_hostile_prompts_never_escape_the_gallery_folder(tmp_path, prompt):
    folder = tmp_path / "gallery"
    path = save(Gallery(folder), Request(prompt=prompt, seed=7))
    assert path.resolve().parent == folder.resolve()
    assert files_in(folder) == [path.name]
    assert files_in(tmp_path) == ["gallery"]
    name = path.name
    assert re.fullmatch(r"20261128-130509-[^\W_]+(-[^\W_]+)*-7\.png", name), name
    assert not name.startswith(".")
    assert not any(ord(char) < 32 or char in '/\\:*?"<>|' for char in name)
    assert len(name.encode("utf-8")) <= 200
    assert name.split(".")[0].lower() not in WINDOWS_RESERVED
    assert read_metadata(path).request.prompt == Request(prompt=prompt).prompt


def test_a_failing_write_leaves_neither_the_image_nor_a_temporary_file(tmp_path, monkeypatch):
    folder = tmp_path / "gallery"

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic_module.os, "fsync", disk_full)
    with pytest.raises(GalleryError, match=r"cannot save 20261128-130509-fox-1\.png in .*No space left on device"):
        save(Gallery(folder), Request(prompt="fox", seed=1))
    assert files_in(folder) == []


def test_the_image_name_appears_only_once_the_file_is_complete(tmp_path, monkeypatch):
    folder = tmp_path / "gallery"
    data = png_bytes()
    seen_while_writing = []
    real_fsync = os.fsync

    def watching_fsync(fd):
        seen_while_writing.append([name for name in files_in(folder) if name.endswith(".png")])
        real_fsync(fd)

    monkeypatch.setattr(atomic_module.os, "fsync", watching_fsync)
    path = save(Gallery(folder), Request(prompt="fox", seed=1), data)
    assert seen_while_writing[0] == []
    assert files_in(folder) == [path.name]
    assert pixels(path.read_bytes()) == pixels(data)


def test_collisions_get_a_suffix_and_nothing_is_overwritten(tmp_path):
    folder = tmp_path / "gallery"
    gallery = Gallery(folder)
    folder.mkdir()
    (folder / "20261128-130509-fox-1.png").write_bytes(b"someone else's file")
    paths = [save(gallery, Request(prompt="fox", seed=1, steps=steps)) for steps in (1, 2, 3)]
    assert [path.name for path in paths] == [
        "20261128-130509-fox-1-2.png",
        "20261128-130509-fox-1-3.png",
        "20261128-130509-fox-1-4.png",
    ]
    assert (folder / "20261128-130509-fox-1.png").read_bytes() == b"someone else's file"
    assert [read_metadata(path).request.steps for path in paths] == [1, 2, 3]
    assert len(files_in(folder)) == 4


def test_simultaneous_saves_of_the_same_name_all_survive(tmp_path):
    gallery = Gallery(tmp_path)
    requests = [Request(prompt="fox", seed=1, steps=steps) for steps in range(1, 9)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        paths = list(pool.map(lambda request: save(gallery, request), requests))
    assert len(set(paths)) == 8
    assert len(files_in(tmp_path)) == 8
    assert sorted(read_metadata(path).request.steps for path in paths) == list(range(1, 9))


def test_without_hard_links_it_still_never_overwrites(tmp_path, monkeypatch):
    def no_links(source, target):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(atomic_module.os, "link", no_links)
    gallery = Gallery(tmp_path)
    first = save(gallery, Request(prompt="fox", seed=1, steps=1))
    second = save(gallery, Request(prompt="fox", seed=1, steps=2))
    assert (first.name, second.name) == ("20261128-130509-fox-1.png", "20261128-130509-fox-1-2.png")
    assert read_metadata(first).request.steps == 1
    assert set(files_in(tmp_path)) == {first.name, second.name}


def test_save_result_keeps_each_image_with_its_own_seed(tmp_path):
    request = Request(prompt="two foxes", steps=2, count=2)
    images = [png_bytes(64, 64), png_bytes(72, 64)]
    result = Result(request=request, images=images, seeds=[11, 12], model="tiny", sampler="euler")
    paths = Gallery(tmp_path).save_result(result, when=WHEN)
    assert [path.name for path in paths] == ["20261128-130509-two-foxes-11.png", "20261128-130509-two-foxes-12.png"]
    for path, seed, image in zip(paths, (11, 12), images):
        metadata = read_metadata(path)
        assert metadata.request == request.model_copy(update={"seed": seed, "count": 1, "model": "tiny"})
        assert pixels(path.read_bytes()) == pixels(image)


def test_a_gallery_path_that_is_a_file_gives_a_clear_error(tmp_path):
    blocker = tmp_path / "gallery"
    blocker.write_text("not a folder")
    with pytest.raises(GalleryError, match=rf"cannot save images in {re.escape(str(blocker))}"):
        save(Gallery(blocker), Request(prompt="fox", seed=1))


def test_history_lists_newest_first_with_parameters_and_reports_bad_files(tmp_path):
    gallery = Gallery(tmp_path)
    paths = [save(gallery, Request(prompt=f"image {n}", seed=n), when=datetime(2026, 1, n + 1)) for n in range(3)]
    for n, path in enumerate(paths):
        os.utime(path, (1_700_000_000 + n * 60, 1_700_000_000 + n * 60))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\nthen garbage")
    os.utime(broken, (1_600_000_000, 1_600_000_000))
    (tmp_path / ".dreamtray-half.part").write_bytes(b"partial")
    (tmp_path / "notes.txt").write_text("not an image")

    entries = gallery.history(limit=10)
    assert [entry.path for entry in entries] == [*reversed(paths), broken]
    assert [entry.metadata.parameters.prompt for entry in entries[:3]] == ["image 2", "image 1", "image 0"]
    assert entries[3].metadata is None and "broken.png" in entries[3].error
    assert [entry.path for entry in gallery.history(limit=2)] == [paths[2], paths[1]]
    with pytest.raises(ValueError, match="limit"):
        gallery.history(limit=0)


def test_history_of_a_missing_folder_is_empty(tmp_path):
    assert Gallery(tmp_path / "nothing yet").history() == []


def test_default_folder_follows_the_users_pictures_folder(tmp_path, monkeypatch):
    config_home = tmp_path / "config"
    config_home.mkdir(mode=0o700)
    (config_home / "user-dirs.dirs").write_text('XDG_PICTURES_DIR="$HOME/Bilder"\n')
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config_home))
    assert default_gallery_folder() == tmp_path / "Bilder" / "dreamtray"
    assert Gallery().folder == tmp_path / "Bilder" / "dreamtray"


def test_engine_images_are_saved_pixel_exact_and_reproduce_from_their_metadata(tmp_path, runner):
    """The real path: the engine's Result into the gallery, then `generate --from` on the second image."""
    result = runner.generate(Request(prompt="a lighthouse, at dusk", seed=1234, steps=2, width=64, height=64, count=2))
    paths = Gallery(tmp_path).save_result(result)
    assert [pixels(path.read_bytes()) for path in paths] == [pixels(png) for png in result.images]
    metadata = read_metadata(paths[1])
    assert re.fullmatch(
        rf"Steps: 2, Sampler: {re.escape(result.sampler)}, CFG scale: [0-9.]+, Seed: 1235, Size: 64x64, Model: tiny",
        metadata.texts["parameters"].splitlines()[-1],
    )
    assert metadata.parameters.cfg_scale == result.request.guidance

    again = runner.generate(request_from_image(paths[1]))
    assert again.seeds == [1235]
    assert pixels(again.images[0]) == pixels(result.images[1])
