"""A hostile or broken hub (a mirror named by HF_ENDPOINT) against the downloader: nothing written outside the
cache, every answer bounded in size and time, every refusal worded with the repo's name.

Canary files sit around the cache, at every level a `..` could reach; after each attempt the tree outside the
cache must be byte for byte what it was, and nothing inside the cache may link outside it.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from hub_server import HubFile, HubServer

from dreamtray.engine.server.download import DownloadError, Hub, ensure_snapshot
from dreamtray.engine.server.hub_http import MAX_ANSWER_BYTES, REDIRECTS

REPO = "dreamtray/tiny"
PATTERNS = ["*.json", "*.txt", "tokenizer*/*", "*.safetensors"]
EVIL = b'{"evil": true}\n'


@pytest.fixture
def hub(tiny_folder):
    with HubServer() as server:
        server.add_folder(REPO, tiny_folder)
        yield server


@pytest.fixture
def home(tmp_path) -> Path:
    """A home with canaries: files and folders at each level above the cache, one a dotfile like ~/.bashrc."""
    for path in ("victim.json", ".bashrc", "x/victim.json", "hf/victim.json", "hf/hub/victim.json", "dir/keep"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(f"canary {path}\n")
    return tmp_path


def outside(home: Path) -> dict[str, tuple[bool, bytes | None]]:
    """Every path under `home` but outside the cache (`home/hf/hub/models--*`, `.locks`), with its content."""
    cache = home / "hf" / "hub"
    seen = {}
    for path in sorted(home.rglob("*")):
        if path.is_relative_to(cache) and path != cache and path.name != "victim.json":
            continue
        content = path.read_bytes() if path.is_file() and not path.is_symlink() else None
        seen[str(path.relative_to(home))] = (path.is_symlink(), content)
    return seen


def links_leave_the_cache(home: Path) -> list[str]:
    cache = (home / "hf" / "hub").resolve()
    return [str(p) for p in cache.rglob("*") if p.is_symlink() and not p.resolve().is_relative_to(cache)]


def fetch(hub: HubServer, home: Path, **hub_settings) -> Path:
    local = Hub(endpoint=hub.url, cache=home / "hf" / "hub", timeout=hub_settings.pop("timeout", 2.0), **hub_settings)
    return ensure_snapshot(REPO, PATTERNS, record_dir=home / "state", emit=lambda e: None, hub=local)


def git_sibling(name: object, data: bytes = EVIL) -> dict:
    """A sibling whose hashes are right for `data`, so that only its name is wrong."""
    sibling = HubFile("x", data, False).sibling()
    sibling["rfilename"] = name
    return sibling


EVIL_NAMES = [
    "../../../../../victim.json",
    "../../x/victim.json",
    "tokenizer/../../../../../../.bashrc",  # `tokenizer*/*` once let `*` cross the `/`
    "tokenizer/../../../../../../victim.json",
    "/{home}/victim.json",
    "unet\\..\\..\\..\\victim.json",
    "C:/victim.json",
    "nul\x00byte.json",
    "escape\x1b]8;;https://example.com\x07.json",
    "bidi\u202e.json",
    "empty//part.json",
    "dot/./part.json",
    "",
    17,
    None,
]


@pytest.mark.parametrize("name", EVIL_NAMES, ids=[ascii(n) for n in EVIL_NAMES])
def test_a_file_name_that_leaves_its_folder_is_refused_and_nothing_outside_changes(hub, home, name):
    name = name.format(home=str(home).lstrip("/")) if isinstance(name, str) else name
    hub.declare(REPO, git_sibling(name))
    before = outside(home)
    with pytest.raises(DownloadError) as refused:
        fetch(hub, home)
    message = str(refused.value)
    assert f"for {REPO}, which dreamtray refuses" in message and "HF_ENDPOINT" in message, message
    assert "\x1b" not in message and "\x00" not in message and "\u202e" not in message
    assert outside(home) == before
    assert links_leave_the_cache(home) == []
    assert hub.downloads() == []  # refused before any file was asked for


def test_a_name_that_is_both_a_file_and_a_folder_is_refused(hub, home):
    hub.declare(REPO, git_sibling("model_index.json/config.json"))
    with pytest.raises(DownloadError, match="names both a file and a folder"):
        fetch(hub, home)
    assert hub.downloads() == []


@pytest.mark.parametrize(
    "commit", ["../../../../dir", "../../../../../dir", "/tmp/elsewhere", "main", "A" * 40, "0" * 39, "0" * 40 + "/x"]
)
def test_a_commit_id_that_is_not_one_is_refused_and_no_snapshot_folder_appears(hub, home, commit):
    hub.claim_commit(commit)
    before = outside(home)
    with pytest.raises(DownloadError) as refused:
        fetch(hub, home)
    assert f"The hub declared a commit id {ascii(commit)} for {REPO}" in str(refused.value)
    assert outside(home) == before
    assert not (home / "dir").joinpath("..", "dir", commit.rsplit("/", 1)[-1]).exists() or commit.endswith("dir")
    assert not list((home / "hf" / "hub").rglob("snapshots"))


@pytest.mark.parametrize(
    "field, value",
    [("blobId", "../../../../../victim.json"), ("blobId", "f" * 41), ("sha256", "../victim"), ("sha256", "a" * 40)],
)
def test_a_hash_that_would_name_a_blob_outside_is_refused(hub, home, field, value):
    sibling = git_sibling("unet/extra.safetensors")
    if field == "sha256":
        sibling["lfs"] = {"size": len(EVIL), "sha256": value, "pointerSize": 100}
    else:
        sibling["blobId"] = value
    hub.declare(REPO, sibling)
    before = outside(home)
    with pytest.raises(DownloadError, match=f"for {REPO}, which dreamtray refuses"):
        fetch(hub, home)
    assert outside(home) == before


def test_the_pattern_star_does_not_cross_a_slash(hub, home):
    """`tokenizer*/*` takes the tokenizer's files, not a file two folders down (which is then not fetched)."""
    hub.declare(REPO, git_sibling("tokenizer/deeper/file.bin"))
    folder = fetch(hub, home)
    assert (folder / "tokenizer" / "tokenizer.json").is_file()
    assert not (folder / "tokenizer" / "deeper").exists()


