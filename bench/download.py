"""Download throughput against the loopback hub (tests/hub_server.py), and what the progress display costs.

A synthetic repo (a model_index.json and a few LFS weight files of random bytes, --mb in all) is served on
127.0.0.1 by the tests' hub in a process of its own and fetched into a fresh cache folder, in turns, by:
- dreamtray's downloader with no display (events dropped),
- the same with the command line's display (`dreamtray.cli.progress.progress_printer`, tqdm on stderr,
  which goes to /dev/null so that no terminal's speed is measured),
- huggingface_hub's `snapshot_download` with its progress bars off, as a reference.
Every figure includes verifying the hashes (dreamtray) and writing the files to disk. The client's CPU
seconds (this process only; the server runs in another) say more than MB/s on a busy machine.

    python bench/download.py [--mb 256] [--files 4] [--repeats 5] [--out F]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from measure import hub_process

REPO = "bench/random-weights"
PATTERNS = ["*.json", "*.safetensors"]


def build_repo(folder: Path, megabytes: int, files: int) -> None:
    folder.mkdir(parents=True)
    (folder / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    part = megabytes * 1_000_000 // files
    for index in range(files):
        (folder / f"part{index}").mkdir()
        (folder / f"part{index}" / "model.safetensors").write_bytes(os.urandom(part))


def dreamtray_download(url: str, cache: Path, display: bool) -> tuple[int, float]:
    """One download; returns how many events the display showed, and the seconds spent showing them."""
    from dreamtray.cli.progress import progress_printer
    from dreamtray.engine.server.download import Hub, ensure_snapshot

    events, showing = 0, 0.0
    show = progress_printer() if display else None

    def emit(event: dict) -> None:
        nonlocal events, showing
        if show is not None:
            started = time.perf_counter()
            show(event)
            showing += time.perf_counter() - started
            events += 1

    with open(os.devnull, "w") as sink, contextlib.redirect_stderr(sink):
        local = Hub(endpoint=url, cache=cache / "hub", timeout=10)
        ensure_snapshot(REPO, PATTERNS, record_dir=cache, emit=emit, hub=local)
        if show is not None:
            show({"kind": "done"})
    return events, showing


def hf_download(url: str, cache: Path) -> None:
    from huggingface_hub import snapshot_download

    snapshot_download(REPO, allow_patterns=PATTERNS, cache_dir=cache / "hub", endpoint=url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=256)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    os.environ.pop("HF_HUB_OFFLINE", None)
    for key in [k for k in os.environ if k.upper().endswith("_PROXY")]:
        del os.environ[key]

    work = Path(tempfile.mkdtemp(prefix="dreamtray-bench-download-"))
    try:
        build_repo(work / "repo", args.mb, args.files)
        size = sum(p.stat().st_size for p in (work / "repo").rglob("*") if p.is_file())
        columns = {"dreamtray, no display": [], "dreamtray, CLI display": [], "huggingface_hub": []}
        cpu: dict[str, list[float]] = {name: [] for name in columns}
        shown: list[tuple[int, float]] = []
        with hub_process({REPO: work / "repo"}) as url:
            for turn in range(args.repeats):
                for name in columns:
                    cache = work / f"cache-{turn}-{len(columns[name])}-{name.split(',')[0]}"
                    started, cpu_started = time.perf_counter(), time.process_time()
                    if name == "huggingface_hub":
                        hf_download(url, cache)
                    else:
                        count, showing = dreamtray_download(url, cache, display="CLI" in name)
                        if count:
                            shown.append((count, showing))
                    columns[name].append(time.perf_counter() - started)
                    cpu[name].append(time.process_time() - cpu_started)
                    shutil.rmtree(cache)
        lines = [
            f"Download of {size / 1e6:.0f} MB in {args.files + 1} files from the loopback hub, "
            f"median of {args.repeats} (min in brackets):",
            "",
            "| downloader | MB/s | seconds | client CPU seconds |",
            "| --- | ---: | ---: | ---: |",
        ]
        for name, times in columns.items():
            best, middle = min(times), statistics.median(times)
            rate = f"{size / 1e6 / middle:.0f} ({size / 1e6 / best:.0f})"
            lines.append(f"| {name} | {rate} | {middle:.3f} | {statistics.median(cpu[name]):.3f} |")
        events = statistics.median(count for count, _ in shown)
        spent = statistics.median(seconds for _, seconds in shown)
        download = statistics.median(columns["dreamtray, CLI display"])
        lines += [
            "",
            f"The CLI display: {events:.0f} events per download, {spent * 1000:.1f} ms spent showing them "
            f"({spent / events * 1e6:.0f} µs per event, {spent / download * 100:.2f} % of the download's time).",
        ]
        text = "\n".join(lines)
        print(text)
        if args.out:
            args.out.write_text(text + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
