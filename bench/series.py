"""Same-subject series: what keeping the subject costs per image, and how alike the images become.

Run:  python bench/series.py [--shape tiny|sd-turbo|sdxl-turbo] [--size 512] [--steps 1] [--repeats 1]

For each shape, four images (one prompt per image, seeds base + i) are made through the engine's own Runner:
a plain series, then the same seeds and prompts keeping the first image's subject with each method the model
allows (shared attention, the first image as init image). Printed per method: seconds per image (the first
image included, as a series makes it) and the ratio to the plain series (goal <= 1.5x at four images), the peak
RSS of the process while the series is made (times are the process's CPU seconds, all threads: other work on a
shared machine does not inflate them), and a consistency figure: the mean pairwise cosine similarity of
the images' pixels and of their final latents (each centred on its mean), against the plain series' figure.

The shapes other than `tiny` have random weights (bench/architectures.py): they draw noise, so the figures show
only that the mechanism runs and what it costs; they say nothing of how well a real model keeps a subject (the
papers' own figures are quoted in docs/style-packs.md). Run the real-model shapes under a memory limit on a shared
machine (a cgroup, as the measured-here notes describe).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from architectures import ensure_folder  # noqa: E402
from measure import DEFAULT_CACHE, peak_rss_during, prepare_run, quiet_progress_bars, report, table  # noqa: E402

PROMPTS = ("a red fox in a forest", "the fox sleeping", "the fox in the rain", "the fox at night")
SEED = 100


def similarity(arrays) -> float:
    """Mean pairwise cosine similarity of the arrays, each centred on its own mean."""
    import numpy as np

    flat = [a.astype(np.float64).ravel() for a in arrays]
    flat = [a - a.mean() for a in flat]
    pairs = [float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))) for a, b in itertools.combinations(flat, 2)]
    return sum(pairs) / len(pairs)


def make_series(runner, base: dict, method: str | None) -> tuple[list[float], list, list, float]:
    """Seconds per image, pixel arrays, final latents and peak RSS (MiB) of a four-image series."""
    import io

    import numpy as np
    from PIL import Image

    from dreamtray.request import Request, Subject

    latents: list = []
    vae = runner.ensure_loaded(base["model"]).pipe.vae
    hook = vae.post_quant_conv.register_forward_pre_hook(lambda module, args: latents.append(args[0].float().numpy()))
    times, images, first = [], [], None
    try:
        with peak_rss_during() as peak:
            for index, prompt in enumerate(PROMPTS):
                subject = None
                if method is not None:
                    subject = Subject(method=method, reference=first)
                request = Request(prompt=prompt, seed=SEED + index, subject=subject, **base)
                started = time.process_time()  # CPU seconds: robust to other work on a shared machine
                result = runner.generate(request)
                times.append(time.process_time() - started)
                if first is None and method is not None:
                    first = result.request
                images.append(np.asarray(Image.open(io.BytesIO(result.images[0])).convert("RGB")))
    finally:
        hook.remove()
    return times, images, latents[-len(PROMPTS) :], peak["peak_mb"]


def bench_shape(shape: str, size: int, steps: int, repeats: int, cache: Path, dtype: str | None) -> None:
    from dreamtray.engine.server.hardware import probe_machine
    from dreamtray.engine.server.runner import Runner
    from dreamtray.engine.settings import Overrides
    from dreamtray.request import Request

    quiet_progress_bars()
    model = "tiny" if shape == "tiny" else str(ensure_folder(shape, cache))
    runner = Runner(cache_dir=cache, default_model=model, machine=probe_machine(), overrides=Overrides(dtype=dtype))
    base = {"model": model, "width": size, "height": size, "steps": steps, "guidance": 0.0, "quality": "balanced"}
    runner.generate(Request(prompt="warm up", seed=1, **base))
    rows = []
    plain_time = None
    for _ in range(repeats):
        for label, method in (("plain", None), ("shared-attention", "shared-attention"), ("init-image", "init-image")):
            runner.loaded.extras.pop("subject", None)
            times, images, latents, peak = make_series(runner, base, method)
            per_image = sum(times) / len(times)
            if method is None:
                plain_time = per_image
            rows.append(
                (
                    label,
                    per_image,
                    per_image / plain_time,
                    max(times[1:]) if len(times) > 1 else times[0],
                    peak,
                    similarity(images),
                    similarity(latents),
                )
            )
    table(
        f"{shape}, {size}x{size}, {steps} step(s), 4 images, {runner.loaded.plan.dtype} on {runner.loaded.plan.device}",
        ("series", "CPU s/image", "x plain", "slowest later image CPU s", "peak RSS MiB", "pixel similarity", "latent similarity"),
        rows,
    )
    report("Random weights: these figures show that the mechanism runs and what it costs, not image quality.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=("tiny", "sd-turbo", "sdxl-turbo"), default="tiny")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--dtype", help="Weights' dtype (bfloat16 halves the memory of float32); default: the plan's.")
    args = parser.parse_args(argv)
    prepare_run()
    bench_shape(args.shape, args.size, args.steps, args.repeats, args.cache, args.dtype)
    return 0


if __name__ == "__main__":
    sys.exit(main())
