"""Same-subject series: what keeping the subject costs per image, and how alike the images become.

Run:  python bench/series.py [--shape tiny|sd-turbo|sdxl-turbo] [--size 512] [--steps 1] [--repeats 1]
                             [--dtype bfloat16] [--layout prompts|seeds|both] [--back-end torch|fast|both]

For each shape, four images are made through the engine's own Runner, in a series' seed policy: `prompts` is four
rows of one image each (four prompts, all with the series' base seed: what `series P1 P2 P3 P4 --count 1` makes),
`seeds` one row of four (one prompt, seeds base + i: `series P --count 4`). First a plain series, then the same
seeds and prompts keeping the first image's subject with each method the model allows on torch (shared attention,
the first image as init image); `--back-end fast` (or `both`) adds the fast path (OpenVINO, `quality = fast`, int8
off): a plain fast series and the init-image method on it, in a fresh engine that loads the cached OpenVINO modules
alone (the first run converts them; a TAESD-shaped random AutoencoderTiny stands in for madebyollin/taesd in the
bench's own hub cache).

Printed per method: CPU seconds per image (the first image included, as a series makes it; the process's CPU
seconds, all threads, so other work on a shared machine does not inflate them) and the ratio to the plain series
of the same back end (goal <= 1.5x at four images), the peak RSS while the series is made, and consistency:
the mean pairwise cosine similarity of the images' pixels and of their final latents (each centred on its mean),
and the later images' distance to the first (1 - that cosine) as a ratio to the plain series' (below 1: closer).
`--attention-share` adds one figure that bounds what any change to self-attention can do to these images: the
distance between the first image and the same image with every self-attention layer's output zeroed.

The shapes other than `tiny` have random weights (bench/architectures.py), and tiny's are random too: the figures
show that the mechanism runs, what it costs and how far it moves the images, never how well a real model keeps a
subject (docs/style-packs.md quotes where the papers measure that). Run the real-model shapes under a memory limit
on a shared machine (a cgroup, as the measured-here notes describe).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import itertools
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from architectures import ensure_folder  # noqa: E402
from measure import DEFAULT_CACHE, peak_rss_during, prepare_run, quiet_progress_bars, report, table  # noqa: E402

PROMPTS = ("a red fox in a forest", "the fox sleeping", "the fox in the rain", "the fox at night")
SEED = 100
IMAGES = 4


def cosine(a, b) -> float:
    """Cosine similarity of two arrays, each centred on its own mean."""
    import numpy as np

    a, b = (x.astype(np.float64).ravel() for x in (a, b))
    a, b = a - a.mean(), b - b.mean()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def similarity(arrays) -> float:
    """Mean pairwise cosine similarity."""
    pairs = [cosine(a, b) for a, b in itertools.combinations(arrays, 2)]
    return sum(pairs) / len(pairs)


def distance_to_first(arrays) -> float:
    """Mean distance (1 - cosine) of the later arrays to the first."""
    return sum(1 - cosine(arrays[0], other) for other in arrays[1:]) / (len(arrays) - 1)


def layout(name: str) -> list[tuple[str, int]]:
    """(prompt, seed) of each image in the series' seed policy (module docstring)."""
    if name == "prompts":
        return [(prompt, SEED) for prompt in PROMPTS[:IMAGES]]
    return [(PROMPTS[0], SEED + index) for index in range(IMAGES)]


@contextlib.contextmanager
def final_latents(runner, model: str):
    """The latents each image is decoded from, by the full VAE or by the TAESD decoder."""
    from dreamtray.engine.server.taesd import TaesdDecoder

    seen: list = []
    to_images = TaesdDecoder.to_images

    def taesd(decoder, latents, width, height):
        seen.append(latents.float().numpy())
        return to_images(decoder, latents, width, height)

    TaesdDecoder.to_images = taesd
    loaded = runner.loaded if runner.loaded is not None else runner.ensure_loaded(model)  # light stays light
    hook = None
    if not loaded.light:
        vae = loaded.pipe.vae
        hook = vae.post_quant_conv.register_forward_pre_hook(lambda module, args: seen.append(args[0].float().numpy()))
    try:
        yield seen
    finally:
        TaesdDecoder.to_images = to_images
        if hook is not None:
            hook.remove()