@pytest.mark.parametrize("link", ["snapshot folder", "unet folder", "blobs", "repo folder"])
def test_a_symlink_inside_the_cache_is_never_written_through(hub, home, link):
    """A link planted in the cache (by another program, or an older tool) is refused, not followed."""
    elsewhere = home / "elsewhere"
    elsewhere.mkdir()
    repo_folder = home / "hf" / "hub" / "models--dreamtray--tiny"
    place = {
        "snapshot folder": repo_folder / "snapshots" / hub.repos[REPO].commit,
        "unet folder": repo_folder / "snapshots" / hub.repos[REPO].commit / "unet",
        "blobs": repo_folder / "blobs",
        "repo folder": repo_folder,
    }[link]
    place.parent.mkdir(parents=True, exist_ok=True)
    place.symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(DownloadError, match="is a symbolic link, so writing there could land outside the cache"):
        fetch(hub, home)
    assert list(elsewhere.iterdir()) == []


def test_the_cache_itself_may_be_a_link_to_another_disk(hub, home):
    disk = home / "other-disk"
    disk.mkdir()
    shutil.rmtree(home / "hf" / "hub")
    (home / "hf" / "hub").symlink_to(disk, target_is_directory=True)
    folder = fetch(hub, home)
    assert (folder / "model_index.json").read_bytes() == hub.repos[REPO].files["model_index.json"].data


def test_a_model_info_answer_too_large_is_refused_without_reading_it(hub, home):
    hub.bloat_info(MAX_ANSWER_BYTES + 1)
    with pytest.raises(DownloadError) as refused:
        fetch(hub, home)
    assert f"answered about {REPO} (its list of files) with 16.0 MB or more" in str(refused.value)
    assert "HF_ENDPOINT" in str(refused.value)
    assert hub.api_calls()[0].sent < 1_000_000  # refused on the declared length; a body is read only to the bound


def test_a_model_info_answer_that_trickles_is_ended_within_its_total_time(hub, home):
    hub.trickle_info(200)  # 20 bytes every 0.1 s: each read is quick, the whole answer would take minutes
    started = time.monotonic()
    with pytest.raises(DownloadError) as refused:
        fetch(hub, home, answer_seconds=1.5)
    assert f"took more than 1.5 s to answer about {REPO} (its list of files)" in str(refused.value)
    assert "stall_seconds" not in str(refused.value)
    assert time.monotonic() - started < 30  # a bound far from the minutes the whole answer needs (not a timing)


@pytest.mark.parametrize("mode", ["loop", "bloated", "file"])
def test_a_redirect_loop_an_endless_redirect_body_or_a_file_address_end_with_a_clear_message(hub, home, mode):
    hub.redirect(mode)
    with pytest.raises(DownloadError) as refused:
        fetch(hub, home)
    message = str(refused.value)
    expected = {
        "loop": f"sent more than {REDIRECTS} redirects in a row",
        "bloated": f"sent more than {REDIRECTS} redirects in a row",
        "file": "to an address that is not http(s)",
    }[mode]
    assert f"The hub at {hub.url}" in message and expected in message, message
    assert "TooManyRedirects" not in message
    redirects = [e for e in hub.log if e.status == 302]
    assert len(redirects) <= REDIRECTS + 1
    if mode == "bloated":
        assert all(e.sent < 16 * 1024 * 1024 for e in redirects)  # the bodies were never read


def test_a_record_of_an_earlier_download_that_names_a_path_outside_is_ignored(hub, home):
    """The record that lets a second run skip the hub is read back with the same checks."""
    fetch(hub, home)
    record = next((home / "state" / "downloads").iterdir())
    record.write_text(record.read_text().replace(hub.repos[REPO].commit, "../../../../../dir"))
    calls = len(hub.api_calls())
    fetch(hub, home)
    assert len(hub.api_calls()) == calls + 1  # asked the hub again instead of trusting the record
    assert os.listdir(home / "dir") == ["keep"]
