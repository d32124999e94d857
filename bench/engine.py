"""Engine benchmark: the service path against a direct diffusers call, cold start, client cost, worker memory.

Run:  python bench/engine.py [--repeats 7] [--out figures.md]

All figures come from one run, side by side, on the `tiny` model (random weights in Stable Diffusion's shape),
so that a busy machine slows every column alike; compare ratios, not seconds, across runs.

- warm: the same request (512x512, seed, 1 and 4 steps) through LocalEngine (HTTP service + worker process),
  through an in-process Runner (the worker's code without transport), and as a direct diffusers call on a
  pipeline loaded from the same folder; order rotates every repeat; medians. The service's time is then split
  into the worker's own time (Result.seconds) and transport, and the Runner's extra over diffusers into its parts.
- cold: a fresh service to the first image, split at the progress events; and a fresh `python` doing the same
  with diffusers alone, split into import, load and generate.
- client: a fresh `python` importing dreamtray.engine.client: import time, RSS, whether torch got imported.
- worker memory: RSS of the worker with nothing loaded, after load and generate, and after idle unload.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from measure import (
    DEFAULT_CACHE,
    OUTPUT,
    maps_library,
    median,
    peak_rss_during,
    prepare_run,
    quiet_progress_bars,
    report,
    rss_mb,
    seconds,
    table,
)
from service_run import pixels, start_local_engine, timed_generate

PROMPT = "a lighthouse on a cliff at dawn, oil painting"
SEED = 42
SIZE = 512
STEP_COUNTS = (1, 4)

CLIENT_PROBE = """
import json, sys, time
start = time.perf_counter()
import dreamtray.engine.client
took = time.perf_counter() - start
rss = int(next(l for l in open('/proc/self/status') if l.startswith('VmRSS')).split()[1]) / 1024
print(json.dumps({"import_s": took, "rss_mb": rss, "torch": "torch" in sys.modules,
                  "diffusers": "diffusers" in sys.modules, "modules": len(sys.modules)}))
"""

BARE_PROBE = """
import json
rss = int(next(l for l in open('/proc/self/status') if l.startswith('VmRSS')).split()[1]) / 1024
print(json.dumps({"rss_mb": rss}))
"""

DIRECT_COLD_PROBE = """
import json, sys, time
marks = {}
start = time.perf_counter()
import torch
marks["import torch"] = time.perf_counter() - start
from diffusers import StableDiffusionPipeline
marks["import diffusers pipeline"] = time.perf_counter() - start
pipe = StableDiffusionPipeline.from_pretrained(sys.argv[1], dtype=getattr(torch, sys.argv[4]), local_files_only=True)
pipe.to(sys.argv[5]).set_progress_bar_config(disable=True)
marks["load"] = time.perf_counter() - start
image = pipe(sys.argv[2], num_inference_steps=1, guidance_scale=0.0, width=512, height=512,
             generator=torch.Generator("cpu").manual_seed(int(sys.argv[3]))).images[0]
marks["generate"] = time.perf_counter() - start
print(json.dumps(marks))
"""


def python_probe(code: str, *args: str) -> dict:
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def client_figures(repeats: int) -> list[str]:
    probes = [python_probe(CLIENT_PROBE) for _ in range(repeats)]
    bare = median(python_probe(BARE_PROBE)["rss_mb"] for _ in range(3))
    rows = [
        ("import dreamtray.engine.client (s)", median(p["import_s"] for p in probes)),
        ("RSS after import (MiB)", median(p["rss_mb"] for p in probes)),
        ("RSS of a bare python (MiB)", bare),
        ("modules loaded", int(median(p["modules"] for p in probes))),
        ("'torch' in sys.modules", any(p["torch"] for p in probes)),
        ("'diffusers' in sys.modules", any(p["diffusers"] for p in probes)),
    ]
    return [table(f"Client import (fresh process, median of {repeats})", ("figure", "value"), rows)]


def tiny_plan():
    """The engine's own decision for the tiny preset on this machine (fp32 on a CPU, bf16/fp16 on a GPU)."""
    from dreamtray.engine.presets import PRESETS
    from dreamtray.engine.server.hardware import decide, probe_machine

    machine = probe_machine()
    return machine, decide(machine, PRESETS["tiny"])


def cold_figures(root: Path, cache: Path, tiny_folder: Path) -> list[str]:
    from dreamtray.request import Request

    engine = start_local_engine(root / "cold", cache, default_model="tiny")
    request = Request(prompt=PROMPT, width=SIZE, height=SIZE, steps=1, guidance=0.0, seed=SEED, model="tiny")
    try:
        timed = timed_generate(engine, request)
    finally:
        engine.stop()
        engine.close()
    m = timed.marks
    service_rows = [
        ("service process up (python + fastapi + uvicorn)", m["client"], m["client"]),
        ("worker spawned, imports, machine probe (to 'loading')", m["loading"] - m["submitted"], m["loading"]),
        ("pipeline import + from_pretrained + placement (to 'start')", m["start"] - m["loading"], m["start"]),
        ("generate + PNG (to 'done')", m["done"] - m["start"], m["done"]),
        ("result fetched and decoded", m["result"] - m["done"], m["result"]),
    ]
    _, plan = tiny_plan()
    direct = python_probe(DIRECT_COLD_PROBE, str(tiny_folder), PROMPT, str(SEED), plan.dtype, plan.device)
    previous, direct_rows = 0.0, []
    for phase, at in direct.items():
        direct_rows.append((phase, at - previous, at))
        previous = at
    return [
        table("Cold: fresh service to the first image (tiny, 512x512, 1 step)", ("phase", "s", "at s"), service_rows),
        table("Cold: fresh python with diffusers alone, same image", ("phase", "s", "at s"), direct_rows),
    ]


