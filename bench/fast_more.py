"""The fast path's other back ends and shape: torch.compile of the UNet, and SDXL-Turbo's shape on torch.

Run:  python bench/fast_more.py --shape tiny|sd-turbo|sdxl-turbo [--repeats 3] [--out figures.md] [--skip-compile]

bench/fast_path.py measures SD-Turbo's shape on torch, TAESD and OpenVINO; this adds, in the same tables' form:
- `torch_compile_rows`: torch.compile (Inductor) of the UNet, in the engine's plan for this machine (on a CPU with
  bf16 units: fp32 weights, bf16 autocast, channels-last). Two new processes, one after the other, share a fresh
  persistent Inductor cache (FX graph cache and AOT autograd cache on): the first compiles with it empty (cold),
  the second finds it full (warm), as an engine would after an idle unload. Each gives the model load, the first
  image after it (512x512, one step, TAESD decoder: the compile happens in it), one UNet step and the whole image
  once warm, and its peak RSS; the cold one also times the same image eager (uncompiled) before compiling.
- `sdxl_turbo_rows`: SDXL-Turbo's shape (random weights, bench/architectures.py), 512x512, one step, guidance 0:
  the parts (both text encoders, one UNet step, full VAE decode, TAESD decode) and the whole image, today's plan
  (full VAE) against TAESD on torch, with peak RSS. The engine does not convert SDXL to OpenVINO: that row says
  why instead of a figure.

`--shape tiny` runs both on small stand-ins in seconds (the `tiny` model for torch.compile, a tiny SDXL-structured
pipeline for the SDXL rows): the same code paths, to check them. `--shape sd-turbo` runs torch.compile only (the
rest of that shape is bench/fast_path.py's); `--shape sdxl-turbo` runs both. The TAESD-shaped decoders (random
AutoencoderTiny, as madebyollin/taesd and madebyollin/taesdxl) go in the bench cache's own Hugging Face cache.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import nullcontext
from pathlib import Path

# fast_path.py imports this module inside its main() (a top-level import both ways would be circular)
from fast_path import PROMPT, SEED, SIZE, TAESD_REVISION, _plan_words, ensure_taesd_decoder_in_hub
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

CHILD_TIMEOUT_S = 1800
"""A compile process that takes longer is stopped and its column says so (SD-Turbo's shape compiles in ~2 min)."""
OPENVINO_RAM_PER_UNET_GB = 5.4
"""RAM a conversion takes per GB of the UNet's 16-bit weights (docs/fast-path.md)."""


# ---------------------------------------------------------------------------------------------------------- loading


def ensure_taesdxl_in_hub(hub: Path) -> Path:
    """A random-weight AutoencoderTiny in TAESDXL's shape (the default config) as the hub snapshot of
    madebyollin/taesdxl."""
    repo = hub / "models--madebyollin--taesdxl"
    snapshot = repo / "snapshots" / TAESD_REVISION
    if (snapshot / "config.json").exists():
        return snapshot
    import torch
    from diffusers import AutoencoderTiny

    torch.manual_seed(SEED)
    AutoencoderTiny(scaling_factor=1.0).save_pretrained(snapshot, safe_serialization=True)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(TAESD_REVISION)
    return snapshot


class InPlan:
    """A diffusers folder loaded as the engine's plan runs it on this machine, with its TAESD decoder."""

    def __init__(self, folder: Path, taesd_folder: Path):
        import diffusers
        import torch
        from diffusers import AutoencoderTiny

        from dreamtray.engine.server.hardware import decide, probe_machine
        from dreamtray.engine.server.models import resolve_model
        from dreamtray.engine.server.taesd import TaesdDecoder

        self.plan = decide(probe_machine(), resolve_model(str(folder)).preset)
        dtype = getattr(torch, self.plan.dtype)
        cls = getattr(diffusers, json.loads((folder / "model_index.json").read_text())["_class_name"])
        self.pipe = cls.from_pretrained(folder, dtype=dtype, local_files_only=True).to(self.plan.device)
        self.pipe.set_progress_bar_config(disable=True)
        if self.plan.channels_last:
            for module in (self.pipe.unet, self.pipe.vae):
                module.to(memory_format=torch.channels_last)
        self.taesd = AutoencoderTiny.from_pretrained(taesd_folder, dtype=dtype, local_files_only=True)
        self.taesd.to(self.plan.device)
        self.tiny = TaesdDecoder(self.taesd, self.pipe)

    @property
    def words(self) -> str:
        return f"{self.plan.device}, {_plan_words(self.plan).replace('fp32', self.plan.dtype)}"

    def autocast(self):
        import torch

        device = self.plan.device.split(":")[0]
        return torch.autocast(device, getattr(torch, self.plan.autocast)) if self.plan.autocast else nullcontext()

    def image(self, tiny: bool = False):
        """One image as the engine makes it: 512x512, one step, guidance 0; decoded by TAESD when `tiny`."""
        import torch

        generator = torch.Generator("cpu").manual_seed(SEED)
        with self.autocast():
            out = self.pipe(
                PROMPT,
                num_inference_steps=1,
                guidance_scale=0.0,
                width=SIZE,
                height=SIZE,
                generator=generator,
                output_type="latent" if tiny else "pil",
            ).images
            return self.tiny.to_images(out, SIZE, SIZE)[0] if tiny else out[0]

    def step_call(self):
        """One UNet step with the very inputs of the pipeline's own call (recorded by a hook in the next image made,
        or in one made at the first step), synchronised on a GPU: a compiled UNet reuses the graph the image
        compiled. Make that image before compiling: the hook is gone once it has recorded."""
        import torch

        seen: dict = {}

        def record(module, args, kwargs) -> None:
            seen.setdefault("inputs", (args, kwargs))
            handle.remove()

        handle = self.pipe.unet.register_forward_pre_hook(record, with_kwargs=True)

        def call() -> None:
            if "inputs" not in seen:
                self.image(tiny=True)
            args, kwargs = seen["inputs"]
            with torch.no_grad(), self.autocast():
                self.pipe.unet(*args, **kwargs)
            sync()

        return call


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def gpu_peak_mb() -> float | None:
    """The GPU's peak allocated memory since the last reset (None without CUDA), and a reset for the next."""
    import torch

    if not torch.cuda.is_available():
        return None
    peak = torch.cuda.max_memory_allocated() / 2**20
    torch.cuda.reset_peak_memory_stats()
    return peak


def _load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


# ------------------------------------------------------------------------------------------------- torch.compile


def compile_child(folder: Path, taesd_folder: Path, repeats: int, eager: bool) -> dict:
    """In a process of its own: load, (eager figures,) compile the UNet, first image, steady figures."""
    import torch
    from torch._dynamo.utils import counters

    found: dict = {"inductor_cache": os.environ.get("TORCHINDUCTOR_CACHE_DIR")}
    found["load_s"], model = seconds(lambda: InPlan(folder, taesd_folder))
    found["plan"] = model.words
    step = model.step_call()
    gpu_peak_mb()

    def measure(prefix: str) -> None:
        with peak_rss_during() as peak:
            found[f"{prefix}first_image_s"] = seconds(lambda: model.image(tiny=True))[0]
            found[f"{prefix}step_s"] = median(seconds(step)[0] for _ in range(repeats))
            times, cpu = [], []
            for _ in range(repeats):
                before = cpu_seconds()
                times.append(seconds(lambda: model.image(tiny=True))[0])
                cpu.append(cpu_seconds() - before)
            found[f"{prefix}image_s"], found[f"{prefix}image_cpu_s"] = median(times), median(cpu)
        found[f"{prefix}peak_mb"], found[f"{prefix}gpu_peak_mb"] = peak["peak_mb"], gpu_peak_mb()

    if eager:
        measure("eager_")
    else:  # as the cold process does in its eager figures: records the step's inputs, warms up the other parts
        model.image(tiny=True)
    model.pipe.unet = torch.compile(model.pipe.unet)
    try:
        measure("compiled_")
    except Exception as exc:  # a graph Inductor cannot compile is a figure too
        found["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
    found["graphs"] = counters["stats"]["unique_graphs"]
    found["cache"] = {
        key: counters[group][key]
        for group, keys in (
            ("inductor", ("fxgraph_cache_hit", "fxgraph_cache_miss")),
            ("aot_autograd", ("autograd_cache_hit", "autograd_cache_miss")),
        )
        for key in keys
    }
    return found


def _run_child(folder: Path, taesd_folder: Path, inductor: Path, repeats: int, eager: bool) -> dict:
    """`compile_child` in a new process with the persistent Inductor cache at `inductor`; its figures, or an
    'error' when it failed or ran past CHILD_TIMEOUT_S."""
    env = dict(
        os.environ,
        TORCHINDUCTOR_CACHE_DIR=str(inductor),
        TORCHINDUCTOR_FX_GRAPH_CACHE="1",
        TORCHINDUCTOR_AUTOGRAD_CACHE="1",
    )
    with tempfile.TemporaryDirectory(prefix="dreamtray-compile-") as scratch:
        result = Path(scratch) / "result.json"
        command = [sys.executable, __file__, "--child", str(folder), "--taesd", str(taesd_folder)]
        command += ["--result", str(result), "--repeats", str(repeats)] + (["--eager"] if eager else [])
        try:
            took, done = seconds(lambda: subprocess.run(command, env=env, timeout=CHILD_TIMEOUT_S, check=False))
        except subprocess.TimeoutExpired:
            return {"error": f"stopped after {CHILD_TIMEOUT_S} s"}
        if not result.exists():
            return {"error": f"the process ended with status {done.returncode} and no figures"}
        found = json.loads(result.read_text())
        found["process_s"] = took
        return found


def torch_compile_rows(folder: Path, taesd_folder: Path, cache: Path, repeats: int) -> dict[str, dict]:
    """torch.compile of `folder`'s UNet in the engine's plan, cold and warm persistent cache, each in a new process;
    prints the table and returns the figures ('cold' and 'warm': see `compile_child`)."""
    cache.mkdir(parents=True, exist_ok=True)
    inductor = Path(tempfile.mkdtemp(prefix="inductor-", dir=cache))  # fresh: the cold run finds it empty
    try:
        cold = _run_child(folder, taesd_folder, inductor, repeats, eager=True)
        warm = _run_child(folder, taesd_folder, inductor, repeats, eager=False)
        cache_mb = sum(f.stat().st_size for f in inductor.rglob("*") if f.is_file()) / 2**20
    finally:
        shutil.rmtree(inductor, ignore_errors=True)
    _compile_table(folder, cold, warm, repeats, cache_mb)
    return {"cold": cold, "warm": warm}


def _compile_table(folder: Path, cold: dict, warm: dict, repeats: int, cache_mb: float) -> None:
    def get(found: dict, key: str) -> object:
        return found.get(key, "-")

    def column(found: dict, prefix: str) -> list[object]:
        counts = found.get("cache", {})
        cache = (
            f"FX graph {counts.get('fxgraph_cache_hit', 0)} hit / {counts.get('fxgraph_cache_miss', 0)} miss, "
            f"AOT {counts.get('autograd_cache_hit', 0)} hit / {counts.get('autograd_cache_miss', 0)} miss"
            if prefix == "compiled_" and counts
            else "-"
        )
        load, first = found.get("load_s"), found.get(f"{prefix}first_image_s")
        return [
            get(found, "load_s"),
            get(found, f"{prefix}first_image_s"),
            load + first if isinstance(load, float) and isinstance(first, float) else "-",
            get(found, f"{prefix}step_s"),
            get(found, f"{prefix}image_s"),
            get(found, f"{prefix}image_cpu_s"),
            get(found, f"{prefix}peak_mb"),
            get(found, f"{prefix}gpu_peak_mb") if found.get(f"{prefix}gpu_peak_mb") is not None else "-",
            get(found, "graphs") if prefix == "compiled_" else "-",
            cache,
        ]

    what = [
        "model load s",
        "first image after the load s (compiled: compiles the UNet)",
        "load + first image s (after an idle unload)",
        "UNet step s (median)",
        "whole image s (median)",
        "whole image CPU s (median)",
        "peak RSS MiB (first image and medians)",
        "peak GPU MiB (max allocated)",
        "graphs compiled",
        "Inductor cache",
    ]
    columns = [column(cold, "eager_"), column(cold, "compiled_"), column(warm, "compiled_")]
    table(
        f"torch.compile of the UNet, {folder.name} ({cold.get('plan', '?')}), {SIZE}x{SIZE}, 1 step, TAESD decoder; "
        f"median of {repeats}; load average {_load()}",
        ["", "eager (today's torch)", "compiled, cold cache", "compiled, warm cache (new process)"],
        [(name, *cells) for name, *cells in zip(what, *columns)],
    )
    report(
        "- Each compiled process makes one eager image between the load and its first compiled image (the cold one "
        "in its eager figures): it records the UNet step's inputs, and warms the text encoder and TAESD."
    )
    for name, found in (("cold", cold), ("warm", warm)):
        if "error" in found:
            report(f"- compiled, {name} cache: {found['error']}")
    if isinstance(cold.get("eager_image_s"), float) and isinstance(warm.get("compiled_image_s"), float):
        report(
            f"- compiled / eager whole image: {warm['compiled_image_s'] / cold['eager_image_s']:.2f}; "
            f"Inductor cache after both: {cache_mb:.0f} MiB"
        )


# ------------------------------------------------------------------------------------------------------ SDXL-Turbo


def sdxl_turbo_rows(folder: Path, taesdxl_folder: Path, repeats: int) -> dict[str, tuple[float, float, float]]:
    """SDXL-Turbo's shape on torch in the engine's plan: the parts and the whole image (today's plan, TAESD), and the
    OpenVINO row the engine does not make. Returns each way's median seconds, CPU seconds and peak RSS (MiB)."""
    import torch

    from dreamtray.engine.server.fast import openvino_can_run

    took, model = seconds(lambda: InPlan(folder, taesdxl_folder))
    report(f"\n{folder.name}: loaded in {took:.1f} s ({model.words})")
    pipe = model.pipe
    unet_gb = sum(p.numel() for p in pipe.unet.parameters()) * 2 / 1e9
    openvino = "converted: see bench/fast_path.py" if openvino_can_run(pipe) else "not converted: SDXL stays on torch"
    why = (
        f"- OpenVINO: {openvino}. The engine converts Stable Diffusion pipelines only (host/engine/server/fast.py: "
        f"SDXL's UNet takes text-time conditioning the converted UNet would not pass), and a conversion takes "
        f"~{OPENVINO_RAM_PER_UNET_GB} GB of RAM per GB of fp16 UNet: ~{OPENVINO_RAM_PER_UNET_GB * unet_gb:.1f} GB "
        f"for this {unet_gb:.2f} GB UNet."
    )
    device = pipe.device
    latents = torch.randn(1, 4, SIZE // 8, SIZE // 8, generator=torch.Generator("cpu").manual_seed(SEED))
    latents = latents.to(device, pipe.vae.dtype)
    step = model.step_call()

    def timed(call) -> float:
        def synced() -> None:
            with torch.no_grad(), model.autocast():
                call()
            sync()

        synced()  # first call: one-off set-up
        return median(seconds(synced)[0] for _ in range(repeats))

    rows = [
        (
            "text encoders (both)",
            timed(lambda: pipe.encode_prompt(PROMPT, device=device, do_classifier_free_guidance=False)),
            openvino,
        ),
        ("UNet, one step", timed(step), openvino),
        ("full VAE decode", timed(lambda: pipe.vae.decode(latents / pipe.vae.config.scaling_factor)), "-"),
        ("TAESD decode", timed(lambda: model.taesd.decode(latents)), openvino),
    ]
    table(
        f"Parts, SDXL-Turbo shape ({folder.name}), {SIZE}x{SIZE} (median seconds of {repeats})",
        ["part", f"torch ({model.words})", "OpenVINO"],
        rows,
    )
    report(why)
    ways = {
        "today's plan (quality balanced)": lambda: model.image(),
        "TAESD on torch (quality fast)": lambda: model.image(tiny=True),
    }
    medians = _in_turns(ways, repeats)
    base = medians["today's plan (quality balanced)"][0]
    rows = [(name, wall, base / wall, cpu, peak) for name, (wall, cpu, peak) in medians.items()]
    rows += [("OpenVINO / OpenVINO + TAESD", openvino, "-", "-", "-")]
    table(
        f"One SDXL-Turbo-shaped image, direct in one process ({SIZE}x{SIZE}, 1 step; load average {_load()})",
        ["way", "seconds (median)", "x today's plan", "CPU seconds (median)", "process peak RSS (MiB)"],
        rows,
    )
    report(why)
    return medians  # the model goes with this frame


def _in_turns(ways: dict, repeats: int) -> dict[str, tuple[float, float, float]]:
    """Median seconds and CPU seconds of each way, taken in turns (ABBA) after a warm-up each, and peak RSS."""
    times: dict[str, list[float]] = {name: [] for name in ways}
    cpu: dict[str, list[float]] = {name: [] for name in ways}
    peaks: dict[str, float] = {}
    for way in ways.values():
        way()
    for repeat in range(repeats):
        order = list(ways.items()) if repeat % 2 == 0 else list(reversed(ways.items()))
        for name, way in order:
            with peak_rss_during() as peak:
                before = cpu_seconds()
                times[name].append(seconds(way)[0])
                cpu[name].append(cpu_seconds() - before)
            peaks[name] = max(peaks.get(name, 0.0), peak["peak_mb"])
    return {name: (median(times[name]), median(cpu[name]), peaks[name]) for name in ways}


# -------------------------------------------------------------------------------------------------------------- main


def folders(shape: str, cache: Path) -> dict[str, tuple[Path, Path]]:
    """The (model folder, TAESD folder) pairs a shape runs: 'compile' (torch.compile) and/or 'sdxl' (SDXL rows)."""
    from architectures import ensure_folder

    if shape == "tiny":
        from dreamtray.engine.server.taesd import ensure_tiny_taesd_folder
        from dreamtray.engine.server.tiny import ensure_tiny_folder

        taesd = ensure_tiny_taesd_folder(cache)
        return {"compile": (ensure_tiny_folder(cache), taesd), "sdxl": (ensure_folder("tiny-sdxl", cache), taesd)}
    if shape == "sd-turbo":
        return {"compile": (ensure_folder("sd-turbo", cache), ensure_taesd_decoder_in_hub(cache / "hub"))}
    pair = (ensure_folder("sdxl-turbo", cache), ensure_taesdxl_in_hub(cache / "hub"))
    return {"sdxl": pair, "compile": pair}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=("tiny", "sd-turbo", "sdxl-turbo"), default="tiny")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--skip-compile", action="store_true", help="leave out torch.compile")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)  # a compile process: this model folder
    parser.add_argument("--taesd", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--eager", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    prepare_run()
    cache = DEFAULT_CACHE
    os.environ["HF_HUB_CACHE"] = str(cache / "hub")  # before huggingface_hub is imported
    os.environ["HF_HUB_OFFLINE"] = "1"
    quiet_progress_bars()
    if args.child:
        args.result.write_text(json.dumps(compile_child(args.child, args.taesd, args.repeats, args.eager)))
        return
    if args.out:
        OUTPUT.append(args.out)
    report(f"## torch.compile and SDXL-Turbo, {args.shape} shape ({os.cpu_count()} CPUs seen, {args.repeats} repeats)")
    chosen = folders(args.shape, cache)
    if "sdxl" in chosen:
        sdxl_turbo_rows(*chosen["sdxl"], args.repeats)
        gc.collect()  # the SDXL pipeline's RAM back before the compile processes load theirs
    if not args.skip_compile:
        torch_compile_rows(*chosen["compile"], cache, args.repeats)


if __name__ == "__main__":
    main()