def make_series(runner, base: dict, method: str | None, images: list[tuple[str, int]]):
    """CPU and wall seconds per image, pixel arrays, final latents and peak RSS (MiB) of one series."""
    import io

    import numpy as np
    from PIL import Image

    from dreamtray.request import Request, Subject

    times, walls, pixels, first = [], [], [], None
    with final_latents(runner, base["model"]) as latents, peak_rss_during() as peak:
        for prompt, seed in images:
            subject = None if method is None else Subject(method=method, reference=first)
            request = Request(prompt=prompt, seed=seed, subject=subject, **base)
            started, wall = time.process_time(), time.perf_counter()
            result = runner.generate(request)
            times.append(time.process_time() - started)
            walls.append(time.perf_counter() - wall)
            if first is None and method is not None:
                first = result.request
            if method is not None and result.request.subject.method != method:
                raise SystemExit(f"asked for {method}, the engine ran {result.request.subject.method}")
            pixels.append(np.asarray(Image.open(io.BytesIO(result.images[0])).convert("RGB")))
    return times, walls, pixels, latents[-len(images) :], peak["peak_mb"]


def self_attention_share(runner, base: dict, images: list[tuple[str, int]]) -> tuple[float, float]:
    """Distance (pixels, latents) between the first image and itself with every self-attention output zeroed:
    no change to self-attention, shared attention included, moves an image further than about this."""
    loaded = runner.ensure_loaded(base["model"])
    unet = loaded.pipe.unet
    _, _, plain, plain_latents, _ = make_series(runner, base, None, images[:1])
    hooks = [
        module.register_forward_hook(lambda module, args, output: output * 0)
        for name, module in unet.named_modules()
        if name.endswith("attn1")
    ]
    try:
        _, _, ablated, ablated_latents, _ = make_series(runner, base, None, images[:1])
    finally:
        for hook in hooks:
            hook.remove()
    return 1 - cosine(plain[0], ablated[0]), 1 - cosine(plain_latents[0], ablated_latents[0])


def rows_for(runner, base: dict, methods, images, repeats: int) -> list[tuple]:
    rows, plain = [], None
    make_series(runner, base, None, images)  # unmeasured: the first series after a load runs slower, whatever comes
    for _ in range(repeats):
        for label, method in methods:
            runner.loaded.extras.pop("subject", None)
            times, walls, pixels, latents, peak = make_series(runner, base, method, images)
            per_image = sum(times) / len(times)
            distances = (distance_to_first(pixels), distance_to_first(latents))
            if method is None:
                plain = (per_image, distances)
            rows.append(
                (
                    label,
                    per_image,
                    per_image / plain[0],
                    sum(walls) / len(walls),
                    peak,
                    similarity(pixels),
                    similarity(latents),
                    distances[0] / plain[1][0] if plain[1][0] else float("nan"),
                    distances[1] / plain[1][1] if plain[1][1] else float("nan"),
                )
            )
            rounded = [[round(t, 2) for t in series] for series in (times, walls)]
            report(f"done: {label}, CPU s per image {rounded[0]}, wall s {rounded[1]}")  # kept if a later row times out
    return rows


HEADER = (
    "series",
    "CPU s/image",
    "x plain",
    "wall s/image",
    "peak RSS MiB",
    "pixel similarity",
    "latent similarity",
    "pixel distance to first, x plain",
    "latent distance to first, x plain",
)


def weights_dtype(runner) -> str:
    """The dtype the UNet's weights really have (the plan's, or the cached OpenVINO modules')."""
    loaded = runner.loaded
    if loaded.light:
        return "OpenVINO (bf16 on this CPU)"
    return str(next(loaded.pipe.unet.parameters()).dtype).removeprefix("torch.")


def bench_shape(shape: str, size: int, steps: int, cache: Path, args) -> None:
    quiet_progress_bars()
    model = "tiny" if shape == "tiny" else str(ensure_folder(shape, cache))
    layouts = ("prompts", "seeds") if args.layout == "both" else (args.layout,)
    base = {"model": model, "width": size, "height": size, "steps": steps, "guidance": 0.0}
    if args.back_end != "fast":
        torch_rows(shape, model, base, cache, layouts, args)
    if args.back_end != "torch":
        fast_rows(shape, model, base, cache, layouts, args.repeats)
    report("Random weights: the figures show that the mechanism runs, what it costs and how far it moves the images.")


def torch_rows(shape: str, model: str, base: dict, cache: Path, layouts, args) -> None:
    """The series on torch (`quality = balanced`): plain and the methods asked for; self-attention's share."""
    from dreamtray.engine.server.hardware import probe_machine
    from dreamtray.engine.server.runner import Runner
    from dreamtray.engine.settings import Overrides
    from dreamtray.request import Request

    size, steps, repeats = base["width"], base["steps"], args.repeats
    overrides = Overrides(dtype=args.dtype)
    runner = Runner(cache_dir=cache, default_model=model, machine=probe_machine(), overrides=overrides)
    torch_base = {**base, "quality": "balanced"}
    runner.generate(Request(prompt="warm up", seed=1, **torch_base))
    methods = [("plain", None)] + [(method, method) for method in args.methods]
    for name in layouts:
        images = layout(name)
        table(
            f"{shape}, torch, {size}x{size}, {steps} step(s), {IMAGES} images ({name}), weights "
            f"{weights_dtype(runner)} on {runner.loaded.plan.device}",
            HEADER,
            rows_for(runner, torch_base, methods, images, repeats),
        )
        if not args.attention_share:
            continue
        pixels, latents = self_attention_share(runner, torch_base, images)
        report(
            f"Self-attention's whole share of the first image ({name}): every self-attention output zeroed moves "
            f"it by {pixels:.2e} (pixels) and {latents:.2e} (latents), 1 - cosine."
        )
    del runner
    gc.collect()