def warm_figures(root: Path, cache: Path, tiny_folder: Path, repeats: int) -> list[str]:
    import torch
    from diffusers import StableDiffusionPipeline

    from dreamtray.engine.server.runner import Runner, align_weights
    from dreamtray.request import Request

    quiet_progress_bars()
    machine, plan = tiny_plan()
    pipe = StableDiffusionPipeline.from_pretrained(tiny_folder, dtype=getattr(torch, plan.dtype), local_files_only=True)
    pipe.to(plan.device).set_progress_bar_config(disable=True)
    if plan.device == "cpu":  # the same placement and plan as the engine's, so that both make the same pixels
        align_weights(pipe)
    if plan.channels_last:
        pipe.unet.to(memory_format=torch.channels_last)
        pipe.vae.to(memory_format=torch.channels_last)
    runner = Runner(cache_dir=cache, default_model="tiny", machine=machine)
    engine = start_local_engine(root / "warm", cache, default_model="tiny")

    def direct(steps: int):
        generator = torch.Generator("cpu").manual_seed(SEED)
        with torch.autocast("cpu", getattr(torch, plan.autocast)) if plan.autocast else contextlib.nullcontext():
            return pipe(
                PROMPT, num_inference_steps=steps, guidance_scale=0.0, width=SIZE, height=SIZE, generator=generator
            ).images[0]

    texts, ratio_rows, split_rows = [], [], []
    try:
        for steps in STEP_COUNTS:
            request = Request(
                prompt=PROMPT, width=SIZE, height=SIZE, steps=steps, guidance=0.0, seed=SEED, model="tiny"
            )
            calls = {
                "service": lambda: timed_generate(engine, request),
                "runner": lambda: runner.generate(request),
                "direct": lambda: direct(steps),
            }
            for call in calls.values():  # warm-up: load, first-call allocations
                call()
            times: dict[str, list[float]] = {name: [] for name in calls}
            kept: dict[str, object] = {}
            order = list(calls)
            transport = []
            for repeat in range(repeats):
                for name in order[repeat % 3 :] + order[: repeat % 3]:
                    took, kept[name] = seconds(calls[name])
                    times[name].append(took)
                transport.append(kept["service"].total - kept["service"].worker_seconds)
            service, image = kept["service"], kept["direct"]
            identical = pixels(service.result.images[0]) == image.convert("RGB").tobytes()
            med = {name: median(values) for name, values in times.items()}
            # The load of a shared machine swings between turns: each turn's ratio is taken, then their median.
            turn = {name: median(t / d for t, d in zip(times[name], times["direct"])) for name in ("runner", "service")}
            ratio_rows.append(
                (
                    steps,
                    med["direct"],
                    med["runner"],
                    med["service"],
                    turn["runner"],
                    turn["service"],
                    1000 * median(transport),
                    (med["direct"] + median(transport)) / med["direct"],
                    identical,
                )
            )
            split_rows.extend(_service_split(steps, engine, service, image))
        speed = f" + {plan.autocast} autocast" if plan.autocast else ""
        texts.append(
            table(
                f"Warm: {SIZE}x{SIZE}, tiny, {plan.device} {plan.dtype}{speed}, {repeats} turns (seconds: medians; ratios: median of "
                "each turn's x / direct; transport: service total less the worker's own time; target <= 1.05)",
                (
                    "steps",
                    "direct s",
                    "runner s",
                    "service s",
                    "runner ratio",
                    "service ratio",
                    "transport ms",
                    "(direct + transport) / direct",
                    "same pixels",
                ),
                ratio_rows,
            )
        )
        texts.append(
            table("Where the service's extra time goes (last repeat; ms)", ("steps", "part", "ms"), split_rows)
        )
        texts.append(_path_costs(image, service.result, pipe))
    finally:
        engine.stop()
        engine.close()
    return texts


def _service_split(steps: int, engine, service, image) -> list[tuple]:
    m = service.marks
    http = engine.client().http
    health = median(seconds(lambda: http.get("/health"))[0] for _ in range(20))
    return [
        (steps, "health check before submit (LocalEngine.client)", 1000 * m["client"]),
        (steps, "worker's Runner.generate (Result.seconds)", 1000 * service.worker_seconds),
        (
            steps,
            "POST + dispatch + pipe + SSE to the 'done' event, less the worker",
            1000 * (m["done"] - m["client"] - service.worker_seconds),
        ),
        (steps, "  of which the POST /v1/jobs answer (overlaps the worker)", 1000 * (m["submitted"] - m["client"])),
        (steps, "GET /v1/jobs/{id} with the result + decode", 1000 * (m["result"] - m["done"])),
        (steps, "one GET /health round trip (median of 20)", 1000 * health),
    ]


