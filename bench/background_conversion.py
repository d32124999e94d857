"""A model of one's own on the fast path: its first image when the worker converts it first, against its first image
while it converts in the background, and when OpenVINO takes over. Side by side, each from an empty cache.

Run:  python bench/background_conversion.py [--shape sdxs|sd-turbo] [--size 512]

The model is the shape's diffusers folder (random weights, bench/architectures.py), asked for by its path, as a
user's own model is; `quality = fast`, one step. Each way runs in a process of its own (an engine worker's runner);
the peak RSS of that process and of the conversion process beside it are sampled together. Printed: wall and CPU
seconds of the first image, of the background conversion, and of the first image on OpenVINO after it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from architectures import ensure_folder
from measure import DEFAULT_CACHE, peak_during, prepare_run, table

CHILD = """
import json, sys, time
from pathlib import Path
from dreamtray.engine.server.runner import Runner
from dreamtray.engine.settings import Overrides
from dreamtray.request import Request

folder, cache, background, size = sys.argv[1], Path(sys.argv[2]), sys.argv[3] == "yes", int(sys.argv[4])
runner = Runner(cache_dir=cache, default_model=folder, overrides=Overrides(background=background))
request = Request(prompt="a lighthouse at dusk", seed=1, width=size, height=size, steps=1, quality="fast")

def timed(seed):
    start, cpu = time.perf_counter(), time.process_time()
    result = runner.generate(request.model_copy(update={"seed": seed}))
    return {"wall": time.perf_counter() - start, "cpu": time.process_time() - cpu, "warnings": result.warnings,
            "openvino": runner.loaded.extras.get("openvino") is not None}

row = {"first": timed(1)}
if background:
    [process] = runner.conversions.running.values()
    start = time.perf_counter()
    process.wait()
    row["conversion"] = {"wall": time.perf_counter() - start, "status": process.returncode}
    row["after"] = timed(2)
row["next"] = timed(3)
print(json.dumps(row))
"""


def one_way(folder: Path, cache: Path, background: bool, size: int) -> tuple[dict, float]:
    """One worker's run from an empty cache: its figures, and the peak RSS (MiB) of it and its children."""
    command = [sys.executable, "-c", CHILD, str(folder), str(cache), "yes" if background else "no", str(size)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as worker:
        tree = psutil.Process(worker.pid)

        def rss() -> float:
            try:
                processes = [tree, *tree.children(recursive=True)]
            except psutil.NoSuchProcess:
                raise LookupError("the worker is gone") from None
            total = 0.0
            for process in processes:
                try:
                    total += process.memory_info().rss / 2**20
                except psutil.NoSuchProcess:
                    continue
            return total

        with peak_during(rss, every=0.2) as peak:
            out, _ = worker.communicate(timeout=3600)
    if worker.returncode:
        raise SystemExit(f"the run exited {worker.returncode}")
    return json.loads(out.strip().splitlines()[-1]), peak["peak_mb"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=("sdxs", "sd-turbo"), default="sdxs")
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    prepare_run()
    folder = ensure_folder(args.shape, DEFAULT_CACHE)
    rows = []
    for background in (False, True):
        with tempfile.TemporaryDirectory(prefix="dreamtray-bench-") as cache:
            started = time.perf_counter()
            row, peak = one_way(folder, Path(cache), background, args.size)
            whole = time.perf_counter() - started
        first, on_openvino = row["first"], row.get("after", row["next"])
        rows.append(
            (
                "in the background" if background else "by the worker, before the image",
                f"{first['wall']:.1f} ({first['cpu']:.1f} CPU)",
                "OpenVINO" if first["openvino"] else "torch",
                f"{row['conversion']['wall']:.1f} (exit {row['conversion']['status']})" if background else "-",
                f"{on_openvino['wall']:.2f}" + ("" if on_openvino["openvino"] else " (torch!)"),
                f"{row['next']['wall']:.2f}",
                f"{peak / 1024:.2f}",
                f"{whole:.0f}",
            )
        )
    load = psutil.getloadavg()
    table(
        f"{args.shape}-shaped folder as a user's own model, fast, {args.size} px, 1 step, empty cache "
        f"(load average {load[0]:.1f})",
        (
            "conversion",
            "first image s",
            "first image on",
            "conversion after it s",
            "first on OpenVINO s",
            "next s",
            "peak GiB (all processes)",
            "whole run s",
        ),
        rows,
    )


if __name__ == "__main__":
    main()
