"""A UNet IR in bf16 (OpenVINO's default on a CPU with bf16 units), hybrid int8 and full int8, side by side.

Run:  python bench/int8_unet.py IR_FOLDER [--latent 64] [--hidden 1024] [--batch 1] [--samples 4] [--repeats 5]

IR_FOLDER is a converted UNet (model.xml and model.bin, as the engine's OpenVINO cache keeps it, e.g.
`models/openvino/<model>-<id>/unet`). The int8 versions that calibrate do so on `--samples` random inputs (latents
and text embeddings from a normal distribution, timestep 999: SD-Turbo's one step); all are compared on others:
the seconds per UNet call (median of `--repeats`), the relative L2 error of the output against the same IR run
in f32, and how far the process's RSS rose above its level before while quantizing (sampled every 20 ms).
Hybrid is the engine's recipe (dreamtray.engine.server.openvino_int8, symmetric int8 weights for the linear
layers), also with asymmetric ones as optimum-intel makes them; full int8 quantizes every layer NNCF quantizes in
a transformer, activations included; data-free int8 compresses every layer's weights (convolutions too) with no
calibration at all (the engine's plan when hybrid does not fit the memory). For SD-Turbo's shape use the
defaults (it needs about 10 GB of RAM); for the `tiny` model, `--latent 8 --hidden 32`.
"""

from __future__ import annotations  # noqa: I001 (the back end's import comes before NNCF's and OpenVINO's)

import argparse
import os
import time
from pathlib import Path

from measure import median, peak_rss_during, report, rss_mb, table

from dreamtray.engine.server.openvino_int8 import hybrid_quantize, weights_only_quantize  # first: telemetry out

import nncf  # noqa: E402
import numpy as np  # noqa: E402
import openvino as ov  # noqa: E402


def inputs(seed: int, batch: int, latent: int, hidden: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [
        rng.standard_normal((batch, 4, latent, latent), dtype=np.float32),
        np.array(999.0, dtype=np.float32),
        rng.standard_normal((batch, 77, hidden), dtype=np.float32),
    ]


def full_quantize(model: ov.Model, samples: list[list[np.ndarray]]) -> ov.Model:
    return nncf.quantize(model, nncf.Dataset(samples), model_type=nncf.ModelType.TRANSFORMER, subset_size=len(samples))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--latent", type=int, default=64, help="latent size (image size / 8)")
    parser.add_argument("--hidden", type=int, default=1024, help="text embedding width (SD 2.x: 1024, 1.x: 768)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    core = ov.Core()
    source = core.read_model(args.folder / "model.xml")
    shapes = {i: ov.PartialShape(list(a.shape)) for i, a in enumerate(inputs(0, args.batch, args.latent, args.hidden))}
    calibration = [inputs(1 + i, args.batch, args.latent, args.hidden) for i in range(args.samples)]
    check = [inputs(1000 + i, args.batch, args.latent, args.hidden) for i in range(3)]
    report(f"load average before: {' '.join(open('/proc/loadavg').read().split()[:3])}, {os.cpu_count()} CPUs")

    def compiled(model: ov.Model, precision: str | None):
        model = model.clone()
        model.reshape(shapes)
        config = {"PERFORMANCE_HINT": "LATENCY", **({"INFERENCE_PRECISION_HINT": precision} if precision else {})}
        return core.compile_model(model, "CPU", config)

    def outputs(program) -> list[np.ndarray]:
        return [program(sample)[0].copy() for sample in check]

    def call_seconds(program) -> float:
        request = program.create_infer_request()
        request.infer(check[0])
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            request.infer(check[0])
            times.append(time.perf_counter() - start)
        return median(times)

    reference = outputs(compiled(source, "f32"))
    variants = {"bf16 (default)": (source, 0.0)}
    recipes = {
        "hybrid int8 (engine: symmetric weights)": hybrid_quantize,
        "hybrid int8, asymmetric weights (optimum-intel's default)": lambda model, samples: hybrid_quantize(
            model, samples, symmetric_weights=False
        ),
        "full int8": full_quantize,
        "data-free int8 weights (compress_weights INT8_SYM, every layer)": weights_only_quantize,
    }
    growth = {"bf16 (default)": 0.0}
    for name, quantize in recipes.items():
        start, before = time.perf_counter(), rss_mb()
        with peak_rss_during() as peak:
            variants[name] = (quantize(source.clone(), calibration), time.perf_counter() - start)
        growth[name] = peak["peak_mb"] - before
    rows = []
    for name, (model, quantize_s) in variants.items():
        program = compiled(model, None)
        errors = [np.linalg.norm(o - r) / np.linalg.norm(r) for o, r in zip(outputs(program), reference)]
        rows.append((name, call_seconds(program), float(np.mean(errors)), quantize_s, growth[name]))
        del program
    table(
        f"UNet {args.folder}: batch {args.batch}, latents {args.latent}x{args.latent}, {args.samples} samples",
        ["variant", "s per call", "rel. L2 error vs f32", "quantize s", "RSS growth MiB"],
        rows,
    )
    report(f"load average after: {' '.join(open('/proc/loadavg').read().split()[:3])}")


if __name__ == "__main__":
    main()