def _path_costs(image, result, pipe) -> str:
    """What the Runner adds around the pipeline call (prompt parsing, a fresh scheduler, PNG at three zlib levels
    on the model's noise and on a smooth image, the noise blurred, closer to a real picture), and the JSON steps
    of the result's way back."""
    from PIL import ImageFilter

    from dreamtray.engine.server import prompts
    from dreamtray.engine.server.runner import scheduler_for
    from dreamtray.request import Result

    def timed(call) -> float:
        return 1000 * median(seconds(call)[0] for _ in range(5))

    def png(picture, level: int) -> bytes:
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG", compress_level=level)
        return buffer.getvalue()

    rows = [
        (
            "prompts.encode: parse the prompt, tokenize it to check the window",
            timed(lambda: prompts.encode(pipe, PROMPT, "", guidance=0.0)),
            "",
        ),
        (
            "scheduler_for: a fresh scheduler from the default's config",
            timed(lambda: scheduler_for(pipe.scheduler, None)),
            "",
        ),
    ]
    smooth = image.filter(ImageFilter.GaussianBlur(3))
    for label, picture in (("noise (this model)", image), ("smooth (blurred)", smooth)):
        for level in (6, 1, 0):
            default = " (PIL default)" if level == 6 else " (what the worker uses)" if level == 1 else ""
            rows.append(
                (
                    f"PNG {picture.width}x{picture.height} {label}, compress_level={level}{default}",
                    timed(lambda: png(picture, level)),
                    len(png(picture, level)),
                )
            )
    dumped = result.model_dump_json()
    rows.append(("Result -> JSON (base64 PNG), in the worker", timed(result.model_dump_json), len(dumped)))
    rows.append(
        (
            "JSON -> Result (base64 decode), in the client",
            timed(lambda: Result.model_validate_json(dumped)),
            len(dumped),
        )
    )
    return table(
        "Costs around the pipeline call, on the result's way back (median of 5, ms)", ("step", "ms", "bytes"), rows
    )


def memory_figures(root: Path, cache: Path) -> list[str]:
    import psutil

    from dreamtray.engine.client import JobFailed
    from dreamtray.request import Request

    idle = 5.0
    engine = start_local_engine(root / "memory", cache, default_model="tiny", idle_unload=idle)
    rows = []
    try:
        service_pid = engine.health()["pid"]
        rows.append(
            ("service, no worker yet", rss_mb(service_pid), f"libtorch mapped: {maps_library(service_pid, 'libtorch')}")
        )
        try:  # a request for a missing model starts the worker, which then fails before loading anything
            engine.submit(Request(prompt=PROMPT, model="/nonexistent/model.safetensors")).result()
        except JobFailed:
            pass
        worker_pid = engine.health()["worker_pid"]
        rows.append(
            (
                "worker started, imports done, nothing loaded",
                rss_mb(worker_pid),
                f"libtorch mapped: {maps_library(worker_pid, 'libtorch')}",
            )
        )
        request = Request(prompt=PROMPT, width=SIZE, height=SIZE, steps=1, guidance=0.0, seed=SEED, model="tiny")
        with peak_rss_during(worker_pid) as peak:
            timed_generate(engine, request)
        rows.append(
            (
                "worker after load + one 512x512 image",
                rss_mb(worker_pid),
                f"peak while generating {peak['peak_mb']:.0f} MiB",
            )
        )
        started = time.monotonic()
        while psutil.pid_exists(worker_pid) and time.monotonic() - started < idle + 30:
            time.sleep(0.2)
        gone = not psutil.pid_exists(worker_pid)
        health = engine.health()
        rows.append(
            (
                f"worker after idle unload ({idle:.0f} s idle setting)",
                0.0 if gone else rss_mb(worker_pid),
                f"worker exited: {gone} after {time.monotonic() - started:.1f} s; health worker_pid={health['worker_pid']}",
            )
        )
        rows.append(("service after the worker left", rss_mb(service_pid), ""))
    finally:
        engine.stop()
        engine.close()
    return [table("Memory (RSS, MiB)", ("process, moment", "RSS MiB", "note"), rows)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="model cache (outside the repository)")
    parser.add_argument("--out", type=Path, help="also write the tables to this Markdown file")
    args = parser.parse_args()
    prepare_run()

    from dreamtray.engine.server.tiny import ensure_tiny_folder

    tiny_folder = ensure_tiny_folder(args.cache)
    if args.out:
        args.out.write_text("")
        OUTPUT.append(args.out)
    report(f"# Engine benchmark, {time.strftime('%Y-%m-%d %H:%M')}, python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="dreamtray-bench-") as scratch:
        root = Path(scratch)
        client_figures(args.repeats)
        cold_figures(root, args.cache, tiny_folder)
        warm_figures(root, args.cache, tiny_folder, args.repeats)
        memory_figures(root, args.cache)


if __name__ == "__main__":
    main()
