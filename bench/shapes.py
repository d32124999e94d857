"""Speed on full-size model shapes: random weights in the exact shapes of SD-Turbo and SDXL-Turbo.

Run:  python bench/shapes.py [--shapes sd-turbo,sdxl-turbo] [--repeats 1] [--out figures.md]

Each shape is built once from configs in code (bench/architectures.py), saved as a diffusers folder in fp16
under the cache (outside the repository), then run side by side at the preset's native size, steps and
guidance:
- through the engine service (LocalEngine, the folder as a local model, in the engine's own dtype and policy),
- through a direct diffusers call on a pipeline loaded from the same folder in the same dtype and device;
seconds per image (median), the ratio engine/direct, and peak memory (RSS of the process on a CPU; on a GPU,
torch.cuda.max_memory_allocated for the direct call and the device memory the worker took, read with
torch.cuda.mem_get_info, for the engine).

On a CPU it then measures the speed options on the SD-Turbo shape at 512x512, one step: the thread count,
bf16 (autocast, and weights cast to bf16) where the CPU has AVX512-BF16 or AMX, channels_last, fused QKV
projections, a tiny VAE decoder (TAESD's shape), and VAE tiling for a 4K wallpaper (decode only, on the tiny
model's VAE: the SD VAE at 4K takes tens of minutes on two cores).

On a GPU (CUDA) it measures instead the fast-path switches: the fraction of the dense bf16 peak that the UNet
forward reaches (FLOPs counted with torch.utils.flop_counter.FlopCounterMode; the peak both from the data sheet and
as measured by a large bf16 matmul in the same run) with classic attention, SDPA, channels_last and fused QKV in
turn; the full VAE against TAESD (decode, and the whole call); VAE tiling at 3840x2160; peak memory under each
memory policy of the decision table (whole model, model offload, sequential offload) for both shapes; and, on the
SD-Turbo shape, torch.compile of the UNet in the engine's plan with a persistent Inductor cache, cold (an empty
cache) and warm (a new process finding it full), from bench/fast_more.py.

`--gpu-dry-run` runs the GPU-only parts (the switches, torch.compile) on the CPU with the `tiny` model, to check
their code where no GPU is at hand; its figures mean nothing.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

from architectures import ensure_folder
from measure import (
    DEFAULT_CACHE,
    OUTPUT,
    median,
    peak_during,
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
SEED = 7
WALLPAPER = (3840, 2160)

DENSE_BF16_TFLOPS = {
    "H200": 989.4,
    "H100": 989.4,
    "A100": 312.0,
    "L40S": 362.1,
    "L4": 121.0,
    "4090": 165.2,
    "A10": 125.0,
}
"""Data-sheet dense (no sparsity) bf16 tensor TFLOP/s, by a part of the device name."""


# ---------------------------------------------------------------------------------------------------------- loading


def load_direct(folder: Path, dtype: str, device: str):
    """The folder's pipeline with plain diffusers: from_pretrained in `dtype`, moved whole to `device`."""
    import json

    import diffusers
    import torch

    quiet_progress_bars()
    cls = getattr(diffusers, json.loads((folder / "model_index.json").read_text())["_class_name"])
    pipe = cls.from_pretrained(folder, dtype=getattr(torch, dtype), local_files_only=True).to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def direct_call(pipe, size: int, steps: int, guidance: float, prompt: str = PROMPT, **extra):
    import torch

    generator = torch.Generator("cpu").manual_seed(SEED)
    return pipe(
        prompt,
        num_inference_steps=steps,
        guidance_scale=guidance,
        width=size,
        height=size,
        generator=generator,
        **extra,
    ).images[0]


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def free() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def engine_plan(folder: Path):
    """What the engine decides for this folder on this machine (device, dtype, policy)."""
    from dreamtray.engine.server.hardware import decide, probe_machine
    from dreamtray.engine.server.models import resolve_model

    return decide(probe_machine(), resolve_model(str(folder)).preset)


# ------------------------------------------------------------------------------------------------ engine vs direct