def fast_rows(shape: str, model: str, base: dict, cache: Path, layouts, repeats: int) -> None:
    """The fast path: converted once (a full load), then measured in a fresh engine on the cached modules alone."""
    from dreamtray.engine.server.hardware import probe_machine
    from dreamtray.engine.server.runner import Runner
    from dreamtray.engine.settings import Overrides
    from dreamtray.request import Request, Subject

    fast_base, size, steps = {**base, "quality": "fast"}, base["width"], base["steps"]
    machine = probe_machine()
    if not machine.openvino:
        report("No OpenVINO here: no fast-path rows.")
        return
    overrides = Overrides(int8=False)
    convert_once(model, cache, machine, overrides)
    runner = Runner(cache_dir=cache, default_model=model, machine=machine, overrides=overrides)
    first = runner.generate(Request(prompt="warm up", seed=1, subject=Subject(method="init-image"), **fast_base))
    later = Subject(method="init-image", reference=first.request)  # converts TAESD's encoder, compiles its shape
    warned = runner.generate(Request(prompt="warm up", seed=2, subject=later, **fast_base)).warnings
    if warned:
        report(f"Warnings: {warned}")
    methods = (("plain (fast)", None), ("init-image (fast)", "init-image"))
    for name in layouts:
        rows = rows_for(runner, fast_base, methods, layout(name), repeats)
        on = "the cached OpenVINO modules alone" if runner.loaded.light and runner.load_count == 1 else "torch loaded"
        table(f"{shape}, fast path, {size}x{size}, {steps} step(s), {IMAGES} images ({name}), on {on}", HEADER, rows)


def convert_once(model: str, cache: Path, machine, overrides) -> None:
    """The model's UNet and text encoder on OpenVINO in the engine's cache (read, or converted now from the torch
    model as the engine converts it, without the engine's memory check: a bench under a cgroup limit of 14 GB
    cannot leave the estimate's 15% margin, and the real peak fits)."""
    from dreamtray.engine.server.fast import openvino_folder
    from dreamtray.engine.server.openvino_backend import OpenVinoModules
    from dreamtray.engine.server.runner import Runner

    runner = Runner(cache_dir=cache, default_model=model, machine=machine, overrides=overrides)
    loaded = runner.ensure_loaded(model)
    root = openvino_folder(cache, loaded.source)
    if OpenVinoModules.needs_conversion(loaded.pipe, root) or not (root / "unet" / "key.json").is_file():
        with peak_rss_during() as peak:
            OpenVinoModules.convert(loaded.pipe, root, loaded.source.name, lambda event: None, loaded.folder)
        name = loaded.source.name
        report(f"Converted {name}'s UNet and text encoder to OpenVINO: peak RSS {peak['peak_mb']:.0f} MiB")
    del runner, loaded
    gc.collect()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=("tiny", "sd-turbo", "sdxl-turbo"), default="tiny")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--dtype", help="Weights' dtype (bfloat16 halves the memory of float32); default: the plan's.")
    parser.add_argument("--layout", choices=("prompts", "seeds", "both"), default="prompts")
    parser.add_argument(
        "--methods",
        type=lambda text: [method for method in text.split(",") if method],
        default=["shared-attention", "init-image"],
        help="Comma-separated methods on torch besides plain (default: shared-attention,init-image).",
    )
    parser.add_argument(
        "--attention-share", action="store_true", help="Also measure self-attention's whole share of an image."
    )
    parser.add_argument(
        "--back-end", choices=("torch", "fast", "both"), default="torch", help="fast: the OpenVINO fast path's rows"
    )
    args = parser.parse_args(argv)
    prepare_run()
    if args.back_end != "torch" and args.shape != "tiny":
        os.environ["HF_HUB_CACHE"] = str(args.cache / "hub")  # before huggingface_hub is imported
        os.environ["HF_HUB_OFFLINE"] = "1"
        from fast_path import ensure_taesd_decoder_in_hub

        ensure_taesd_decoder_in_hub(args.cache / "hub")
    bench_shape(args.shape, args.size, args.steps, args.cache, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
