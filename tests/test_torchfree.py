"""The torch-free fast worker, for real on the tiny model exported in optimum-intel's layout: no torch or diffusers
imported by the worker that serves it, the torch path's pixels for a seed, cancel, the compiled cache reused after
an engine stop, and compiled copies of shapes no longer used pruned."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from fixtures_engine import pixels
from hub_server import HubServer
from openvino_export import build_export
from PIL import Image

from dreamtray.engine.client import JobCancelled, LocalEngine
from dreamtray.engine.server.hardware import Machine
from dreamtray.engine.server.openvino_runtime import KEEP_SHAPES, UNUSED_DAYS, USED, prune_compiled
from dreamtray.engine.server.runner import Runner
from dreamtray.engine.server.torchfree import TorchFreeRunner
from dreamtray.engine.settings import WorkerSettings
from dreamtray.request import Request

HERE = Path(__file__).parent
OPENVINO_CPU = Machine(cpu_cores=2, ram_gb=24, ram_free_gb=20, openvino=True)
PLAIN = Request(prompt="a red fox", seed=5, steps=2, guidance=0.0, width=64, height=64, quality="fast")
GUIDED = Request(
    prompt="a red fox", negative_prompt="blur", seed=7, steps=3, guidance=5.0, width=64, height=64, quality="fast",
    sampler="Euler a",
)  # fmt: skip
TOLERANCE, MEAN_TOLERANCE = 6, 0.5
"""Levels (of 255) a pixel may differ from the torch path's, at most and on average: the noise agrees to about
1e-6, not bit for bit, and the tiny model's random weights amplify that (measured here: at most 3, 0.22 on average
for one of these images; the others are the same to the bit)."""


@pytest.fixture(scope="module")
def export(tmp_path_factory, tiny_folder) -> Path:
    return build_export(tiny_folder, tmp_path_factory.mktemp("export") / "tiny-openvino")


def rgb(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)


def test_torch_noise_for_a_seed_is_drawn_the_same_in_numpy():
    import torch

    from dreamtray.engine.server.torch_randn import TorchGenerator

    # a batch's later images take seed + i, which passes 2**32 - 1 (torch keeps the low 32 bits)
    cases = [(0, (1, 4, 8, 8)), (5, (1, 4, 64, 64)), (2**32 - 1, (3, 7)), (12345, (1, 4, 9, 7)), (2**32 + 6, (3, 7))]
    for seed, shape in cases:
        generator, ours = torch.Generator("cpu").manual_seed(seed), TorchGenerator(seed)
        for _ in range(2):  # the stream goes on, as an ancestral sampler's noise does
            expected = torch.randn(shape, generator=generator).numpy()
            assert np.abs(ours.randn(shape) - expected).max() < 1e-5


@pytest.mark.parametrize("sampler", ["EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler"])
@pytest.mark.parametrize(
    "settings",
    [{}, {"timestep_spacing": "leading"}, {"timestep_spacing": "linspace", "beta_schedule": "linear"},
     {"prediction_type": "v_prediction"}],
)  # fmt: skip
def test_the_numpy_samplers_step_like_diffusers(tiny_folder, sampler, settings):
    import diffusers
    import torch

    from dreamtray.engine.server.ov_scheduler import EulerSampler
    from dreamtray.engine.server.torch_randn import TorchGenerator

    config = {**json.loads((tiny_folder / "scheduler" / "scheduler_config.json").read_text()), **settings}
    for steps in (1, 2, 4):
        theirs = getattr(diffusers, sampler).from_config(config)
        theirs.set_timesteps(steps)
        ours = EulerSampler(sampler, config, steps)
        assert np.array_equal(theirs.timesteps.numpy(), ours.timesteps)
        assert np.allclose(theirs.sigmas.numpy(), ours.sigmas, rtol=1e-5)
        generator, noise = torch.Generator().manual_seed(3), TorchGenerator(3)
        latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
        mine = latents.numpy().copy()
        for timestep in theirs.timesteps:
            output = torch.randn(1, 4, 8, 8)
            scaled = theirs.scale_model_input(latents, timestep)
            assert np.allclose(scaled.numpy(), ours.scale_model_input(mine), atol=1e-4)
            latents = theirs.step(output, timestep, latents, generator=generator).prev_sample
            mine = ours.step(output.numpy(), mine, noise)
            assert np.allclose(latents.numpy(), mine, atol=1e-4)


def test_a_seed_gives_the_torch_paths_pixels_and_the_same_pixels_every_time(export, tmp_path):
    torch_path = Runner(cache_dir=tmp_path / "a", default_model=str(export), machine=OPENVINO_CPU)
    free = TorchFreeRunner(cache_dir=tmp_path / "b", default_model=str(export), machine=OPENVINO_CPU)
    again = TorchFreeRunner(cache_dir=tmp_path / "c", default_model=str(export), machine=OPENVINO_CPU)
    for request in (PLAIN, GUIDED, PLAIN.model_copy(update={"count": 2, "width": 128, "height": 96})):
        assert free.takes(request)
        expected, made = torch_path.generate(request), free.generate(request)
        assert made.seeds == expected.seeds and made.sampler == expected.sampler
        assert made.request.width == expected.request.width and made.warnings == expected.warnings == []
        for ours, theirs in zip(made.images, expected.images):
            difference = np.abs(rgb(ours) - rgb(theirs))
            assert difference.max() <= TOLERANCE and difference.mean() <= MEAN_TOLERANCE, difference.mean()
        assert [pixels(image) for image in again.generate(request).images] == [pixels(i) for i in made.images]


def test_requests_it_cannot_serve_go_to_torch(export, tmp_path, tiny_folder):
    free = TorchFreeRunner(cache_dir=tmp_path, default_model=str(export), machine=OPENVINO_CPU)
    assert free.takes(PLAIN)
    png = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(png, format="PNG")
    for update in (
        {"quality": "balanced"},
        {"init_image": png.getvalue()},
        {"loras": [{"source": "some/lora"}]},
        {"prompt": "a (red:1.3) fox"},
        {"prompt": "fox " * 100},
        {"sampler": "DPM++ 2M Karras"},
        {"model": str(tiny_folder)},  # a diffusers folder, no export
    ):
        assert not free.takes(PLAIN.model_copy(update=update)), update


def test_the_worker_serving_an_export_from_the_hub_imports_no_torch(export, tmp_path):
    """The engine's worker loop in a fresh process: the export's files alone are fetched, previews come, and
    neither torch nor diffusers is ever imported."""
    with HubServer() as hub:
        hub.add_folder("someone/tiny-openvino", export, lfs=".bin")
        env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_DISABLE_TELEMETRY": "1"}
        env.pop("HF_HUB_OFFLINE", None)
        out = tmp_path / "out.json"
        done = subprocess.run(
            [sys.executable, str(HERE / "torchfree_process.py"), str(tmp_path / "cache"), "someone/tiny-openvino",
             str(out)],
            env=env, capture_output=True, encoding="utf-8", errors="replace", timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        fetched = sorted({entry.file for entry in hub.downloads()})
    report = json.loads(out.read_text())
    assert "torch" not in report["modules"] and "diffusers" not in report["modules"]
    assert "openvino" in report["modules"]
    assert [f for f in fetched if f.endswith(".bin")] == [
        f"{m}/openvino_model.bin" for m in ("text_encoder", "unet", "vae_decoder")
    ]
    first, second = report["jobs"]
    assert [e["kind"] for e in first["events"] if e["kind"] != "download"][-4:] == ["start", "step", "preview", "step"]
    assert Image.open(io.BytesIO(base64.b64decode(first["events"][-2]["png"]))).size == (64, 64)
    assert "Read someone/tiny-openvino's OpenVINO modules as exported (no torch)" in [
        e.get("message") for e in first["events"]
    ]
    for job in (first, second):
        kind, _, result = job["answer"]
        assert kind == "result" and json.loads(result)["warnings"] == []


def engine_for(export: Path, root: Path) -> LocalEngine:
    settings = WorkerSettings(
        cache_dir=str(root / "cache"), default_model=str(export), overrides={"runtime": "openvino"}
    )
    return LocalEngine(settings, state_dir=root / "state", token_file=root / "token", exit_after_idle=600)


def compiled_files(cache: Path) -> dict[str, tuple[int, int]]:
    """Every compiled program under the cache: its size and modification time (not the `used` stamps)."""
    return {
        str(path.relative_to(cache)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in cache.rglob("compiled/*/*/*")
        if path.is_file() and path.name != USED
    }


def libtorch_mapped(pid: int) -> bool:
    return "libtorch" in Path(f"/proc/{pid}/maps").read_text()


def test_cancel_and_a_restart_reuse_the_compiled_programs_in_a_worker_without_torch(export, tmp_path):
    engine = engine_for(export, tmp_path)
    try:
        long = PLAIN.model_copy(update={"steps": 150, "count": 4, "width": 128, "height": 128})
        job = engine.submit(long)
        for event in job.events():
            if event["kind"] == "step":
                job.cancel()
                break
        with pytest.raises(JobCancelled):
            job.result()
        status = engine.health()
        assert status["worker_pid"] and not libtorch_mapped(status["worker_pid"])
        first = engine.submit(PLAIN).result()
        programs = compiled_files(tmp_path / "cache")
        assert any("unet" in name for name in programs) and any("vae_decoder" in name for name in programs)
        engine.unload()
        ready = bound_wait(lambda: engine.health()["ready_worker_pid"])
        assert not libtorch_mapped(ready)  # the ready worker after a torch-free job imports no torch either
        assert engine.stop()
        again = engine.submit(PLAIN).result()  # a new service and worker
        assert pixels(again.images[0]) == pixels(first.images[0])
        assert compiled_files(tmp_path / "cache") == programs  # read back, not compiled again
    finally:
        engine.stop()
        engine.close()


def bound_wait(value, seconds: float = 120.0):
    """`value()` once it is truthy, polled for at most `seconds`."""
    end = time.monotonic() + seconds
    while not (found := value()):
        assert time.monotonic() < end, "waited too long"
        time.sleep(0.1)
    return found


def test_compiled_copies_of_shapes_not_used_lately_are_pruned(export, tmp_path):
    free = TorchFreeRunner(cache_dir=tmp_path, default_model=str(export), machine=OPENVINO_CPU)
    now = time.time()
    free.generate(PLAIN)
    (compiled,) = tmp_path.glob("openvino/*/compiled/unet")
    (kept,) = compiled.iterdir()
    stale, recent = [], []
    for index in range(KEEP_SHAPES + 2):
        folder = compiled / f"1x4x{index}x{index}-1-1x77x32"
        folder.mkdir()
        (folder / "program.blob").write_bytes(b"x")
        age = UNUSED_DAYS * 86400 + 10 if index == 0 else index
        (folder / USED).touch()
        os.utime(folder / USED, (now - age, now - age))
        (stale if index == 0 or index >= KEEP_SHAPES else recent).append(folder.name)
    (compiled / "1234.blob").write_bytes(b"a copy in the single folder of earlier versions")
    os.utime(kept / USED, (now, now))
    removed = prune_compiled(compiled, now)
    assert sorted(path.name for path in removed) == sorted([*stale, "1234.blob"])
    assert sorted(path.name for path in compiled.iterdir()) == sorted([kept.name, *recent[: KEEP_SHAPES - 1]])


def test_doctor_shows_the_cache_and_its_compiled_copies(export, tmp_path, monkeypatch):
    from dreamtray import paths
    from dreamtray.cli.doctor import _openvino_cache, render

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    models = paths.cache_dir() / "models"
    TorchFreeRunner(cache_dir=models, default_model=str(export), machine=OPENVINO_CPU).generate(PLAIN)
    cache = _openvino_cache()
    compiled = sum(f.stat().st_size for f in (models / "openvino").rglob("compiled/*/*/*") if f.is_file())
    assert cache["path"] == str(models / "openvino") and cache["compiled_shapes"] == 3  # UNet, encoder, decoder
    assert cache["compiled_bytes"] == compiled > 0 and cache["bytes"] >= compiled
    report = {"system": "", "torch": "", "cuda_build": None, "diffusers": "", "gpus": [], "mps": False}
    report |= {"cpu_cores": 2, "ram_gb": 8, "ram_free_gb": 4, "configured_model": "x", "auto_model": "x"}
    report |= {"plans": {}, "model_cache": "", "openvino": "2026", "openvino_cache": cache, "config_file": "c"}
    report |= {"config_problems": []}
    size = f"{compiled / 2**20:.0f} MB"
    assert f"in {models / 'openvino'} (compiled copies {size} for 3 module shapes)" in render(report)


def test_the_tokenizer_read_without_transformers_gives_transformers_ids(export):
    from transformers import CLIPTokenizer

    from dreamtray.engine.server.ov_pipeline import ClipTokenizer

    theirs, ours = CLIPTokenizer.from_pretrained(export / "tokenizer"), ClipTokenizer(export / "tokenizer")
    assert ours.fast is not None and ours.window == theirs.model_max_length
    texts = ["a red fox", "", "  Spaces,   CAPS and punctuation!? émoji 🦊 日本語", "fox " * 100, "a " * 75, "a " * 76]
    for text in texts:
        expected = theirs(text, padding="max_length", max_length=ours.window, truncation=True, return_tensors="np")
        assert np.array_equal(ours.ids(text), expected.input_ids)
        assert ours.length(text) == len(theirs(text, truncation=False).input_ids)


def test_finishing_early_keeps_the_image_as_far_as_it_got(export, tmp_path):
    free = TorchFreeRunner(cache_dir=tmp_path, default_model=str(export), machine=OPENVINO_CPU)
    events: list[dict] = []
    request = PLAIN.model_copy(update={"steps": 4, "count": 2})
    result = free.generate(request, emit=events.append, finish_early=lambda: True)
    assert [e["step"] for e in events if e["kind"] == "step"] == [1]
    assert len(result.images) == 1 and result.seeds == [PLAIN.seed]
    assert result.warnings == ["Interrupted at step 1 of 8: the image is as far as it had got."]
    assert pixels(result.images[0]) != pixels(free.generate(request.model_copy(update={"count": 1})).images[0])
