"""The fast path on SD-Turbo's shape, side by side in one run: each part and the whole image, five ways.

Run:  python bench/fast_path.py [--repeats 3] [--out figures.md] [--skip-compile] [--skip-sdxl]

Random weights in SD-Turbo's exact shape (bench/architectures.py) and a TAESD-shaped TAESD decoder (diffusers'
AutoencoderTiny with its default config, which is madebyollin/taesd's), 512x512, one step, guidance 0:
- the parts: text encoder, one UNet step, decoder (full VAE, TAESD), on torch (the engine's plan: bf16 autocast
  and channels-last where the CPU has bf16 units) and on OpenVINO;
- the whole image, direct (in this process): today's plan (quality balanced), TAESD on torch, OpenVINO with the
  full VAE on torch, OpenVINO + TAESD in bf16 and in int8 (quality fast); the peak RSS of this process during each;
- the same image through the engine service (quality balanced and fast) against the direct call, the worker's peak
  RSS, and the first fast job after a model load (the OpenVINO cache read and compiled, converted on a first run).
  The engine runs first and its worker exits before the direct calls load the model: they never share the RAM.
  So the two cannot alternate, and other work on the machine can differ between them: each also gets its CPU
  seconds per image (the worker's, this process's) and the load average, which tell the same work apart from
  a busier minute.
- the first fast image a user waits for through the engine: after it starts, after an unload with the ready
  worker, after an unload without it (each loads the model's cached OpenVINO modules alone);
- then torch.compile of the UNet (its cold and warm-cache compile, bench/fast_more.py) and the SDXL-Turbo shape
  (today's plan against TAESD on torch; SDXL is not converted to OpenVINO).
One-off costs are printed as they happen: converting each module (the first run only) and compiling (every load).

The TAESD decoder's folder is put in a Hugging Face cache of the benchmark's own (HF_HUB_CACHE under the bench
cache), where the engine finds it as madebyollin/taesd; nothing is downloaded (HF_HUB_OFFLINE=1). Converting
SD-Turbo's UNet takes about 9 GB of RAM and a minute or two; the IR is kept under the bench cache.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from contextlib import nullcontext
from pathlib import Path

from measure import (
    DEFAULT_CACHE,
    OUTPUT,
    cpu_seconds,
    median,
    peak_rss_during,
    prepare_run,
    quiet_progress_bars,
    report,
    seconds,
    table,
)

PROMPT = "a lighthouse on a cliff at dawn, oil painting"
SEED = 7
SIZE = 512
TAESD_REVISION = "0" * 40


def ensure_taesd_decoder_in_hub(hub: Path) -> Path:
    """A random-weight AutoencoderTiny in TAESD's shape, as the hub cache's snapshot of madebyollin/taesd."""
    repo = hub / "models--madebyollin--taesd"
    snapshot = repo / "snapshots" / TAESD_REVISION
    if (snapshot / "config.json").exists():
        return snapshot
    import torch
    from diffusers import AutoencoderTiny

    torch.manual_seed(SEED)
    AutoencoderTiny().save_pretrained(snapshot, safe_serialization=True)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(TAESD_REVISION)
    return snapshot


class Direct:
    """The model in this process, on torch as the engine's plan runs it, and its OpenVINO modules."""

    def __init__(self, folder: Path, taesd_folder: Path, cache: Path):
        import torch
        from diffusers import AutoencoderTiny, StableDiffusionPipeline

        from dreamtray.engine.server.fast import openvino_folder
        from dreamtray.engine.server.hardware import decide, probe_machine
        from dreamtray.engine.server.models import resolve_model
        from dreamtray.engine.server.openvino_backend import OpenVinoModules
        from dreamtray.engine.server.taesd import TaesdDecoder

        source = resolve_model(str(folder))
        self.plan = decide(probe_machine(), source.preset)
        self.pipe = StableDiffusionPipeline.from_pretrained(folder, dtype=torch.float32, local_files_only=True)
        self.pipe.set_progress_bar_config(disable=True)
        if self.plan.channels_last:
            for module in (self.pipe.unet, self.pipe.vae):
                module.to(memory_format=torch.channels_last)
        self.taesd = AutoencoderTiny.from_pretrained(taesd_folder, local_files_only=True)
        root = openvino_folder(cache, source)

        def modules():
            converted = OpenVinoModules.convert(self.pipe, root, "SD-Turbo shape", _say, folder)
            converted.attach_taesd_decoder(self.taesd, root, "SD-Turbo shape", _say)
            return converted

        took, self.openvino = seconds(modules)
        report(f"\nOpenVINO modules ready in {took:.1f} s (converted now if the lines above say so)")
        latent = SIZE // self.pipe.vae_scale_factor
        hidden = self.pipe.text_encoder.config.hidden_size
        took, _ = seconds(
            lambda: self.openvino.compile_for(1, latent, latent, 4, hidden, self.pipe.tokenizer.model_max_length)
        )
        report(f"OpenVINO compile for 512x512: {took:.1f} s (OpenVINO's own cache makes later ones faster)")
        self.fast_pipe = self.openvino.pipeline()
        self.fast_pipe.scheduler = self.pipe.scheduler
        self.tiny_torch = TaesdDecoder(self.taesd, self.pipe)
        self.tiny_openvino = TaesdDecoder(self.taesd, self.pipe, self.openvino.decode)
        self.int8 = int8_modules(self.pipe, root, self.taesd, folder)
        self.int8.compile_for(1, latent, latent, 4, hidden, self.pipe.tokenizer.model_max_length)
        self.int8_pipe = self.int8.pipeline()
        self.int8_pipe.scheduler = self.pipe.scheduler
        self.tiny_int8 = TaesdDecoder(self.taesd, self.pipe, self.int8.decode)

    def autocast(self):
        import torch

        return torch.autocast("cpu", getattr(torch, self.plan.autocast)) if self.plan.autocast else nullcontext()

    def image(self, pipe, tiny=None):
        import torch

        generator = torch.Generator("cpu").manual_seed(SEED)
        with self.autocast():
            out = pipe(
                PROMPT,
                num_inference_steps=1,
                guidance_scale=0.0,
                width=SIZE,
                height=SIZE,
                generator=generator,
                output_type="latent" if tiny else "pil",
            ).images
            return tiny.to_images(out, SIZE, SIZE)[0] if tiny else out[0]


