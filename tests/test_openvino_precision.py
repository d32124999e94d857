"""The inference precision asked of OpenVINO's CPU plugin: f32 on a CPU with AVX512-BF16 but no AMX (where
OpenVINO's default, bf16, is the slower one), OpenVINO's own choice elsewhere; every compiled module gets it."""

from __future__ import annotations

import numpy as np
import openvino as ov
import pytest
from openvino import opset13 as ops

from dreamtray.engine.server import openvino_runtime
from dreamtray.engine.server.openvino_runtime import F32_MIN_MEMORY, Converted, precision_for

GIB = 2**30


@pytest.mark.parametrize(
    "flags, memory, precision",
    [
        ("fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni", 16 * GIB, "f32"),  # Zen 4, Cooper Lake: bf16 without AMX
        ("fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni", 8 * GIB, None),  # ...on 8 GB: bf16, half the weights' size
        ("fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8", 64 * GIB, None),  # Sapphire Rapids and later
        ("fpu sse2 avx2 fma", 16 * GIB, None),  # most laptops: OpenVINO runs f32 there by itself
        ("", 16 * GIB, None),
    ],
)
def test_precision_for_the_cpu_flags_and_memory(flags, memory, precision):
    assert precision_for(set(flags.split()), memory) == precision


class RecordingCore:
    """OpenVINO's Core, noting the config of each compile."""

    def __init__(self, core: ov.Core, configs: list[dict]):
        self.core, self.configs = core, configs

    def compile_model(self, model, device: str, config: dict):
        self.configs.append(config)
        return self.core.compile_model(model, device, config)


def test_every_compiled_module_gets_the_machines_precision(tmp_path, monkeypatch):
    data = ops.parameter([1, 8], np.float32, name="x")
    weights = ops.constant(np.linspace(-1, 1, 64, dtype=np.float32).reshape(8, 8))
    folder = tmp_path / "module"
    folder.mkdir()
    ov.save_model(ov.Model([ops.matmul(data, weights, False, False)], [data]), folder / "model.xml")
    for flags, expected in (("avx512f avx512_bf16", "f32"), ("avx512_bf16 amx_bf16 amx_tile", None)):
        monkeypatch.setattr(
            openvino_runtime, "inference_precision", lambda flags=flags: precision_for(set(flags.split()), F32_MIN_MEMORY)
        )
        converted, configs = Converted(folder, compiled_dir=tmp_path / f"compiled-{expected}"), []
        converted.core = RecordingCore(converted.core, configs)
        program = converted.compile([(1, 8)])
        assert [config.get("INFERENCE_PRECISION_HINT") for config in configs] == [expected]  # on any CPU
        asked = program.get_property("INFERENCE_PRECISION_HINT")  # and OpenVINO took it (where its default differs)
        default = ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT")
        assert asked == (ov.Type.f32 if expected == "f32" else default)