def engine_vs_direct(name: str, folder: Path, root: Path, repeats: int) -> list[str]:
    """Seconds per image and peak memory, the engine service against direct diffusers, same settings."""
    import torch

    from dreamtray.engine.presets import PRESETS
    from dreamtray.request import Request

    preset = PRESETS[name]
    size, steps, guidance = preset.native_size, preset.steps, preset.guidance
    plan = engine_plan(folder)
    cuda = torch.cuda.is_available()
    request = Request(
        prompt=PROMPT, width=size, height=size, steps=steps, guidance=guidance, seed=SEED, model=str(folder)
    )
    warm_request = request.model_copy(update={"width": 64, "height": 64})
    engine = start_local_engine(root / name, folder.parent, default_model=str(folder))
    times: dict[str, list[float]] = {"engine": [], "direct": []}
    peaks: dict[str, float] = {}
    kept: dict[str, object] = {}
    pipe = None
    idle_device = device_used_mb()  # before the worker and the direct pipeline hold anything

    def run_direct() -> None:
        nonlocal pipe
        if pipe is None:
            pipe = load_direct(folder, plan.dtype, plan.device)
            direct_call(pipe, 64, steps, guidance)  # warm-up at a small size: loads, first-call set-up
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        with peak_rss_during() as peak:
            took, kept["direct"] = seconds(lambda: (direct_call(pipe, size, steps, guidance), sync())[0])
        times["direct"].append(took)
        peaks["direct"] = torch.cuda.max_memory_allocated() / 2**20 if cuda else peak["peak_mb"]

    def run_engine() -> None:
        first = "engine" not in kept
        if first:
            timed_generate(engine, warm_request)  # loads the model in the worker
        worker = engine.health()["worker_pid"]
        # On a GPU the worker's share is read as device memory in use, less what was in use before it started:
        # valid on the first run only, which comes before the direct pipeline takes memory of its own.
        with peak_rss_during(worker) as peak, device_used_peak(idle_device if first else None) as used:
            timed = timed_generate(engine, request)
        times["engine"].append(timed.total)
        kept["engine"] = timed
        if first or not cuda:
            peaks["engine"] = max(peaks.get("engine", 0.0), used["peak_mb"] if cuda else peak["peak_mb"])

    try:
        for repeat in range(repeats):
            order = (run_engine, run_direct) if repeat % 2 == 0 else (run_direct, run_engine)
            for run in order:
                run()
    finally:
        engine.stop()
        engine.close()
        pipe = None
        free()
    same = pixels(kept["engine"].result.images[0]) == kept["direct"].convert("RGB").tobytes()
    med = {k: median(v) for k, v in times.items()}
    memory = (
        "direct: max_memory_allocated; engine: device memory the worker took, CUDA context included"
        if cuda
        else "peak RSS of each process"
    )
    last = kept["engine"]
    rows = [
        (
            name,
            f"{size}x{size}",
            steps,
            f"{plan.device} {plan.dtype}",
            med["direct"],
            med["engine"],
            med["engine"] / med["direct"],
            1000 * (last.total - last.worker_seconds),
            peaks["direct"],
            peaks["engine"],
            same,
        )
    ]
    samples = "; ".join(f"{k}: " + ", ".join(f"{t:.3f}" for t in v) for k, v in times.items())
    return [
        table(
            f"{name}-shaped, engine vs direct diffusers, median of {repeats} (s; transport = engine total less the worker's "
            f"own time, last run; MiB: {memory}); samples {samples}",
            (
                "shape",
                "size",
                "steps",
                "device",
                "direct s",
                "engine s",
                "ratio",
                "transport ms",
                "direct MiB",
                "engine MiB",
                "same pixels",
            ),
            rows,
        )
    ]


def device_used_mb() -> float:
    """Device memory in use by every process on the GPU, in MiB (0 without CUDA)."""
    import torch

    if not torch.cuda.is_available():
        return 0.0
    free_bytes, total = torch.cuda.mem_get_info()
    return (total - free_bytes) / 2**20


@contextmanager
def device_used_peak(base_mb: float | None, every: float = 0.01):
    """On a GPU: the peak, during the block, of device memory in use by anyone, less `base_mb` (None: no sampling)."""
    import torch

    if base_mb is None or not torch.cuda.is_available():
        yield {"peak_mb": 0.0}
        return
    with peak_during(lambda: device_used_mb() - base_mb, every) as found:
        yield found


# ------------------------------------------------------------------------------------------------------ components


