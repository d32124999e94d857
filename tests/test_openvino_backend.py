"""The OpenVINO back end of quality fast, for real on the tiny model: its cache across processes, stale and
broken entries, and no usage report leaving the machine."""

from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path

import pytest
from fixtures_engine import CPU_MACHINE, pixels
from openvino_process import run_refusing_the_network

from dreamtray.engine.server.hardware import Machine
from dreamtray.engine.server.runner import Runner
from dreamtray.engine.settings import Overrides
from dreamtray.request import Request

HERE = Path(__file__).parent
OPENVINO_CPU = Machine(cpu_cores=2, ram_gb=24, openvino=True)
FAST = Request(prompt="a red fox", seed=5, steps=2, width=64, height=64, quality="fast", preview_every=1)


def run_process(cache: Path, tmp: Path, name: str) -> dict:
    """One fast job in a new process with a home of its own; the network is refused and attempts are logged."""
    return run_refusing_the_network(HERE / "openvino_process.py", cache, tmp, name)


def conversions(messages: list[str]) -> list[str]:
    return [m for m in messages if m.startswith("Converting")]


def quantizations(messages: list[str]) -> list[str]:
    """The quantization steps begun (not the heartbeats a slow machine adds while one runs)."""
    return [m for m in messages if m.startswith("Quantizing") and not m.endswith(" s so far")]


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> tuple[Path, dict]:
    """A cache where a first process converted the tiny model, and what that process made."""
    cache = tmp_path_factory.mktemp("openvino-cache")
    return cache, run_process(cache, tmp_path_factory.mktemp("first"), "first")


def test_the_first_process_converts_without_reaching_the_network(converted):
    cache, first = converted
    assert len(conversions(first["messages"])) == 3, first["messages"]  # UNet, text encoder, tiny decoder
    assert any(m.startswith("Converted the UNet of tiny:") and "MiB in" in m for m in first["messages"])
    assert first["previews"] == [1] and not first["warnings"] and first["int8"]
    assert quantizations(first["messages"]) == [
        "Quantizing the UNet to int8 (once for this model)",
        "Quantizing the tiny decoder to int8 (once for this model)",
    ]
    (folder,) = (cache / "openvino").iterdir()
    entries = sorted(p.name for p in folder.iterdir() if p.is_dir())
    assert entries == ["text_encoder", "tiny_decoder", "tiny_decoder-int8", "unet", "unet-int8"]


def test_a_second_process_reuses_the_cache_and_makes_the_same_image(converted, tmp_path):
    cache, first = converted
    second = run_process(cache, tmp_path, "second")
    assert not conversions(second["messages"]) and not quantizations(second["messages"]) and second["int8"]
    assert not first["light"] and second["light"], "the second process ran on the cached modules alone"
    assert "Read tiny's OpenVINO modules from the cache (no torch weights)" in second["messages"]
    assert second["png"] == first["png"]


def test_the_image_on_openvino_is_reproducible_in_process_and_differs_from_torch(converted):
    cache, first = converted
    runner = Runner(cache_dir=cache, default_model="tiny", machine=OPENVINO_CPU)
    events: list[dict] = []
    result = runner.generate(FAST, events.append)
    assert not [e for e in events if e.get("message", "").startswith("Converting")]
    assert pixels(result.images[0]) == pixels(base64.b64decode(first["png"]))
    on_torch = Runner(cache_dir=cache, default_model="tiny", machine=CPU_MACHINE).generate(FAST)
    assert pixels(on_torch.images[0]) != pixels(result.images[0]), "the OpenVINO modules really ran"


def test_a_changed_key_converts_again(converted):
    cache, first = converted
    (folder,) = (cache / "openvino").iterdir()
    key_file = folder / "unet" / "key.json"
    key = json.loads(key_file.read_text())
    key_file.write_text(json.dumps({**key, "openvino": "2020.1"}))
    events: list[dict] = []
    result = Runner(cache_dir=cache, default_model="tiny", machine=OPENVINO_CPU).generate(FAST, events.append)
    messages = [e.get("message", "") for e in events]
    assert conversions(messages) == ["Converting the UNet of tiny to OpenVINO (its cache is out of date)"]
    assert json.loads(key_file.read_text()) == key
    assert pixels(result.images[0]) == pixels(base64.b64decode(first["png"]))


