"""The first fast image on a fresh install, as a user gets it: SD-Turbo's and SDXS's shapes served as their presets'
ready-made OpenVINO repos from the loopback hub, so the download is real (and local).

Run (as root for the memory limits):
    python bench/first_run.py [--shapes sdxs,sd-turbo] [--warm 5] [--limits 8,16] [--weights fp16|int8] [--out F]

For each shape, random weights in its exact shape (bench/architectures.py) are exported once in optimum-intel's
layout (bench/openvino_exports.py; SD-Turbo's with a TAESD-shaped decoder as rupeshs/taesd-ov holds one) and
served by tests/hub_server.py in a process of its own under the preset's repo names (`Preset.fast_files`). Then, in
a fresh home (XDG folders, Hugging Face cache, config `model = PRESET`), through the real command line:

1. fresh install to the first fast image: `dreamtray generate --quality fast` (the engine starts, downloads, loads,
   compiles, draws): wall time, the download's own seconds (the CLI's "Downloaded ..." line) and the time after it,
   CPU seconds and peak RSS of the engine's processes (every process started with this run's marker in its
   environment but the command line itself, sampled every 0.2 s), the download's size on disk and what the engine
   keeps beside it (its cache folder: compiled programs and the like);
2. the next image (a second `generate`); 3. warm images through the engine as the tray sends them (LocalEngine
   over HTTP, `--warm` of them: median wall and the worker's own seconds); 4. `dreamtray engine stop`, then the
   first image after it;
5. step 1 again in a fresh home under each memory limit (`--limits`, GB): the command line and everything it starts
   run in a memory cgroup of its own (v1 or v2, whichever the machine has), made inside the cgroup this bench runs in,
   so the limit in effect is the lower of the two (the effective one is printed). Whether the image was made, any
   process killed for memory (the cgroup's OOM-kill count), and the cgroup's peak. Without a cgroup it can make
   (no root, no memory controller), it says so and skips these rows.

The issue's targets (docs/fast-path.md) are printed beside each figure. The engine is whatever this checkout runs
(worker, back end): re-run after changing it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from measure import DEFAULT_CACHE, hub_process, peak_during, prepare_run, report, table
from openvino_exports import ensure_decoder_export, ensure_export, folder_bytes

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from cli_env import DreamtrayHome  # noqa: E402

PROMPT = "a lighthouse on a cliff at dawn, oil painting"
MARKER = "DREAMTRAY_FIRST_RUN_BENCH"
"""An environment variable set for each run: every process of its engine inherits it, which is how they are found."""
TARGETS = {
    "fresh_s": "<= 30 s after the download",
    "peak": "<= 4 GB",
    "limits": "image made, nothing killed",
    "warm": {"sdxs": "<= 0.4 s", "sd-turbo": "<= 1.0 s"},
    "after_stop": "<= 3 s",
    "idle": "ready worker <= 200 MB",
    "disk": "<= 1x the download",
}

# ----------------------------------------------------------------------------------------------- process sampling


@dataclass
class Sampled:
    peak_mb: float = 0.0
    cpu: dict[int, float] = field(default_factory=dict)
    """CPU seconds last seen per process."""
    before: dict[int, float] = field(default_factory=dict)
    """CPU seconds of the processes that were already running when sampling began (an engine kept warm)."""
    last_mb: float = 0.0

    @property
    def cpu_seconds(self) -> float:
        """CPU seconds the processes used while the block ran."""
        return sum(seconds - self.before.get(pid, 0.0) for pid, seconds in self.cpu.items())


@contextlib.contextmanager
def engine_processes(marker: str, exclude: set[int], every: float = 0.2) -> Iterator[Sampled]:
    """Sample the summed RSS and the CPU time of every process whose environment holds `MARKER=marker`, but those
    in `exclude` (filled in by the caller: the command line's own process), while the block runs."""
    import psutil

    sampled, known = Sampled(), {}

    def ours(process) -> bool:
        if process.pid not in known:
            try:
                known[process.pid] = process.environ().get(MARKER) == marker
            except (psutil.Error, OSError):
                known[process.pid] = False
        return known[process.pid] and process.pid not in exclude

    def total_mb() -> float:
        total = 0.0
        for process in psutil.process_iter():
            try:
                if ours(process):
                    total += process.memory_info().rss / 2**20
                    times = process.cpu_times()
                    sampled.cpu[process.pid] = times.user + times.system
            except (psutil.Error, OSError):
                continue
        sampled.last_mb = total
        return total

    with peak_during(total_mb, every) as peak:
        sampled.before = dict(sampled.cpu)  # from the first sample, taken as the block begins
        try:
            yield sampled
        finally:
            sampled.peak_mb = max(peak["peak_mb"], total_mb())


# ------------------------------------------------------------------------------------------------------ cgroups


@dataclass
class Limit:
    """A memory cgroup of its own for one run, inside the one this process runs in."""

    folder: Path
    version: int

    def enter_command(self) -> list[str]:
        """A prefix that moves the command into the cgroup before it starts (its children stay in it)."""
        return ["sh", "-c", f'echo $$ > {self.folder / "cgroup.procs"} && exec "$@"', "sh"]

    def peak_bytes(self) -> int:
        name = "memory.max_usage_in_bytes" if self.version == 1 else "memory.peak"
        with contextlib.suppress(OSError, ValueError):
            return int((self.folder / name).read_text().split()[0])
        return 0

    def oom_kills(self) -> int:
        name = "memory.oom_control" if self.version == 1 else "memory.events"
        with contextlib.suppress(OSError):
            for line in (self.folder / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        return 0

    def effective_bytes(self) -> int:
        """The lowest limit on the way up from this cgroup (what the run really had)."""
        name = "memory.limit_in_bytes" if self.version == 1 else "memory.max"
        lowest, folder = 2**63, self.folder
        root = Path("/sys/fs/cgroup/memory" if self.version == 1 else "/sys/fs/cgroup")
        while folder != root.parent and (folder / name).exists():
            text = (folder / name).read_text().strip()
            if text.isdigit():
                lowest = min(lowest, int(text))
            folder = folder.parent
        return lowest

    def remove(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                self.folder.rmdir()
                return
            except OSError:
                time.sleep(0.2)  # its last processes are still exiting


def own_cgroup(version: int) -> Path | None:
    """The memory cgroup folder this process runs in (v1: the memory controller's line; v2: the unified one)."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if version == 1 and "memory" in controllers.split(","):
            base = Path("/sys/fs/cgroup/memory")
        elif version == 2 and controllers == "":
            base = Path("/sys/fs/cgroup")
        else:
            continue
        parts = [part for part in path.split("/") if part]
        # Inside a container the mount's root is some cgroup down the path: try the path's tails, longest first.
        for start in range(len(parts) + 1):
            candidate = base.joinpath(*parts[start:])
            if candidate.is_dir() and (candidate / "cgroup.procs").exists():
                return candidate
    return None


def make_limit(limit_bytes: int, name: str) -> tuple[Limit | None, str]:
    """A fresh memory cgroup limited to `limit_bytes` (v1 if the memory controller is mounted there, else v2), or
    None and why not."""
    v1 = Path("/sys/fs/cgroup/memory")
    v2 = Path("/sys/fs/cgroup/cgroup.controllers")
    if (v1 / "memory.limit_in_bytes").exists():
        version, limit_file = 1, "memory.limit_in_bytes"
    elif v2.exists() and "memory" in v2.read_text().split():
        version, limit_file = 2, "memory.max"
    else:
        return None, "no memory controller is mounted (neither cgroup v1 nor v2)"
    parent = own_cgroup(version)
    if parent is None:
        return None, f"this process's cgroup v{version} folder was not found"
    folder = parent / name
    try:
        folder.mkdir()
        (folder / limit_file).write_text(str(limit_bytes))
    except OSError as exc:
        with contextlib.suppress(OSError):
            folder.rmdir()
        return None, f"cannot make a cgroup v{version} in {parent} ({exc.strerror or exc}; root is needed)"
    return Limit(folder, version), ""


# ------------------------------------------------------------------------------------------------------- runs


@dataclass
class Run:
    wall: float
    code: int
    output: str
    sampled: Sampled

    @property
    def download_seconds(self) -> float:
        return sum(float(s) for s in re.findall(r"Downloaded \S+ \([^)]*? in ([\d.]+) s", self.output))


def home_for(root: Path, preset: str, hub_url: str, marker: str) -> DreamtrayHome:
    home = DreamtrayHome.create(root, model=preset)
    for key in [k for k in home.env if k.upper().endswith("_PROXY") or k.startswith("HF_")]:
        del home.env[key]
    home.env.update(HF_ENDPOINT=hub_url, HF_HOME=str(root / "hf"), HF_HUB_DISABLE_TELEMETRY="1", **{MARKER: marker})
    return home


def cli(home: DreamtrayHome, marker: str, *args: str, prefix: list[str] = (), timeout: float = 900) -> Run:
    """One `dreamtray` command in `home`, with its engine's processes sampled while it runs."""
    exclude: set[int] = set()
    with engine_processes(marker, exclude) as sampled:
        started = time.perf_counter()
        process = subprocess.Popen(
            [*prefix, sys.executable, "-m", "dreamtray", *args],
            env=home.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            encoding="utf-8",
            errors="replace",
        )
        exclude.add(process.pid)
        try:
            output, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
        wall = time.perf_counter() - started
    return Run(wall, process.returncode, output, sampled)


WARM = """
import json, statistics, sys, time
from dreamtray.app import App
from dreamtray.request import Request
engine, walls, worker = App().local_engine, [], []
for seed in range(int(sys.argv[1])):
    started = time.perf_counter()
    result = engine.client().submit(Request(prompt=sys.argv[2], seed=100 + seed, quality="fast")).result()
    walls.append(time.perf_counter() - started)
    worker.append(result.seconds)
print(json.dumps({"walls": walls, "worker": worker}))
"""


def warm_images(home: DreamtrayHome, marker: str, count: int) -> tuple[dict, Sampled]:
    exclude: set[int] = set()
    with engine_processes(marker, exclude) as sampled:
        process = subprocess.Popen(
            [sys.executable, "-c", WARM, str(count), PROMPT], env=home.env, stdout=subprocess.PIPE, text=True
        )
        exclude.add(process.pid)
        output, _ = process.communicate(timeout=600)
    return json.loads(output.strip().splitlines()[-1]), sampled


def gb(mb: float) -> str:
    return f"{mb / 1024:.2f} GiB"


def repos_for(name: str, cache: Path, weights: str) -> dict[str, Path]:
    """The preset's ready-made repos (its `fast_files`), each with the folder that stands in for it."""
    from dreamtray.engine.presets import PRESETS

    files = PRESETS[name].fast_files
    repos = {files.repo: ensure_export(name, cache, weights)}
    if files.decoder:
        repos[files.decoder] = ensure_decoder_export(cache)
    return repos


def fresh_rows(name: str, url: str, scratch: Path, warm: int) -> tuple[list[tuple], str]:
    """Steps 1-4 for one shape; the rows, and the next-image/engine-stop notes."""
    marker = uuid.uuid4().hex
    home = home_for(scratch / f"{name}-fresh", name, url, marker)
    rows = []
    try:
        first = cli(home, marker, "generate", "--quality", "fast", "--seed", "1", PROMPT)
        if first.code:
            raise RuntimeError(f"the first image failed (exit {first.code}):\n{first.output[-3000:]}")
        hub_bytes = folder_bytes(home.root / "hf")
        beside = folder_bytes(home.root / "cache")
        after = first.wall - first.download_seconds
        rows.append(
            (
                "fresh install -> first fast image",
                f"{first.wall:.1f} s (download {first.download_seconds:.1f} s, after it {after:.1f} s)",
                f"{first.sampled.cpu_seconds:.1f}",
                gb(first.sampled.peak_mb),
                f"{TARGETS['fresh_s']}, {TARGETS['peak']}",
            )
        )
        rows.append(
            (
                "disk: download / beside it",
                f"{hub_bytes / 1e9:.2f} GB / {beside / 1e9:.2f} GB ({beside / max(hub_bytes, 1):.2f}x)",
                "",
                "",
                TARGETS["disk"],
            )
        )
        rows.append(("engine idle after the first image", "", "", gb(first.sampled.last_mb), TARGETS["idle"]))
        second = cli(home, marker, "generate", "--quality", "fast", "--seed", "2", PROMPT)
        rows.append(
            (
                "next image (CLI)",
                f"{second.wall:.2f} s",
                f"{second.sampled.cpu_seconds:.1f}",
                gb(second.sampled.peak_mb),
                "",
            )
        )
        figures, sampled = warm_images(home, marker, warm)
        target = TARGETS["warm"].get(name, "")
        rows.append(
            (
                f"warm images through the engine (median of {warm})",
                f"{statistics.median(figures['walls']):.3f} s (worker {statistics.median(figures['worker']):.3f} s)",
                f"{sampled.cpu_seconds / warm:.2f} per image",
                gb(sampled.peak_mb),
                target,
            )
        )
        stop = cli(home, marker, "engine", "stop")
        after_stop = cli(home, marker, "generate", "--quality", "fast", "--seed", "3", PROMPT)
        rows.append(
            (
                "first image after `engine stop`",
                f"{after_stop.wall:.2f} s" + ("" if not after_stop.code else f" (exit {after_stop.code})"),
                f"{after_stop.sampled.cpu_seconds:.1f}",
                gb(after_stop.sampled.peak_mb),
                TARGETS["after_stop"],
            )
        )
        note = "" if stop.code == 0 else f"engine stop exited {stop.code}: {stop.output[-300:]}"
    finally:
        cli(home, marker, "engine", "stop")
    return rows, note


def limited_rows(name: str, url: str, scratch: Path, limits: list[float]) -> list[tuple]:
    rows = []
    for limit_gb in limits:
        limit, why = make_limit(int(limit_gb * 2**30), f"dreamtray-first-run-{name}-{limit_gb:g}")
        if limit is None:
            rows.append((f"fresh install under {limit_gb:g} GB", f"not run: {why}", "", "", TARGETS["limits"]))
            continue
        marker = uuid.uuid4().hex
        home = home_for(scratch / f"{name}-limit-{limit_gb:g}", name, url, marker)
        try:
            run = cli(
                home, marker, "generate", "--quality", "fast", "--seed", "1", PROMPT, prefix=limit.enter_command()
            )
            made = "made" if run.code == 0 else f"FAILED (exit {run.code}): {run.output.strip().splitlines()[-1][:200]}"
            kills = limit.oom_kills()
            effective = limit.effective_bytes() / 2**30
            rows.append(
                (
                    f"fresh install under {limit_gb:g} GB (cgroup v{limit.version}, effective {effective:.1f} GiB)",
                    f"{run.wall:.1f} s, {made}, OOM kills {kills}",
                    f"{run.sampled.cpu_seconds:.1f}",
                    f"{gb(run.sampled.peak_mb)} (cgroup peak {limit.peak_bytes() / 2**30:.2f} GiB)",
                    TARGETS["limits"],
                )
            )
        finally:
            cli(home, marker, "engine", "stop")
            limit.remove()
    return rows


def cpu_description() -> str:
    """The CPU as lscpu names it, with its cores and the instruction sets that matter here."""
    try:
        info = dict(
            line.split(":", 1) for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
        )
    except (OSError, ValueError):
        return "CPU (lscpu not available)"
    flags = info.get("Flags", "").split()
    wanted = [f for f in ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8") if f in flags]
    return (
        f"{info.get('Model name', '?').strip()}, {len(os.sched_getaffinity(0))} cores usable "
        f"({info.get('Thread(s) per core', '?').strip()} thread(s) per core), {', '.join(wanted) or 'no AVX2'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="sdxs,sd-turbo", help="comma-separated: sdxs, sd-turbo")
    parser.add_argument("--warm", type=int, default=5, help="warm images through the engine")
    parser.add_argument("--limits", default="8,16", help="memory limits in GB for the fresh-install rows ('' for none)")
    parser.add_argument("--weights", default="fp16", help="the exports' weights: fp16 (as the repos are named) or int8")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where the shaped exports are kept")
    parser.add_argument("--out", type=Path, help="also write the tables to this Markdown file")
    args = parser.parse_args()
    prepare_run()
    if args.out:
        from measure import OUTPUT

        args.out.write_text("")
        OUTPUT.append(args.out)
    limits = [float(x) for x in args.limits.split(",") if x.strip()]
    report(f"# First run, {cpu_description()}; load average before: {os.getloadavg()[0]:.1f}")
    for name in args.shapes.split(","):
        repos = repos_for(name, args.cache, args.weights)
        download = sum(folder_bytes(folder) for folder in repos.values())
        scratch = Path(tempfile.mkdtemp(prefix=f"dreamtray-first-run-{name}-"))
        try:
            with hub_process(repos, lfs=".bin") as url:
                rows, note = fresh_rows(name, url, scratch, args.warm)
                rows += limited_rows(name, url, scratch, limits)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        served = ", ".join(repos)
        table(
            f"{name}-shaped, random weights, {args.weights} IR, served as {served} ({download / 1e9:.2f} GB in the "
            "repos); "
            f"load average after: {os.getloadavg()[0]:.1f}",
            ("step", "wall", "CPU s (engine)", "peak RSS (engine)", "target"),
            rows,
        )
        if note:
            report(note)


if __name__ == "__main__":
    main()
