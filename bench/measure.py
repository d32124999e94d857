"""Small measuring helpers shared by the benchmarks: clocks, medians, process memory, plain-text tables, a loopback
hub."""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

DEFAULT_CACHE = Path(os.environ.get("DREAMTRAY_BENCH_CACHE", Path.home() / ".cache" / "dreamtray-bench"))
"""Where built model folders are kept between runs (outside the repository)."""


def prepare_run() -> None:
    """Quiet the libraries, and make SIGTERM (a timeout) exit through `finally` blocks, which stop the engines."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def quiet_progress_bars() -> None:
    """No loading bars or dtype notices from diffusers and transformers (imports both: call once they are needed)."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    for logging in (diffusers_logging, transformers_logging):
        logging.disable_progress_bar()
        logging.set_verbosity_error()


def seconds(call: Callable[[], object]) -> tuple[float, object]:
    """Wall time of one call, and what it returned."""
    start = time.perf_counter()
    value = call()
    return time.perf_counter() - start, value


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def rss_mb(pid: int | None = None) -> float:
    """Resident memory of a process in MiB (this one by default)."""
    import psutil

    return psutil.Process(pid or os.getpid()).memory_info().rss / 2**20


def cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user + system, all threads) a process has used so far (this one by default).

    Unlike wall time, other work on the machine barely changes it: two ways that take the same CPU time do the same
    work, whatever their wall times say on a busy machine.
    """
    import psutil

    times = psutil.Process(pid or os.getpid()).cpu_times()
    return times.user + times.system


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextmanager
def peak_during(read: Callable[[], float], every: float = 0.02):
    """Call `read` in a thread while the block runs; yields a dict whose 'peak_mb' holds the highest value read.

    Sampling stops early when `read` raises LookupError (the process it watches is gone).
    """
    import threading

    found = {"peak_mb": read()}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            try:
                found["peak_mb"] = max(found["peak_mb"], read())
            except LookupError:
                return
            stop.wait(every)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield found
    finally:
        stop.set()
        thread.join()


def peak_rss_during(pid: int | None = None, every: float = 0.02):
    """The peak RSS (MiB) of a process while the block runs."""
    import psutil

    process = psutil.Process(pid or os.getpid())

    def rss() -> float:
        try:
            return process.memory_info().rss / 2**20
        except psutil.NoSuchProcess:
            raise LookupError("the process is gone") from None

    return peak_during(rss, every)


def maps_library(pid: int, name: str) -> bool:
    """Whether process `pid` has a shared library whose path contains `name` mapped (e.g. libtorch_cpu)."""
    return name in Path(f"/proc/{pid}/maps").read_text()


OUTPUT: list[Path] = []
"""Files that every printed table and note is also appended to, as it is made (so a run cut short keeps its figures)."""


def report(text: str) -> str:
    """Print `text` and append it to the output files."""
    print(text, flush=True)
    for path in OUTPUT:
        with path.open("a") as out:
            out.write(text + "\n")
    return text


def table(title: str, header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A fixed-width text table (also valid Markdown), reported and returned."""
    cells = [[str(c) for c in header]] + [[_cell(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = [f"\n### {title}", ""]
    for index, row in enumerate(cells):
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |")
        if index == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return report("\n".join(lines))


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


_SERVE = """
import sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from hub_server import HubServer
with HubServer() as hub:
    for pair in sys.argv[3:]:
        repo, folder = pair.split("=", 1)
        hub.add_folder(repo, Path(folder), lfs=sys.argv[2])
    print(hub.url, flush=True)
    sys.stdin.read()
"""


@contextmanager
def hub_process(repos: dict[str, Path], lfs: str = ".safetensors") -> Iterator[str]:
    """The tests' loopback hub serving `repos` (id -> folder; files ending in `lfs` as LFS files) in a process of its
    own: outside any memory limit, and not sharing this process's GIL. Yields its URL."""
    tests = str(Path(__file__).resolve().parent.parent / "tests")
    command = [sys.executable, "-c", _SERVE, tests, lfs, *(f"{repo}={folder}" for repo, folder in repos.items())]
    with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as server:
        try:
            yield server.stdout.readline().strip()
        finally:
            server.stdin.close()
            server.wait(timeout=60)