@pytest.mark.parametrize(
    ("entry", "int8", "remade"),
    [
        ("unet-int8", True, "Quantizing the UNet to int8 (once for this model)"),
        ("unet", False, "Converting the UNet of tiny to OpenVINO (once for this model)"),
    ],
)
def test_a_broken_cache_falls_back_to_torch_with_a_warning(converted, entry, int8, remade):
    cache, _ = converted
    (folder,) = (cache / "openvino").iterdir()
    weights = folder / entry / "model.bin"
    os.truncate(weights, weights.stat().st_size // 2)
    settings = Overrides(int8=None if int8 else False)
    result = Runner(cache_dir=cache, default_model="tiny", machine=OPENVINO_CPU, overrides=settings).generate(FAST)
    (warning,) = result.warnings
    assert warning.startswith(f"Running on torch: the OpenVINO cache at {folder / entry} could not be read")
    assert warning.endswith("removed it")
    on_torch = Runner(cache_dir=cache, default_model="tiny", machine=CPU_MACHINE).generate(FAST)
    assert pixels(result.images[0]) == pixels(on_torch.images[0])
    assert not (folder / entry).exists()
    events: list[dict] = []
    runner = Runner(cache_dir=cache, default_model="tiny", machine=OPENVINO_CPU, overrides=settings)
    again = runner.generate(FAST, events.append)
    messages = [e.get("message", "") for e in events]
    assert (conversions(messages) + quantizations(messages)) == [remade]
    assert not again.warnings


def test_int8_off_runs_the_converted_modules_as_they_are(converted):
    cache, first = converted
    events: list[dict] = []
    bf16 = Runner(cache_dir=cache, default_model="tiny", machine=OPENVINO_CPU, overrides=Overrides(int8=False))
    result = bf16.generate(FAST, events.append)
    assert not quantizations([e.get("message", "") for e in events]) and not bf16.loaded.extras["openvino"].int8
    assert pixels(result.images[0]) != pixels(base64.b64decode(first["png"])), "int8 changes pixels"
    again = Runner(cache_dir=cache, default_model="tiny", machine=OPENVINO_CPU, overrides=Overrides(int8=False))
    assert pixels(again.generate(FAST).images[0]) == pixels(result.images[0])


def test_importing_the_back_end_keeps_openvino_telemetry_out():
    import dreamtray.engine.server.openvino_backend  # noqa: F401, I001 (first: it must come before openvino's own)
    import openvino.tools.ovc.convert_impl as convert_impl

    assert sys.modules["openvino_telemetry"] is None
    assert convert_impl.tm.__name__ == "openvino.tools.ovc.telemetry_stub"


def test_weighted_prompts_are_encoded_on_torch_and_run_on_openvino(converted):
    cache, _ = converted
    runner = Runner(cache_dir=cache, default_model="tiny", machine=OPENVINO_CPU)
    weighted = runner.generate(FAST.model_copy(update={"prompt": "a (red:1.4) fox"}))
    plain = runner.generate(FAST.model_copy(update={"prompt": "a red fox"}))
    assert not weighted.warnings and runner.loaded.extras["openvino"] is not None
    assert pixels(weighted.images[0]) != pixels(plain.images[0])


def light_runner(cache: Path) -> tuple[Runner, bytes]:
    """A runner that made one fast image on the cached OpenVINO modules alone, and that image."""
    runner = Runner(cache_dir=cache, default_model="tiny", machine=OPENVINO_CPU)
    image = runner.generate(FAST).images[0]
    assert runner.loaded.light
    assert {p.device.type for p in runner.loaded.pipe.vae.parameters()} == {"meta"}, "no VAE weights were loaded"
    return runner, image


def test_a_request_that_needs_torch_loads_the_whole_model_after_a_light_one(converted):
    cache, first = converted
    runner, image = light_runner(cache)
    assert pixels(image) == pixels(base64.b64decode(first["png"]))
    balanced = runner.generate(FAST.model_copy(update={"quality": "balanced"}))
    assert not runner.loaded.light and runner.load_count == 2
    reference = Runner(cache_dir=cache, default_model="tiny", machine=CPU_MACHINE).generate(
        FAST.model_copy(update={"quality": "balanced"})
    )
    assert pixels(balanced.images[0]) == pixels(reference.images[0])
    again = runner.generate(FAST)  # the whole model serves fast as well: no second load
    assert runner.load_count == 2 and pixels(again.images[0]) == pixels(image)


@pytest.mark.parametrize(
    "change",
    [
        {"prompt": "a (red:1.4) fox"},  # A1111 weights: compel on torch's text encoder
        {"prompt": "a red fox BREAK in snow"},
        {"prompt": " ".join(["a red fox"] * 40)},  # beyond the encoder's window
        {"negative_prompt": "(blurry:1.2)", "guidance": 3.0},
    ],
    ids=["weights", "break", "long", "weighted-negative"],
)
def test_prompts_that_need_torch_load_the_whole_model_and_still_run_on_openvino(converted, change):
    cache, _ = converted
    runner, _ = light_runner(cache)
    result = runner.generate(FAST.model_copy(update=change))
    assert not runner.loaded.light and runner.loaded.extras["openvino"] is not None and not result.warnings
    fresh = Runner(cache_dir=cache, default_model="tiny", machine=OPENVINO_CPU)
    fresh.ensure_loaded("tiny")  # loaded in full from the start
    assert pixels(fresh.generate(FAST.model_copy(update=change)).images[0]) == pixels(result.images[0])


def test_changed_model_files_are_loaded_in_full_once_then_light_again(converted, tmp_path):
    cache, first = converted
    (model,) = [p for p in cache.iterdir() if p.is_dir() and p.name.startswith("tiny-v")]
    weights = next((model / "unet").glob("*.safetensors"))
    os.utime(weights)  # the same bytes, a new modification time: the stamp no longer matches
    events: list[dict] = []
    runner = Runner(cache_dir=cache, default_model="tiny", machine=OPENVINO_CPU)
    result = runner.generate(FAST, events.append)
    assert not runner.loaded.light
    assert not conversions([e.get("message", "") for e in events]), "same weights: the entry is kept"
    assert pixels(result.images[0]) == pixels(base64.b64decode(first["png"]))
    light, image = light_runner(cache)  # the key now carries the new stamp
    assert pixels(image) == pixels(result.images[0])


def test_a_plain_negative_prompt_with_guidance_stays_on_the_cached_modules(converted):
    """Classifier-free guidance (batch of two, the negative encoded on OpenVINO and cached) needs no torch weights."""
    cache, _ = converted
    guided = FAST.model_copy(update={"negative_prompt": "blurry", "guidance": 3.0})
    runner, _ = light_runner(cache)
    light = runner.generate(guided)
    assert runner.loaded.light and runner.load_count == 1 and not light.warnings
    full = Runner(cache_dir=cache, default_model="tiny", machine=OPENVINO_CPU)
    full.ensure_loaded("tiny")
    assert pixels(full.generate(guided).images[0]) == pixels(light.images[0])
