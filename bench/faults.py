"""Faults, timed: a stalled worker (SIGSTOP) until the user's message and until the next job's image, and
`engine stop` during a job until no process of the engine is left. The tiny model through the real service.

    python bench/faults.py [--stall 5] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil
from service_run import start_local_engine

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from fixtures_engine import first_step, process_gone  # noqa: E402

from dreamtray.engine.client import JobFailed
from dreamtray.request import Request

SLOW = {"width": 256, "height": 256, "steps": 60}
SMALL = {"width": 64, "height": 64, "steps": 2}


def watchdog_run(root: Path, cache: Path, stall: float) -> tuple[float, float]:
    """Seconds from SIGSTOP of the worker to the job's failure message, and to the queued job's image."""
    engine = start_local_engine(root, cache, default_model="tiny", stall_seconds=stall)
    try:
        engine.submit(Request(prompt="warm", seed=1, **SMALL)).result()
        job = engine.submit(Request(prompt="frozen", seed=1, **SLOW))
        first_step(job)
        waiting = engine.submit(Request(prompt="next", seed=2, **SMALL))
        os.kill(engine.health()["worker_pid"], signal.SIGSTOP)
        stopped = time.perf_counter()
        try:
            job.result()
            raise AssertionError("the stalled job did not fail")
        except JobFailed:
            told = time.perf_counter() - stopped
        waiting.result()
        return told, time.perf_counter() - stopped
    finally:
        engine.stop()


def stop_run(root: Path, cache: Path) -> float:
    """Seconds from `engine stop` during a job until the service, its worker and helpers are all gone."""
    engine = start_local_engine(root, cache, default_model="tiny")
    job = engine.submit(Request(prompt="long", seed=1, **SLOW))
    first_step(job)
    service = psutil.Process(engine.health()["pid"])
    family = [service, *service.children(recursive=True)]
    started = time.perf_counter()
    engine.stop()
    seconds = time.perf_counter() - started
    left = [process.pid for process in family if not process_gone(process.pid)]
    if left:
        raise AssertionError(f"processes left after engine stop: {left}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stall", type=float, default=5.0, help="engine.stall_seconds for the watchdog runs")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cache = Path(os.environ.get("DREAMTRAY_BENCH_CACHE", Path.home() / ".cache" / "dreamtray-bench"))
    told, image, stopped = [], [], []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="dreamtray-faults-") as scratch:
            a, b = watchdog_run(Path(scratch) / "watchdog", cache, args.stall)
            told.append(a)
            image.append(b)
            stopped.append(stop_run(Path(scratch) / "stop", cache))
    print(f"| fault (tiny model, {args.repeats} runs, median [min-max]) | seconds |")
    print("| --- | --- |")
    for name, values in (
        (f"stalled worker (SIGSTOP) -> the user's message (stall_seconds={args.stall:g})", told),
        ("stalled worker (SIGSTOP) -> the queued job's image (new worker started)", image),
        ("`engine stop` during a job -> no engine process left", stopped),
    ):
        print(f"| {name} | {statistics.median(values):.2f} [{min(values):.2f}-{max(values):.2f}] |")


if __name__ == "__main__":
    main()