def unet_inputs(pipe, size: int, device: str, dtype):
    """One UNet call's inputs at `size` (batch 1, as a guidance-free turbo step), with SDXL's extra conditioning."""
    import torch

    latent = size // pipe.vae_scale_factor
    generator = torch.Generator("cpu").manual_seed(SEED)
    sample = torch.randn(1, 4, latent, latent, generator=generator).to(device, dtype)
    hidden = torch.randn(1, 77, pipe.unet.config.cross_attention_dim, generator=generator).to(device, dtype)
    kwargs = {}
    if pipe.unet.config.addition_embed_type == "text_time":
        kwargs["added_cond_kwargs"] = {
            "text_embeds": torch.randn(1, 1280, generator=generator).to(device, dtype),
            "time_ids": torch.tensor([[size, size, 0, 0, size, size]], device=device, dtype=dtype),
        }
    return sample, torch.tensor([999], device=device), hidden, kwargs


def unet_seconds(pipe, size: int, repeats: int = 1, warm: bool = True) -> float:
    """Median seconds of one UNet forward at `size` (after one warm-up call when `warm`)."""
    import torch

    sample, timestep, hidden, kwargs = unet_inputs(pipe, size, pipe.device.type, pipe.unet.dtype)

    def call():
        with torch.inference_mode():
            pipe.unet(sample, timestep, hidden, **kwargs)
        sync()

    if warm:
        call()
    return median(seconds(call)[0] for _ in range(repeats))


