"""OpenVINO's inference precision on this CPU, side by side in one run: the UNet of SDXS's and SD-Turbo's shapes
(random weights, the presets' ready-made export layout, bench/openvino_exports.py) compiled for one static shape
with INFERENCE_PRECISION_HINT f32 and bf16, taking turns, each call timed (wall and CPU seconds).

Run (under the heavy-run lock on a shared machine):  python bench/openvino_precision.py [--shapes sdxs,sd-turbo]
    [--sizes 512,256] [--repeats 5]

It shows what `openvino_runtime.precision_for` chooses: on a CPU with AVX512-BF16 but no AMX, OpenVINO's default
(bf16) is the slower one; with AMX, bf16 is the fast one and OpenVINO's default is kept.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import DEFAULT_CACHE  # noqa: E402
from openvino_exports import SHAPES, ensure_export  # noqa: E402

from dreamtray.engine.server import openvino_runtime  # noqa: E402  (keeps OpenVINO's telemetry out)

PRECISIONS = ("f32", "bf16")


def unet_program(core, xml: Path, side: int, precision: str):
    import openvino as ov

    model = core.read_model(xml)
    shapes = {"sample": [1, 4, side // 8, side // 8], "timestep": [1], "encoder_hidden_states": [1, 77, 1024]}
    model.reshape({port: ov.PartialShape(shapes[port.get_any_name()]) for port in model.inputs})
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": precision}
    return core.compile_model(model, "CPU", config), shapes


def main() -> None:
    import numpy as np
    import openvino as ov

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default=",".join(reversed(SHAPES)))
    parser.add_argument("--sizes", default="512,256")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    core = ov.Core()
    flags = Path("/proc/cpuinfo").read_text(errors="replace") if Path("/proc/cpuinfo").exists() else ""
    print(f"CPU: {'AMX' if ' amx_bf16' in flags else 'no AMX'}, {'AVX512-BF16' if ' avx512_bf16' in flags else 'no AVX512-BF16'}; "
          f"OpenVINO's default precision here: {core.get_property('CPU', 'INFERENCE_PRECISION_HINT')}; "
          f"dreamtray asks for: {openvino_runtime.inference_precision() or 'the default'}")  # fmt: skip
    print("\n| shape | size | precision | UNet call, wall median (s) | CPU s median | CPU x f32 |")
    print("|---|---|---|---|---|---|")
    for shape in args.shapes.split(","):
        xml = ensure_export(shape, DEFAULT_CACHE) / "unet" / "openvino_model.xml"
        for side in (int(size) for size in args.sizes.split(",")):
            programs = {p: unet_program(core, xml, side, p) for p in PRECISIONS}
            rng = np.random.default_rng(0)
            inputs = {
                "sample": rng.standard_normal(programs["f32"][1]["sample"], dtype=np.float32),
                "timestep": np.array([999], dtype=np.int64),
                "encoder_hidden_states": rng.standard_normal((1, 77, 1024), dtype=np.float32),
            }
            times: dict[str, list[tuple[float, float]]] = {p: [] for p in PRECISIONS}
            for _ in range(args.repeats + 1):  # taking turns; the first round warms up and is not counted
                for precision, (program, _) in programs.items():
                    request = program.create_infer_request()
                    wall, cpu = time.perf_counter(), time.process_time()
                    request.infer(inputs)
                    times[precision].append((time.perf_counter() - wall, time.process_time() - cpu))
            base = statistics.median(cpu for _, cpu in times["f32"][1:])
            for precision in PRECISIONS:
                walls, cpus = zip(*times[precision][1:])
                cpu = statistics.median(cpus)
                print(f"| {shape} | {side} | {precision} | {statistics.median(walls):.2f} | {cpu:.2f} | {cpu / base:.2f} |")


if __name__ == "__main__":
    main()
