"""A first run with a model that is not on disk, against a Hugging Face hub on 127.0.0.1 (tests/hub_server.py).

The CLI tests run the real `dreamtray generate` with `HF_ENDPOINT` pointing at the loopback hub: the engine's
worker process, which imports huggingface_hub, reads it from its environment. The download module's own
tests call it in this process with the endpoint, cache and timeout given explicitly.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from cli_env import DreamtrayHome
from hub_server import HubServer, LoopbackProxy
from PIL import Image
from tray_process import TrayProcess, open_menu_and_pick, tray_home
from xsession import wait_until

from dreamtray.engine.downloads import human
from dreamtray.engine.server.download import TRIES, DownloadCancelled, DownloadError, Hub, ensure_snapshot

REPO = "dreamtray/tiny"
UNET = "unet/diffusion_pytorch_model.safetensors"
PATTERNS = ["*.json", "*.txt", "tokenizer*/*", "*.safetensors"]
GENERATE = ("generate", "a lighthouse at dusk", "--size", "64x64", "--steps", "2", "--seed", "5", "--json")
"""Quality as the config says (balanced there): only the model is downloaded (fast adds the tiny decoder's)."""


@pytest.fixture
def hub(tiny_folder):
    with HubServer() as server:
        server.add_folder(REPO, tiny_folder)
        yield server


def cli_home(root: Path, hub: HubServer, **extra: str) -> DreamtrayHome:
    """A private home whose engine fetches models from the loopback hub into `root/hf`, with no proxy."""
    return use_hub(DreamtrayHome.create(root, model=REPO), hub, **extra)


def use_hub(home: DreamtrayHome, hub: HubServer, **extra: str) -> DreamtrayHome:
    for key in [k for k in home.env if k.upper().endswith("_PROXY") or k.startswith("HF_")]:
        del home.env[key]
    home.env.update(HF_ENDPOINT=hub.url, HF_HOME=str(home.root / "hf"), HF_HUB_DISABLE_TELEMETRY="1", **extra)
    config = home.root / "config" / "dreamtray" / "config.toml"
    config.write_text(f'model = "{REPO}"\n[engine]\nquality = "balanced"\n')
    return home


def repo_size(hub: HubServer) -> int:
    return sum(len(f.data) for f in hub.repos[REPO].files.values())


def test_first_run_says_size_and_place_shows_progress_and_second_run_fetches_nothing(tmp_path, hub):
    home = cli_home(tmp_path, hub)
    destination = tmp_path / "hf" / "hub" / "models--dreamtray--tiny"
    try:
        first = home.run(*GENERATE, check=True)
        assert f"Downloading {REPO}: {human(repo_size(hub))} in 10 files, into {destination}" in first.stderr
        assert f"Downloaded {REPO} ({human(repo_size(hub))} in " in first.stderr
        assert "all files verified" in first.stderr
        assert "download:" in first.stderr  # the CLI's byte bar
        image = Path(json.loads(first.stdout)["images"][0])
        assert Image.open(image).size == (64, 64)
        for path, file in hub.repos[REPO].files.items():
            served = hub.downloads(path)
            assert [entry.sent for entry in served] == [len(file.data)], path
            assert (destination / "snapshots" / hub.repos[REPO].commit / path).read_bytes() == file.data
        requests = len(hub.log)

        home.stop_engine()  # a fresh engine process: nothing is remembered in memory
        second = home.run(*GENERATE, check=True)
        assert "Downloading" not in second.stderr
        assert len(hub.log) == requests  # not even the model-info call
        assert Image.open(json.loads(second.stdout)["images"][0]).tobytes() == Image.open(image).tobytes()
    finally:
        home.stop_engine()


def test_a_connection_cut_in_the_middle_of_a_file_resumes_without_fetching_the_start_again(tmp_path, hub):
    size = len(hub.repos[REPO].files[UNET].data)
    cut = size // 2 + 12345
    hub.cut_at(UNET, cut)
    home = cli_home(tmp_path, hub)
    try:
        result = home.run(*GENERATE, check=True)
    finally:
        home.stop_engine()
    served = hub.downloads(UNET)
    assert [(entry.range, entry.sent) for entry in served] == [(None, cut), (f"bytes={cut}-", size - cut)]
    assert Image.open(json.loads(result.stdout)["images"][0]).size == (64, 64)


def test_a_silent_server_is_waited_for_a_bounded_time_and_named_in_the_error(tmp_path, hub):
    hub.silent_for(30)
    home = cli_home(tmp_path, hub, HF_HUB_DOWNLOAD_TIMEOUT="1")
    try:
        result = home.run(*GENERATE, timeout=120)
    finally:
        home.stop_engine()
    assert result.returncode != 0
    assert f"The hub at {hub.url} sent nothing for 1 s while sending model_index.json, {TRIES} times" in result.stderr
    assert "run again to resume" in result.stderr
    assert len(hub.downloads("model_index.json")) == TRIES


def test_a_disk_too_small_is_refused_before_any_byte_is_fetched(tmp_path, hub):
    small = tmp_path / "small"
    small.mkdir()
    home = cli_home(tmp_path, hub, HF_HUB_CACHE=str(small))
    # a real 1 MB filesystem: a tmpfs in a mount namespace of the command's own (root, or an unprivileged
    # user namespace), which vanishes with it; the engine it starts sees the same mount
    mount_then_run = 'mount -t tmpfs -o size=1m dreamtray-test "$0" && exec "$@"'
    command = ["unshare", "--mount", "--map-root-user", "--", "sh", "-c", mount_then_run, str(small)]
    try:
        result = subprocess.run(
            [*command, sys.executable, "-m", "dreamtray", *GENERATE],
            env=home.env,
            capture_output=True,
            text=True,
            timeout=180,
        )
    finally:
        home.stop_engine()
    assert "mount" not in result.stderr.split("\n")[0], f"could not mount a small filesystem: {result.stderr}"
    assert result.returncode != 0
    assert f"{REPO} needs {human(repo_size(hub))} of free space in {small}, which has 1.0 MB." in result.stderr
    assert "HF_HOME" in result.stderr
    assert hub.downloads() == []
    assert len(hub.api_calls()) == 1
    assert list(small.iterdir()) == []  # the tmpfs went with its mount namespace; the folder under it is empty


def test_ctrl_c_cancels_the_download_in_the_engine_and_the_next_run_resumes(tmp_path, hub):
    hub.crawl_at(300_000)
    home = cli_home(tmp_path, hub)
    blobs = tmp_path / "hf" / "hub" / "models--dreamtray--tiny" / "blobs"
    command = [sys.executable, "-m", "dreamtray", *GENERATE]
    try:
        process = subprocess.Popen(command, env=home.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_until(lambda: any(incomplete_sizes(blobs).values()), 120, "bytes on disk")
            process.send_signal(signal.SIGINT)
            _, err = process.communicate(timeout=60)
        finally:
            process.kill()
        assert process.returncode == 130, err
        assert f"Downloading {REPO}" in err and "Cancelled." in err
        # the CLI exits once it has asked for the cancel; the worker stops writing when it sees it: only then
        # are the kept bytes final (a loaded machine can write a few more chunks in between)
        wait_until(lambda: engine_running(home) is None, 120, "the engine's worker to stop the cancelled job", 0.2)
        kept = incomplete_sizes(blobs)

        hub.crawl_at(0)
        again = home.run(*GENERATE, check=True)
        # had the engine gone on, this run would have found the model complete and said nothing
        start = next(line for line in again.stderr.splitlines() if line.startswith(f"Downloading {REPO}"))
        assert "already here from an earlier try" in start or "in 10 files" not in start, start
    finally:
        home.stop_engine()
    for entry in (e for e in hub.downloads() if e.range):  # each resumed where its kept bytes end
        assert entry.range == f"bytes={kept[hub.repos[REPO].files[entry.file].etag]}-"
    assert Image.open(json.loads(again.stdout)["images"][0]).size == (64, 64)


def incomplete_sizes(blobs: Path) -> dict[str, int]:
    """The `.incomplete` blobs by etag and size; one that becomes complete (renamed) as it is looked at is left out."""
    sizes = {}
    for path in blobs.glob("*.incomplete"):
        try:
            sizes[path.name.removesuffix(".incomplete")] = path.stat().st_size
        except FileNotFoundError:
            pass
    return sizes


def engine_running(home: DreamtrayHome) -> str | None:
    """The id of the job the local engine is running (None when it runs none), from `dreamtray engine status`."""
    status = home.run("engine", "status", check=True)
    return json.loads(status.stdout)["running"]


def in_process(hub: HubServer, cache: Path, timeout: float = 2.0) -> Hub:
    return Hub(endpoint=hub.url, cache=cache / "hub", timeout=timeout)


def test_a_damaged_file_is_refused_deleted_and_fetched_anew_next_time(tmp_path, hub):
    hub.damage(UNET)
    events: list[dict] = []
    local = in_process(hub, tmp_path)
    with pytest.raises(DownloadError) as refused:
        ensure_snapshot(REPO, PATTERNS, record_dir=tmp_path, emit=events.append, hub=local)
    file = hub.repos[REPO].files[UNET]
    assert f"{UNET} from {hub.url} is not the file the hub declared (sha256 " in str(refused.value)
    assert f"expected {file.sha256[:12]}" in str(refused.value)
    repo_folder = local.repo_folder(REPO)
    assert sorted(p.name for p in (repo_folder / "blobs").iterdir() if file.sha256 in p.name) == []
    assert not (repo_folder / "snapshots" / hub.repos[REPO].commit / UNET).exists()
    assert not (tmp_path / "downloads").exists()  # no record of a complete download

    hub.faults.damaged.clear()
    folder = ensure_snapshot(REPO, PATTERNS, record_dir=tmp_path, emit=events.append, hub=local)
    assert (folder / UNET).read_bytes() == file.data
    for path in hub.repos[REPO].files:  # the files verified the first time are not fetched again
        assert len(hub.downloads(path)) == (2 if path == UNET else 1), path


def test_a_crawling_server_counts_as_stalled(tmp_path, hub):
    hub.crawl_at(2000)
    with pytest.raises(DownloadError) as stalled:
        ensure_snapshot(REPO, PATTERNS, record_dir=tmp_path, emit=lambda e: None, hub=in_process(hub, tmp_path, 1.0))
    # the small files arrive before the window closes; the first large one does not
    pattern = rf"sent only [\d.]+ kB in 1 s while sending text_encoder/model.safetensors, {TRIES} times in a row"
    assert re.search(pattern, str(stalled.value)), stalled.value


def test_cancel_keeps_the_bytes_and_the_next_run_resumes(tmp_path, hub):
    local = in_process(hub, tmp_path)
    file = hub.repos[REPO].files[UNET]
    partial = local.repo_folder(REPO) / "blobs" / f"{file.sha256}.incomplete"
    hub.cut_at(UNET, 1_000_000)  # the connection drops there; cancel comes while it is resumed

    def cancelled() -> bool:
        return partial.exists() and partial.stat().st_size >= 1_000_000

    with pytest.raises(DownloadCancelled, match="next run resumes"):
        ensure_snapshot(REPO, PATTERNS, record_dir=tmp_path, emit=lambda e: None, cancelled=cancelled, hub=local)
    assert partial.stat().st_size == 1_000_000
    events: list[dict] = []
    folder = ensure_snapshot(REPO, PATTERNS, record_dir=tmp_path, emit=events.append, hub=local)
    assert (folder / UNET).read_bytes() == file.data
    assert [e.range for e in hub.downloads(UNET)][-1] == "bytes=1000000-"
    start = events[0]
    assert start["stage"] == "start" and "1.0 MB of it already here from an earlier try" in start["message"]
    progress = [e for e in events if e["stage"] == "progress"]
    assert progress[-1]["done"] == progress[-1]["total"] == start["total"]
    assert all(a["done"] <= b["done"] for a, b in zip(progress, progress[1:]))


def test_downloads_go_through_the_proxy_the_system_names(tmp_path, hub, monkeypatch):
    """HTTP(S)_PROXY from the environment (where desktops and the shell put the system proxy) is used."""
    for key in [k for k in os.environ if k.upper() in ("NO_PROXY", "ALL_PROXY", "HTTPS_PROXY")]:
        monkeypatch.delenv(key)
    with LoopbackProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        folder = ensure_snapshot(
            REPO, PATTERNS, record_dir=tmp_path, emit=lambda e: None, hub=in_process(hub, tmp_path)
        )
    unet = hub.repos[REPO].files[UNET]
    assert (folder / UNET).read_bytes() == unet.data
    assert proxy.urls[0] == f"{hub.url}/api/models/{REPO}/revision/main?blobs=true"
    assert f"{hub.cdn_url}/lfs/{REPO}/{unet.sha256}" in proxy.urls  # the redirect to the CDN too
    assert len(proxy.urls) == len(hub.log)


def test_huggingface_hub_itself_downloads_from_the_loopback_hub(tmp_path, hub):
    """The server speaks the hub's API as huggingface_hub reads it (HEAD metadata, redirects, tree listing)."""
    script = (
        "from huggingface_hub import snapshot_download; "
        f"print(snapshot_download({REPO!r}, allow_patterns={PATTERNS!r}))"
    )
    env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY") and not k.startswith("HF_")}
    env.update(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf"), HF_HUB_DISABLE_TELEMETRY="1")
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    folder = Path(result.stdout.strip())
    for path, file in hub.repos[REPO].files.items():
        assert (folder / path).read_bytes() == file.data


def test_the_tray_shows_the_download_and_its_menu_cancels_it(tray, tmp_path, hub):
    """Notifications at the start and the end, progress in the tooltip, a menu entry that cancels; then resume."""
    hub.crawl_at(300_000)  # about 12 s for the model: time to watch it and to cancel it from the menu
    home = use_hub(tray_home(tmp_path, tray), hub)
    process = TrayProcess(home)
    try:
        icon, _ = process.wait_docked()
        process.wait_started()
        tray.run(["dunstctl", "close-all"], check=True)
        seen = {n.get("id") for n in tray.notifications()}
        assert process.trigger("clipboard", "--prompt", "a lighthouse at dusk").returncode == 0

        def downloading() -> str | None:
            tooltip = process.status()["tooltip"]
            return tooltip if f"downloading {REPO}: " in tooltip else None

        tooltip = wait_until(downloading, 60, "the download in the tooltip", 0.2)
        assert re.search(rf"downloading {REPO}: \d+% of {re.escape(human(repo_size(hub)))}", tooltip), tooltip
        open_menu_and_pick(tray, icon, ["Down", "Return"])  # the first item that can be chosen: Cancel download
        process.wait_idle(timeout=60)
        def told(title: str) -> list[dict[str, str]]:  # notifications come from a thread of their own
            return wait_until(
                lambda: (new := [n for n in tray.notifications() if n.get("id") not in seen])
                and any(n["summary"] == title for n in new)
                and new,
                10,
                title,
            )

        cancelled = told("The image was cancelled")
        summaries = [n["summary"] for n in cancelled]
        assert "Downloading a model" in summaries and "The image was cancelled" in summaries, summaries
        body = next(n["body"] for n in cancelled if n["summary"] == "The image was cancelled")
        assert "Download cancelled" in body and "the next run resumes" in body
        assert "Model downloaded" not in summaries
        assert not list(home.gallery.glob("*.png"))

        hub.crawl_at(0)
        seen |= {n.get("id") for n in cancelled}
        result = process.trigger("clipboard", "--prompt", "a lighthouse at dusk", "--wait")
        assert result.returncode == 0, result.stderr
        finished = told("Model downloaded")
        start = next(n["body"] for n in finished if n["summary"] == "Downloading a model")
        assert "already here from an earlier try" in start or "in 10 files" not in start  # what was kept stays
        done = next(n["body"] for n in finished if n["summary"] == "Model downloaded")
        assert f"Downloaded {REPO}" in done and "all files verified" in done
        assert "downloading" not in process.status()["tooltip"]
        assert len(list(home.gallery.glob("*.png"))) == 1
    finally:
        process.stop()
        home.stop_engine()