def int8_modules(pipe, root: Path, taesd, folder: Path):
    """The engine's int8 UNet and TAESD decoder, as its first fast job quantized them (the engine runs first)."""
    from dreamtray.engine.server.openvino_backend import Converted, OpenVinoModules
    from dreamtray.engine.server.openvino_int8 import is_current

    modules = OpenVinoModules.convert(pipe, root, "SD-Turbo shape", _say, folder)
    modules.attach_taesd_decoder(taesd, root, "SD-Turbo shape", _say)
    for entry in ("unet", "tiny_decoder"):
        if not is_current(root / f"{entry}-int8", root / entry / "model.xml"):
            raise SystemExit(f"no current int8 {entry} in {root}: the engine's first fast job makes it")
    modules.unet, modules.taesd_decoder = Converted(root / "unet-int8"), Converted(root / "tiny_decoder-int8")
    modules.int8 = modules.int8_decoder = True
    return modules


def _say(event: dict) -> None:
    if event.get("message"):
        report(f"- {event['message']}")


def parts(direct: Direct, repeats: int) -> None:
    """Median seconds of each part on torch (the engine's plan) and on OpenVINO."""
    import torch

    pipe, fast = direct.pipe, direct.fast_pipe
    latents = torch.randn(1, 4, SIZE // 8, SIZE // 8)
    hidden = torch.randn(1, pipe.tokenizer.model_max_length, pipe.text_encoder.config.hidden_size)
    step = torch.tensor(999.0)

    def timed(call) -> float:
        call()  # first call: one-off set-up
        with torch.no_grad(), direct.autocast():
            return median(seconds(call)[0] for _ in range(repeats))

    rows = [
        (
            "text encoder",
            timed(lambda: pipe.encode_prompt(PROMPT, "cpu", 1, False)),
            timed(lambda: fast.encode_prompt(PROMPT, "cpu", 1, False)),
        ),
        (
            "UNet, one step",
            timed(lambda: pipe.unet(latents, step, hidden)),
            timed(lambda: fast.unet(latents, step, hidden)),
        ),
        *text_encoder_precisions(pipe, timed),
        ("full VAE decode", timed(lambda: pipe.vae.decode(latents / 0.18215)), "-"),
        ("TAESD decode", timed(lambda: direct.taesd.decode(latents)), timed(lambda: direct.openvino.decode(latents))),
        ("UNet, one step, hybrid int8", "-", timed(lambda: direct.int8_pipe.unet(latents, step, hidden))),
        ("TAESD decode, int8", "-", timed(lambda: direct.int8.decode(latents))),
    ]
    table("Parts, 512x512 (median seconds)", ["part", f"torch ({_plan_words(direct.plan)})", "OpenVINO"], rows)


def text_encoder_precisions(pipe, timed) -> list[tuple[str, float, str]]:
    """The text encoder alone in the precisions the decision table could pick: fp32, and bf16 weights (which
    change pixels: its norms then run in bf16); the plan's bf16 autocast is the row above."""
    import copy

    import torch

    ids = pipe.tokenizer(PROMPT, padding="max_length", return_tensors="pt").input_ids
    bf16 = copy.deepcopy(pipe.text_encoder).to(torch.bfloat16)

    def plain(call):  # outside the plan's autocast
        def run():
            with torch.autocast("cpu", enabled=False):
                call()

        return run

    return [
        ("text encoder, fp32 (no autocast)", timed(plain(lambda: pipe.text_encoder(ids))), "-"),
        ("text encoder, bf16 weights", timed(plain(lambda: bf16(ids))), "-"),
    ]


def _plan_words(plan) -> str:
    return ", ".join(
        ["fp32 weights"]
        + ([f"{plan.autocast} autocast"] if plan.autocast else [])
        + (["channels-last"] if plan.channels_last else [])
    )


def whole_images(direct: Direct, repeats: int) -> dict[str, tuple[float, float]]:
    """Seconds and CPU seconds per image (medians) and this process's peak RSS, the five ways taken in turns."""
    ways = {
        "today's plan (quality balanced)": lambda: direct.image(direct.pipe),
        "TAESD on torch": lambda: direct.image(direct.pipe, direct.tiny_torch),
        "OpenVINO, full VAE on torch": lambda: direct.image(direct.fast_pipe),
        "OpenVINO + TAESD, bf16": lambda: direct.image(direct.fast_pipe, direct.tiny_openvino),
        "OpenVINO + TAESD, int8 (quality fast)": lambda: direct.image(direct.int8_pipe, direct.tiny_int8),
    }
    times: dict[str, list[float]] = {name: [] for name in ways}
    cpu: dict[str, list[float]] = {name: [] for name in ways}
    peaks: dict[str, float] = {}
    for name, way in ways.items():
        way()  # warm-up
    for repeat in range(repeats):
        order = list(ways.items()) if repeat % 2 == 0 else list(reversed(ways.items()))
        for name, way in order:
            with peak_rss_during() as peak:
                before = cpu_seconds()
                times[name].append(seconds(way)[0])
                cpu[name].append(cpu_seconds() - before)
            peaks[name] = max(peaks.get(name, 0.0), peak["peak_mb"])
    medians = {name: (median(times[name]), median(cpu[name])) for name in ways}
    base = medians["today's plan (quality balanced)"][0]
    table(
        f"One SD-Turbo-shaped image, direct in one process (512x512, 1 step; load average {_load()})",
        ["way", "seconds (median)", "x today's plan", "CPU seconds (median)", "process peak RSS (MiB)"],
        [(name, medians[name][0], base / medians[name][0], medians[name][1], peaks[name]) for name in ways],
    )
    return medians


def _load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def through_the_engine(folder: Path, cache: Path, repeats: int) -> dict[str, tuple[float, float, float]]:
    """Seconds and the worker's CPU seconds per image (medians), and its peak RSS, for each quality, through the
    engine service; and the first images a user waits for: after the engine starts, after an unload (with and
    without the ready worker), each a fresh worker that loads the model.

    It runs before the direct calls load anything, and its workers exit before they start: the two never share
    the RAM (a fully loaded worker holds the model in fp32 and its OpenVINO modules, some 14 GB).
    """
    import tempfile

    from service_run import start_local_engine, timed_generate

    from dreamtray.request import Request

    request = Request(prompt=PROMPT, width=SIZE, height=SIZE, steps=1, guidance=0.0, seed=SEED, model=str(folder))
    fast = request.model_copy(update={"quality": "fast"})
    root = Path(tempfile.mkdtemp(prefix="dreamtray-fast-bench-"))
    found: dict[str, tuple[float, float, float]] = {}
    firsts: list[tuple[str, float, str]] = []

    def first(what: str, engine) -> None:
        timed = timed_generate(engine, fast)
        worker = engine.health()["worker_pid"]
        held = "OpenVINO modules alone" if any("(no torch weights)" in m for m in timed.messages) else "whole model"
        anonymous, files = _rss_split_mb(worker)
        firsts.append((what, timed.total, held, anonymous, files))
        if timed.result.warnings:
            report(f"- warnings: {'; '.join(timed.result.warnings)}")

    def warm(engine, quality: str) -> None:
        worker = engine.health()["worker_pid"]
        timed, cpu = [], []
        with peak_rss_during(worker) as peak:
            for _ in range(repeats):
                before = cpu_seconds(worker)
                timed.append(timed_generate(engine, request.model_copy(update={"quality": quality})).total)
                cpu.append(cpu_seconds(worker) - before)
        found[quality] = (median(timed), median(cpu), peak["peak_mb"])

    engine = start_local_engine(root / "ready", cache, default_model=str(folder))
    try:
        first("after the engine starts (service, worker, imports, model, compile)", engine)
        warm(engine, "fast")
        found["fast (OpenVINO modules alone)"] = found.pop("fast")
        engine.unload()
        ready = _wait_ready(engine)
        first(f"after an unload, ready worker (its imports took {ready:.1f} s before)", engine)
        took = timed_generate(engine, request.model_copy(update={"width": 64, "height": 64})).total
        report(f"\nEngine: whole model load (for quality balanced) and a 64x64 warm-up: {took:.1f} s")
        for quality in ("balanced", "fast"):
            warm(engine, quality)
        report(f"Engine: load average {_load()} after its jobs")
    finally:
        engine.stop()
        engine.close()
    engine = start_local_engine(root / "no-ready", cache, default_model=str(folder), ready_worker=False)
    try:
        timed_generate(engine, fast)
        engine.unload()
        first("after an unload, no ready worker (engine.ready_worker = false)", engine)
    finally:
        engine.stop()
        engine.close()
    table(
        f"First fast image (SD-Turbo shape, 512x512, 1 step; OpenVINO cache on disk; load average {_load()})",
        ["first image", "seconds", "what the worker loaded", "worker RSS: private MiB", "file-backed MiB"],
        firsts,
    )
    return found


def _rss_split_mb(pid: int) -> tuple[float, float]:
    """A process's resident memory in MiB: private (anonymous) pages, and pages of mapped files (weights read
    with mmap, shared libraries), which the kernel can drop and read again under memory pressure."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return tuple(int(fields[name].split()[0]) / 1024 for name in ("RssAnon", "RssFile"))


def _wait_ready(engine, limit: float = 120.0) -> float:
    """Seconds until the ready worker has done its imports (its CPU time stops growing)."""
    import time

    start = time.monotonic()
    while not (pid := engine.health()["ready_worker_pid"]):
        if time.monotonic() - start > limit:
            raise SystemExit("no ready worker appeared after the unload")
        time.sleep(0.1)
    last = -1.0
    while (now := cpu_seconds(pid)) != last and time.monotonic() - start < limit:
        last = now
        time.sleep(0.5)
    return time.monotonic() - start - 0.5


def engine_against_direct(
    engine: dict[str, tuple[float, float, float]], direct: dict[str, tuple[float, float]]
) -> None:
    """Wall and CPU seconds side by side: equal CPU seconds with unequal wall times mean a busier machine, not
    more work (the engine and the direct calls run minutes apart and cannot alternate)."""
    ways = {
        "balanced": "today's plan (quality balanced)",
        "fast": "OpenVINO + TAESD, int8 (quality fast)",
        "fast (OpenVINO modules alone)": "OpenVINO + TAESD, int8 (quality fast)",
    }
    rows = []
    for quality, (wall, cpu, peak) in engine.items():
        direct_wall, direct_cpu = direct[ways[quality]]
        rows.append((quality, wall, direct_wall, wall / direct_wall, cpu, direct_cpu, cpu / direct_cpu, peak))
    table(
        "Through the engine service vs direct (512x512, 1 step, warm)",
        [
            "quality",
            "engine s",
            "direct s",
            "engine / direct",
            "engine CPU s",
            "direct CPU s",
            "CPU engine / direct",
            "worker peak RSS (MiB)",
        ],
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--skip-compile", action="store_true", help="leave out torch.compile (some 5 minutes)")
    parser.add_argument("--skip-sdxl", action="store_true", help="leave out the SDXL-Turbo shape (15 GB of RAM)")
    args = parser.parse_args()
    prepare_run()
    cache = DEFAULT_CACHE
    os.environ["HF_HUB_CACHE"] = str(cache / "hub")  # before huggingface_hub is imported; the engine inherits it
    os.environ["HF_HUB_OFFLINE"] = "1"
    if args.out:
        OUTPUT.append(args.out)
    sys.path.insert(0, str(Path(__file__).parent))
    from architectures import ensure_folder

    import dreamtray.engine.server.openvino_backend  # noqa: F401 (first: keeps OpenVINO's telemetry out)

    quiet_progress_bars()
    folder = ensure_folder("sd-turbo", cache)
    taesd_folder = ensure_taesd_decoder_in_hub(cache / "hub")
    report(f"## The fast path on SD-Turbo's shape ({os.cpu_count()} CPUs seen, {args.repeats} repeats)")
    engine = through_the_engine(folder, cache, args.repeats)
    direct = Direct(folder, taesd_folder, cache)
    parts(direct, args.repeats)
    engine_against_direct(engine, whole_images(direct, args.repeats))
    del direct  # each of the next ones loads its own copy of a model
    gc.collect()
    from fast_more import ensure_taesdxl_in_hub, sdxl_turbo_rows, torch_compile_rows

    if not args.skip_compile:
        torch_compile_rows(folder, taesd_folder, cache, args.repeats)
    if not args.skip_sdxl:
        sdxl_turbo_rows(ensure_folder("sdxl-turbo", cache), ensure_taesdxl_in_hub(cache / "hub"), args.repeats)


if __name__ == "__main__":
    main()