def decode_seconds(vae, height: int, width: int, repeats: int = 1, warm: bool = True) -> float:
    """Median seconds of decoding one latent of an image of height x width (after one warm-up when `warm`)."""
    import torch

    parameter = next(vae.parameters())
    channels = vae.config.latent_channels  # every VAE here (SD, SDXL, TAESD, tiny) downsamples 8x
    latent = torch.randn(1, channels, height // 8, width // 8, generator=torch.Generator("cpu").manual_seed(SEED))
    latent = latent.to(parameter.device, parameter.dtype)

    def call():
        with torch.inference_mode():
            vae.decode(latent)
        sync()

    if warm:
        call()
    return median(seconds(call)[0] for _ in range(repeats))


def counted_flops(module, call) -> int:
    """FLOPs of `call(copy)` on a copy of `module` built from its config on the meta device: shapes only, no compute."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        copy = type(module).from_config(module.config).to(next(module.parameters()).dtype)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        call(copy)
    return counter.get_total_flops()


def unet_flops(pipe, size: int) -> int:
    """FLOPs of one UNet forward at `size` (matmuls, convolutions and attention, as FlopCounterMode counts them)."""
    sample, timestep, hidden, kwargs = unet_inputs(pipe, size, "meta", pipe.unet.dtype)
    return counted_flops(pipe.unet, lambda unet: unet(sample, timestep.to("meta"), hidden, **kwargs))


def decode_flops(vae, height: int, width: int) -> int:
    import torch

    latent = torch.empty(
        1, vae.config.latent_channels, height // 8, width // 8, device="meta", dtype=next(vae.parameters()).dtype
    )
    return counted_flops(vae, lambda copy: copy.decode(latent))


# ------------------------------------------------------------------------------------------------- CPU speed options


def cpu_bf16_support() -> str:
    flags = Path("/proc/cpuinfo").read_text().split("flags", 2)[1].split("\n", 1)[0].split()
    found = [f for f in ("avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
    return ", ".join(found) or "none"


class Rows(list):
    """Table rows that are also reported one by one as they are measured, so a run cut short keeps them."""

    def append(self, row) -> None:
        super().append(row)
        report("row: " + " | ".join(f"{c:.3f}" if isinstance(c, float) else str(c) for c in row))


def alternate(call, variants: dict, pairs: int) -> dict[str, float]:
    """Median seconds of `call` under each variant (a function that switches an option), timed in turns.

    Each variant is warmed once (new kernels), then they take turns, in ABBA order, so that a change in the
    machine's load hits both alike.
    """
    names = list(variants)
    for name in names:
        variants[name]()
        call()
    times: dict[str, list[float]] = {name: [] for name in names}
    for turn in range(pairs):
        for name in names if turn % 2 == 0 else reversed(names):
            variants[name]()
            times[name].append(seconds(call)[0])
    return {name: median(values) for name, values in times.items()}


def cpu_options(folder: Path, cache: Path, pairs: int = 2) -> list[str]:
    """SD-Turbo shape, 512x512, one step, on the CPU: each option timed on the parts it changes.

    The fp32 baseline is timed once without a warm-up (oneDNN fp32 needs none worth the minute it costs here);
    each on/off pair is timed in turns after a warm-up of each (`alternate`).
    """
    import torch

    pipe = load_direct(folder, "float32", "cpu")
    size = 512
    threads = torch.get_num_threads()
    unet_tf, vae_tf = unet_flops(pipe, size) / 1e12, decode_flops(pipe.vae, size, size) / 1e12
    sample, timestep, hidden, kwargs = unet_inputs(pipe, size, "cpu", torch.float32)
    latent = torch.randn(1, 4, size // 8, size // 8, generator=torch.Generator("cpu").manual_seed(SEED))
    autocast = {"on": False}

    def context():
        return torch.autocast("cpu", dtype=torch.bfloat16) if autocast["on"] else nullcontext()

    def unet() -> None:
        dtype = pipe.unet.dtype
        with torch.inference_mode(), context():
            pipe.unet(sample.to(dtype), timestep, hidden.to(dtype), **kwargs)

    def vae() -> None:
        with torch.inference_mode(), context():
            pipe.vae.decode(latent.to(pipe.vae.dtype))

    def text() -> None:
        with torch.inference_mode():
            pipe.encode_prompt(PROMPT, "cpu", 1, False)

    def rate(unet_s: float, vae_s: float) -> str:
        return f"UNet {1000 * unet_tf / unet_s:.0f}, VAE {1000 * vae_tf / vae_s:.0f} GFLOP/s"

    def memory_format(module, fmt):
        return lambda: module.to(memory_format=fmt)

    rows = Rows()
    text()
    base = {"text": seconds(text)[0], "unet": seconds(unet)[0], "vae": seconds(vae)[0]}
    base_total = sum(base.values())
    rows.append(
        (
            f"fp32, {threads} threads, SDPA (the engine's CPU plan)",
            base["text"],
            base["unet"],
            base["vae"],
            base_total,
            1.0,
            rate(base["unet"], base["vae"]),
        )
    )

    autocast["on"] = True
    unet(), vae()
    ac = {"unet": seconds(unet)[0], "vae": seconds(vae)[0]}
    autocast["on"] = False
    ac_total = base["text"] + ac["unet"] + ac["vae"]
    rows.append(
        (
            "bf16 autocast, fp32 weights",
            "",
            ac["unet"],
            ac["vae"],
            ac_total,
            base_total / ac_total,
            f"CPU bf16: {cpu_bf16_support()}; {rate(ac['unet'], ac['vae'])}",
        )
    )

    pipe.to(torch.bfloat16)
    text(), unet(), vae()
    bf = {"text": seconds(text)[0], "unet": seconds(unet)[0], "vae": seconds(vae)[0]}
    bf_total = sum(bf.values())
    rows.append(
        (
            "bf16 weights (pipe.to(torch.bfloat16))",
            bf["text"],
            bf["unet"],
            bf["vae"],
            bf_total,
            base_total / bf_total,
            f"half the RAM of fp32; {rate(bf['unet'], bf['vae'])}",
        )
    )

    thr = alternate(unet, {"2": lambda: torch.set_num_threads(threads), "1": lambda: torch.set_num_threads(1)}, pairs)
    torch.set_num_threads(threads)
    rows.append(
        (
            f"bf16 weights, 1 thread instead of {threads}",
            "",
            thr["1"],
            "",
            "",
            thr[str(threads)] / thr["1"],
            f"UNet only, in turns: {threads} threads {thr[str(threads)]:.2f} s",
        )
    )

    cl_unet = alternate(
        unet,
        {"off": memory_format(pipe.unet, torch.contiguous_format), "on": memory_format(pipe.unet, torch.channels_last)},
        pairs,
    )
    cl_vae = alternate(
        vae,
        {"off": memory_format(pipe.vae, torch.contiguous_format), "on": memory_format(pipe.vae, torch.channels_last)},
        pairs,
    )
    cl_total = bf["text"] + cl_unet["on"] + cl_vae["on"]
    rows.append(
        (
            "bf16 weights + channels_last (UNet and VAE)",
            "",
            cl_unet["on"],
            cl_vae["on"],
            cl_total,
            (bf["text"] + cl_unet["off"] + cl_vae["off"]) / cl_total,
            f"in turns, vs off: UNet {cl_unet['off']:.2f} s, VAE {cl_vae['off']:.2f} s",
        )
    )

    fused_now = {"on": False}

    def fuse(on: bool):
        def switch() -> None:
            if on != fused_now["on"]:
                pipe.unet.fuse_qkv_projections() if on else pipe.unet.unfuse_qkv_projections()
                fused_now["on"] = on

        return switch

    fused = alternate(unet, {"off": fuse(False), "on": fuse(True)}, pairs)
    rows.append(
        (
            "bf16 weights + channels_last + fused QKV",
            "",
            fused["on"],
            "",
            "",
            fused["off"] / fused["on"],
            f"UNet only, in turns, vs unfused {fused['off']:.2f} s",
        )
    )
    best_fused = fused["on"] < fused["off"]
    fuse(best_fused)()

    taesd = tiny_vae_decoder().to(torch.bfloat16).to(memory_format=torch.channels_last)
    t_vae = decode_seconds(taesd, size, size)
    rows.append(
        (
            "tiny VAE decoder (TAESD's shape, 2.4 M parameters), bf16, channels_last",
            "",
            "",
            t_vae,
            "",
            cl_vae["on"] / t_vae,
            f"decode only, vs the SD VAE above; {decode_flops(taesd, size, size) / 1e9:.0f} GFLOP",
        )
    )

    # The whole call, in turns: the engine's CPU plan today against every option that helped above.
    best_threads = 1 if thr["1"] < thr[str(threads)] else threads
    baseline = load_direct(folder, "float32", "cpu")
    chosen = {}

    def use(candidate, count: int):
        def switch() -> None:
            torch.set_num_threads(count)
            chosen["pipe"] = candidate

        return switch

    whole = alternate(
        lambda: direct_call(chosen["pipe"], size, 1, 0.0),
        {"plan": use(baseline, threads), "best": use(pipe, best_threads)},
        pairs,
    )
    torch.set_num_threads(threads)
    del baseline
    best = f"bf16 weights + channels_last{' + fused QKV' if best_fused else ''}, {best_threads} thread(s)"
    rows.append(
        (
            f"whole pipeline call, in turns: {best}",
            "",
            "",
            "",
            whole["best"],
            whole["plan"] / whole["best"],
            f"vs fp32 {threads} threads, whole call {whole['plan']:.2f} s (includes PIL conversion)",
        )
    )
    texts = [
        table(
            f"CPU options, SD-Turbo shape, 512x512, 1 step: UNet {unet_tf:.2f} TFLOP, VAE decode {vae_tf:.2f} TFLOP "
            f"(FlopCounterMode); seconds; in-turn pairs: median of {pairs} each",
            ("option", "text enc s", "UNet s", "VAE decode s", "total s", "speed-up", "note"),
            rows,
        )
    ]
    del pipe
    free()
    texts.append(vae_tiling_cpu(cache))
    return texts


def sdxl_unet_cpu() -> list[str]:
    """SDXL-Turbo shape on a CPU: one UNet forward at 512x512 in bf16 weights, the part that differs from SD-Turbo.

    The whole engine-vs-direct comparison is not run on a CPU: two fp32 copies (2 x 14 GB) do not fit 24 GB, and
    one after the other they take tens of minutes on two shared cores. Its VAE is SD-Turbo's (same shape).
    """
    from types import SimpleNamespace

    import torch
    from architectures import SEED as BUILD_SEED
    from architectures import sdxl_unet

    torch.manual_seed(BUILD_SEED)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        built, unet = seconds(sdxl_unet)
    finally:
        torch.set_default_dtype(previous)
    pipe = SimpleNamespace(unet=unet, vae_scale_factor=8, device=torch.device("cpu"))
    flops = unet_flops(pipe, 512)
    with peak_rss_during() as peak:
        first = unet_seconds(pipe, 512, warm=False)
    rows = [("sdxl-turbo", "512x512", "bf16 weights", flops / 1e12, first, flops / first / 1e9, peak["peak_mb"], built)]
    del pipe, unet
    free()
    return [
        table(
            "SDXL-Turbo-shaped UNet on the CPU, one forward (first call), batch 1",
            ("shape", "size", "dtype", "TFLOP", "UNet s", "GFLOP/s", "peak RSS MiB", "built in s"),
            rows,
        )
    ]


def tiny_vae_decoder():
    """An AutoencoderTiny with TAESD's published shape (random weights)."""
    import torch
    from diffusers import AutoencoderTiny

    torch.manual_seed(SEED)
    return AutoencoderTiny()


def vae_tiling_cpu(cache: Path) -> str:
    """Decode a 4K wallpaper latent with and without VAE tiling, on the tiny model's VAE (fp32, CPU)."""
    from diffusers import StableDiffusionPipeline

    from dreamtray.engine.server.tiny import ensure_tiny_folder

    vae = StableDiffusionPipeline.from_pretrained(ensure_tiny_folder(cache), local_files_only=True).vae
    width, height = WALLPAPER
    rows = []
    for tiled in (True, False):  # tiled first: the allocator keeps what the whole decode took, hiding a later peak
        vae.enable_tiling() if tiled else vae.disable_tiling()
        gc.collect()
        before = rss_mb()
        with peak_rss_during() as peak:
            took = decode_seconds(vae, height, width, warm=False)
        rows.append(
            (f"{width}x{height}", "tiled" if tiled else "whole", took, peak["peak_mb"] - before, peak["peak_mb"])
        )
    return table(
        "VAE decode of a 4K wallpaper, tiny model's VAE (8x, 8-16 channels), CPU fp32 (tile = VAE sample_size 512)",
        ("size", "decode", "s", "peak RSS over start, MiB", "peak RSS, MiB"),
        rows,
    )


# ------------------------------------------------------------------------------------------------------- GPU checks


def matmul_tflops(device: str = "cuda") -> float:
    """Achieved dense bf16 TFLOP/s of a large matmul: the device's practical ceiling (a smaller one on a CPU)."""
    import torch

    n = 8192 if device.startswith("cuda") else 1024
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    sync()
    start = time.perf_counter()
    for _ in range(10):
        a @ b
    sync()
    return 10 * 2 * n**3 / (time.perf_counter() - start) / 1e12


def device_name(device: str) -> str:
    import platform

    import torch

    return torch.cuda.get_device_name() if device.startswith("cuda") else f"CPU {platform.machine()} (dry run)"


def datasheet_tflops(device: str = "cuda") -> float | None:
    name = device_name(device)
    return next((v for k, v in DENSE_BF16_TFLOPS.items() if k in name), None)


def max_allocated_gib(device: str) -> str:
    """The device's peak allocated memory since the last reset, in words ('-' on a CPU)."""
    import torch

    return f"peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if device.startswith("cuda") else "-"


def reset_peak(device: str) -> None:
    import torch

    free()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()


def gpu_speed(name: str, folder: Path, device: str = "cuda") -> list[str]:
    """The fast-path switches on the GPU, each on top of the last: the UNet forward's fraction of the bf16 peak with
    classic attention, SDPA, channels_last, fused QKV; the full VAE against TAESD (decode and whole call); VAE tiling
    at 4K. `device` "cpu" is a dry run of the same code (on the tiny model: a check, not a figure)."""
    import torch
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    from dreamtray.engine.presets import PRESETS
    from dreamtray.engine.server.taesd import TaesdDecoder

    preset = PRESETS[name]
    size = preset.native_size
    cuda = device.startswith("cuda")
    repeats = 10 if cuda else 1
    pipe = load_direct(folder, "bfloat16", device)
    flops = unet_flops(pipe, size)
    ceiling, sheet = matmul_tflops(device), datasheet_tflops(device)

    def row(option: str, unet_s: float, extra: str = "") -> tuple:
        achieved = flops / unet_s / 1e12
        of_sheet = f"{achieved / sheet:.1%}" if sheet else "?"
        return (option, 1000 * unet_s, achieved, of_sheet, f"{achieved / ceiling:.1%}", extra)

    pipe.unet.set_attn_processor(AttnProcessor())
    rows = [row("bf16 eager, classic attention (no SDPA)", unet_seconds(pipe, size, repeats=repeats))]
    pipe.unet.set_attn_processor(AttnProcessor2_0())
    rows.append(row("+ SDPA (engine default)", unet_seconds(pipe, size, repeats=repeats)))
    pipe.unet.to(memory_format=torch.channels_last)
    rows.append(row("+ channels_last", unet_seconds(pipe, size, repeats=repeats)))
    pipe.fuse_qkv_projections()
    rows.append(row("+ fused QKV", unet_seconds(pipe, size, repeats=repeats)))

    taesd = tiny_vae_decoder().to(device, torch.bfloat16)
    for label, decoder in (("full VAE", pipe.vae), ("TAESD", taesd)):
        reset_peak(device)
        took = decode_seconds(decoder, size, size, repeats=repeats)
        rows.append((f"{label} decode {size}x{size}", 1000 * took, "", "", "", max_allocated_gib(device)))

    tiny = TaesdDecoder(taesd, pipe)
    calls = {
        "full VAE": lambda: direct_call(pipe, size, preset.steps, preset.guidance),
        "TAESD": lambda: tiny.to_images(
            direct_call(pipe, size, preset.steps, preset.guidance, output_type="latent")[None], size, size
        ),
    }
    for label, call in calls.items():
        call()
        took = median(seconds(call)[0] for _ in range(5 if cuda else 1))
        rows.append(
            (
                f"whole pipeline call, channels_last + fused QKV, {label}",
                1000 * took,
                "",
                "",
                "",
                "text + UNet + decode + PIL image",
            )
        )

    width, height = WALLPAPER if cuda else (1024, 576)  # the dry run decodes a smaller image
    for tiled in (False, True):
        pipe.vae.enable_tiling() if tiled else pipe.vae.disable_tiling()
        reset_peak(device)
        try:
            took = decode_seconds(pipe.vae, height, width, repeats=3 if cuda else 1)
            rows.append(
                (
                    f"VAE decode {width}x{height} {'tiled' if tiled else 'whole'}",
                    1000 * took,
                    "",
                    "",
                    "",
                    max_allocated_gib(device),
                )
            )
        except torch.OutOfMemoryError:
            rows.append((f"VAE decode {width}x{height} {'tiled' if tiled else 'whole'}", "OOM", "", "", "", ""))
    del pipe, taesd, tiny, calls
    free()
    return [
        table(
            f"{name}-shaped UNet forward on {device_name(device)}, {size}x{size}, batch 1: {flops / 1e12:.2f} TFLOP "
            f"(FlopCounterMode); bf16 matmul ceiling measured {ceiling:.0f} TFLOP/s, data sheet {sheet or '?'}",
            ("option", "ms", "TFLOP/s", "of data-sheet peak", "of matmul ceiling", "note"),
            rows,
        )
    ]


def gpu_compile(name: str, folder: Path, cache: Path, repeats: int = 5) -> dict[str, dict]:
    """torch.compile of the UNet in the engine's plan for this machine, with a persistent Inductor cache: the first
    image's compile with the cache empty, then again in a new process with it full; eager and compiled UNet step and
    whole image (TAESD decoder), peak memory (bench/fast_more.py's `torch_compile_rows`)."""
    from fast_more import ensure_taesdxl_in_hub, torch_compile_rows
    from fast_path import ensure_taesd_decoder_in_hub

    from dreamtray.engine.server.taesd import ensure_tiny_taesd_folder

    if name == "tiny":
        taesd = ensure_tiny_taesd_folder(cache)
    elif name == "sdxl-turbo":
        taesd = ensure_taesdxl_in_hub(cache / "hub")
    else:
        taesd = ensure_taesd_decoder_in_hub(cache / "hub")
    return torch_compile_rows(folder, taesd, cache, repeats)


def gpu_policies(name: str, folder: Path) -> list[str]:
    """Peak device memory and seconds per image under each memory policy, placed by the engine's own code."""
    import torch

    from dreamtray.engine.presets import PRESETS
    from dreamtray.engine.server.hardware import Plan, Policy
    from dreamtray.engine.server.runner import _place

    preset = PRESETS[name]
    rows = []
    for policy in (Policy.GPU, Policy.MODEL_OFFLOAD, Policy.SEQUENTIAL_OFFLOAD):
        pipe = load_direct(folder, "bfloat16", "cpu")
        _place(pipe, Plan("cuda:0", "bfloat16", policy, preset.native_pixels))
        direct_call(pipe, 64, preset.steps, preset.guidance)
        free()
        torch.cuda.reset_peak_memory_stats()
        took = seconds(lambda: (direct_call(pipe, preset.native_size, preset.steps, preset.guidance), sync()))[0]
        rows.append(
            (
                name,
                policy.value,
                took,
                torch.cuda.max_memory_allocated() / 2**30,
                torch.cuda.max_memory_reserved() / 2**30,
                preset.weights_gb + preset.activation_gb
                if policy is Policy.GPU
                else preset.largest_part_gb + preset.activation_gb
                if policy is Policy.MODEL_OFFLOAD
                else 1.0 + preset.activation_gb,
            )
        )
        pipe.remove_all_hooks()
        del pipe
        free()
    return [
        table(
            f"{name}-shaped, bf16, {preset.native_size}px {preset.steps} step(s): memory per policy",
            ("shape", "policy", "s/image", "max allocated GiB", "max reserved GiB", "table assumes GiB (+0.5 margin)"),
            rows,
        )
    ]


# -------------------------------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--shapes",
        default=None,
        help="comma-separated: sd-turbo, sdxl-turbo (default: sd-turbo on a CPU, both on a GPU)",
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="timed images per path (default: 1 on a CPU, 5 on a GPU)"
    )
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="model cache (outside the repository)")
    parser.add_argument("--out", type=Path, help="also write the tables to this Markdown file")
    parser.add_argument("--skip-compare", action="store_true", help="skip the engine-vs-direct comparison")
    parser.add_argument("--skip-options", action="store_true", help="skip the speed options")
    parser.add_argument(
        "--gpu-dry-run",
        action="store_true",
        help="run the GPU-only measurements (switches, torch.compile) on the CPU with the tiny model: a check",
    )
    args = parser.parse_args()
    prepare_run()
    # Inductor's compiled kernels are kept with the models, so the next start loads them instead of compiling.
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(args.cache / "inductor"))

    import platform

    import torch

    cuda = torch.cuda.is_available()
    shapes = (args.shapes or ("sd-turbo,sdxl-turbo" if cuda else "sd-turbo")).split(",")
    repeats = args.repeats or (5 if cuda else 1)
    device = (
        torch.cuda.get_device_name()
        if cuda
        else f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    )
    if args.out:
        args.out.write_text("")
        OUTPUT.append(args.out)
    report(f"# Shapes benchmark, {time.strftime('%Y-%m-%d %H:%M')}, torch {torch.__version__}, {device}")
    report("FLUX.1-schnell-shaped: not run (12 B transformer + 4.7 B T5: ~33 GB in bf16; needs >= 48 GB to hold once).")
    args.cache.mkdir(parents=True, exist_ok=True)
    if args.gpu_dry_run:
        from dreamtray.engine.server.tiny import ensure_tiny_folder

        tiny = ensure_tiny_folder(args.cache)
        gpu_speed("tiny", tiny, "cpu")
        gpu_compile("tiny", tiny, args.cache, repeats=1)
        return
    with tempfile.TemporaryDirectory(prefix="dreamtray-shapes-") as scratch:
        for name in shapes:
            if not cuda and name == "sdxl-turbo":
                sdxl_unet_cpu()
                continue
            started = time.perf_counter()
            folder = ensure_folder(name, args.cache, device="cuda" if cuda else "cpu")
            report(f"{name}: folder ready in {time.perf_counter() - started:.1f} s at {folder}")
            if not args.skip_compare:
                engine_vs_direct(name, folder, Path(scratch), repeats)
            if cuda:
                if not args.skip_options:
                    gpu_speed(name, folder)
                gpu_policies(name, folder)
                if name == "sd-turbo" and not args.skip_options:
                    # before the next shape: a run cut short by its time limit loses SDXL's rows, not these
                    gpu_compile(name, folder, args.cache)
            elif name == "sd-turbo" and not args.skip_options:
                cpu_options(folder, args.cache)


if __name__ == "__main__":
    sys.exit(main())
