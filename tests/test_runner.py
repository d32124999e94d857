"""The diffusers side of the engine, run for real on the tiny model in this process."""

from __future__ import annotations

import pytest
import torch
from fixtures_engine import CPU_MACHINE, pixels

from dreamtray.engine.server.models import ModelError, resolve_model
from dreamtray.engine.server.runner import GenerationCancelled, GenerationError, Runner
from dreamtray.engine.settings import Overrides, Policy
from dreamtray.request import Request, RequestError

SMALL = {"width": 64, "height": 64}


def test_same_seed_same_pixels_and_seeds_are_reported(runner):
    first = runner.generate(Request(prompt="a red fox", seed=7, count=2, **SMALL))
    again = runner.generate(Request(prompt="a red fox", seed=7, count=2, **SMALL))
    assert first.seeds == [7, 8]
    assert [pixels(p) for p in first.images] == [pixels(p) for p in again.images]
    assert pixels(first.images[0]) != pixels(first.images[1])
    single = runner.generate(Request(prompt="a red fox", seed=8, **SMALL))
    assert pixels(single.images[0]) == pixels(first.images[1]), "image i of a batch is reproducible alone from seed+i"


def test_without_a_seed_the_seed_used_is_reported_and_reproduces(runner):
    result = runner.generate(Request(prompt="a lighthouse", **SMALL))
    assert result.request.seed == result.seeds[0]
    again = runner.generate(Request(prompt="a lighthouse", seed=result.seeds[0], **SMALL))
    assert pixels(again.images[0]) == pixels(result.images[0])


def test_result_carries_the_settings_really_used(runner):
    result = runner.generate(Request(prompt="x", width=70, height=100, seed=1))
    assert (result.request.width, result.request.height) == (72, 96), "snapped to multiples of 8"
    assert result.request.steps == 2 and result.request.guidance == 0.0, "the preset's defaults"
    assert result.model == "tiny" and result.sampler == "Euler"


def test_aspect_gives_the_native_pixel_count(runner):
    result = runner.generate(Request(prompt="wide", aspect=16 / 9, steps=1, seed=1))
    width, height = result.request.width, result.request.height
    assert abs(width / height - 16 / 9) < 0.03
    assert 0.95 < width * height / 512**2 < 1.05


def test_progress_events_once_per_step(runner):
    events = []
    runner.generate(Request(prompt="x", steps=3, seed=1, **SMALL), emit=events.append)
    steps = [e["step"] for e in events if e["kind"] == "step"]
    assert steps == [1, 2, 3]
    assert all(e["total"] == 3 for e in events if e["kind"] == "step")


def test_cancel_stops_the_job_and_returns_no_image(runner):
    events = []
    with pytest.raises(GenerationCancelled):
        runner.generate(
            Request(prompt="x", steps=5, seed=1, **SMALL),
            emit=events.append,
            cancelled=lambda: len([e for e in events if e["kind"] == "step"]) >= 2,
        )
    assert [e["step"] for e in events if e["kind"] == "step"] == [1, 2]


def test_blank_and_out_of_range_requests_are_clear_errors():
    with pytest.raises(RequestError, match="prompt: the prompt is empty"):
        Request.parse(prompt="   ")
    with pytest.raises(RequestError, match="width"):
        Request.parse(prompt="x", width=100_000)
    with pytest.raises(RequestError, match="steps"):
        Request.parse(prompt="x", steps=0)


def test_unknown_sampler_is_a_clear_error(runner):
    with pytest.raises(RequestError, match="unknown sampler 'Warp drive'; the closest are"):
        Request.parse(prompt="x", sampler="Warp drive")
    with pytest.raises(GenerationError, match="diffusers has no scheduler class 'WarpDriveScheduler'"):
        runner.generate(Request(prompt="x", sampler="WarpDriveScheduler", seed=1, **SMALL))


def test_sampler_by_a1111_name(runner):
    result = runner.generate(Request(prompt="x", sampler="Euler a", seed=1, **SMALL))
    assert result.sampler == "Euler a"
    runner.generate(Request(prompt="x", sampler="Euler", seed=1, **SMALL))


@pytest.mark.parametrize(
    ("typed", "written", "flags"),
    [
        ("dpm++ 2m karras", "DPM++ 2M Karras", {"use_karras_sigmas": True, "algorithm_type": "dpmsolver++"}),
        ("EulerAncestralDiscreteScheduler", "Euler a", {}),
        ("DPM++ 2M SDE Exponential", "DPM++ 2M SDE Exponential", {"use_exponential_sigmas": True}),
        ("LMS Karras", "LMS Karras", {"use_karras_sigmas": True}),
        ("Heun", "Heun", {"use_karras_sigmas": False}),
    ],
)
def test_samplers_run_as_named_and_are_reported_by_their_a1111_name(runner, typed, written, flags):
    result = runner.generate(Request(prompt="x", sampler=typed, steps=2, seed=1, **SMALL))
    assert result.sampler == written == result.request.sampler
    scheduler = runner.loaded.pipe.scheduler
    assert {key: scheduler.config[key] for key in flags} == flags


def test_out_of_memory_steps_down_and_retries_once(model_cache):
    """An injected out-of-memory error on the first attempt: the retry on the next policy gives the same image."""
    reference = Runner(cache_dir=model_cache, default_model="tiny", machine=CPU_MACHINE)
    expected = reference.generate(Request(prompt="oom", seed=5, **SMALL))
    runner = Runner(
        cache_dir=model_cache, default_model="tiny", machine=CPU_MACHINE, overrides=Overrides(policy=Policy.GPU)
    )
    loaded = runner.ensure_loaded(None)
    original_forward = loaded.pipe.unet.forward
    calls = {"n": 0}

    def forward_running_out_once(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return original_forward(*args, **kwargs)

    loaded.pipe.unet.forward = forward_running_out_once
    result = runner.generate(Request(prompt="oom", seed=5, **SMALL))
    assert runner.loaded.plan.policy is Policy.MODEL_OFFLOAD
    assert any("out of memory" in w for w in result.warnings)
    assert pixels(result.images[0]) == pixels(expected.images[0])


def test_model_offload_on_the_cpu_gives_the_cpu_pixels(runner, model_cache):
    """Offload hooks copy the weights out of the memory-mapped model file; the plain CPU plan must compute alike.

    At 256 px: a weight at another alignment moves a few bytes of the image by one, often none at 64 px.
    """
    request = Request(prompt="policies", seed=9, width=256, height=256)
    offload = Overrides(policy=Policy.MODEL_OFFLOAD)
    offloaded = Runner(cache_dir=model_cache, default_model="tiny", machine=CPU_MACHINE, overrides=offload)
    result = offloaded.generate(request)
    assert offloaded.loaded.plan.policy is Policy.MODEL_OFFLOAD
    assert pixels(result.images[0]) == pixels(runner.generate(request).images[0])


def test_out_of_memory_twice_fails_with_a_clear_message(model_cache):
    runner = Runner(
        cache_dir=model_cache, default_model="tiny", machine=CPU_MACHINE, overrides=Overrides(policy=Policy.GPU)
    )
    loaded = runner.ensure_loaded(None)

    def always_out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory")

    loaded.pipe.unet.forward = always_out_of_memory
    with pytest.raises(GenerationError, match="Out of memory .* try a smaller size"):
        runner.generate(Request(prompt="oom", seed=5, **SMALL))


def test_pickle_checkpoints_are_refused_unless_allowed(tmp_path):
    checkpoint = tmp_path / "model.ckpt"
    checkpoint.write_bytes(b"not really a pickle")
    with pytest.raises(ModelError, match="pickle checkpoint.*allow_pickle"):
        resolve_model(str(checkpoint))
    assert resolve_model(str(checkpoint), allow_pickle=True).kind == "single_file"


def test_saved_diffusers_folder_round_trip(runner, tiny_folder, model_cache):
    from_preset = runner.generate(Request(prompt="folder", seed=3, **SMALL))
    folder_runner = Runner(cache_dir=model_cache, default_model=str(tiny_folder), machine=CPU_MACHINE)
    from_folder = folder_runner.generate(Request(prompt="folder", seed=3, steps=2, guidance=0.0, **SMALL))
    assert from_folder.model == tiny_folder.name
    assert pixels(from_folder.images[0]) == pixels(from_preset.images[0])


def test_unknown_model_names_the_choices():
    with pytest.raises(ModelError, match="sd-turbo"):
        resolve_model("no-such-model")


def test_hub_unreachable_names_the_two_ways_on(model_cache, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # no traffic leaves this machine
    runner = Runner(cache_dir=model_cache, default_model="sd-turbo", machine=CPU_MACHINE)
    with pytest.raises(ModelError) as caught:
        runner.generate(Request(prompt="x", **SMALL))
    message = str(caught.value)
    assert "Cannot download sd-turbo" in message and "--model tiny" in message and ".safetensors" in message


def test_refine_reuses_the_loaded_modules(runner):
    base = runner.generate(Request(prompt="a fox", seed=2, **SMALL))
    loads = runner.load_count
    refined = runner.generate(Request(prompt="a fox in snow", init_image=base.images[0], strength=0.5, seed=2, **SMALL))
    assert runner.load_count == loads
    assert runner.loaded.img2img.unet is runner.loaded.pipe.unet
    assert pixels(refined.images[0]) != pixels(base.images[0])


def test_a_sampler_applies_to_its_own_request_only(runner):
    plain = runner.generate(Request(prompt="sampler", seed=4, **SMALL))
    runner.generate(Request(prompt="sampler", sampler="DPM++ 2M", seed=4, **SMALL))
    after = runner.generate(Request(prompt="sampler", seed=4, **SMALL))
    assert after.sampler == plain.sampler == "Euler"
    assert pixels(after.images[0]) == pixels(plain.images[0])


def test_single_file_safetensors_round_trip(runner, tiny_folder, model_cache, tmp_path):
    """The tiny model written as one original-layout .safetensors file loads through the engine's own path."""
    from diffusers import StableDiffusionPipeline
    from ldm_checkpoint import save_ldm_checkpoint

    checkpoint = tmp_path / "tiny-single.safetensors"
    save_ldm_checkpoint(StableDiffusionPipeline.from_pretrained(tiny_folder, local_files_only=True), checkpoint)
    file_runner = Runner(
        cache_dir=model_cache, default_model=str(checkpoint), single_file_config=str(tiny_folder), machine=CPU_MACHINE
    )
    from_file = file_runner.generate(Request(prompt="single", seed=9, steps=2, guidance=0.0, **SMALL))
    from_preset = runner.generate(Request(prompt="single", seed=9, **SMALL))
    assert from_file.model == "tiny-single"
    assert pixels(from_file.images[0]) == pixels(from_preset.images[0])


def test_weights_in_the_hugging_face_cache_are_reused_offline(runner, tiny_folder, model_cache, tmp_path, monkeypatch):
    """A hub id whose snapshot is already in the standard cache loads from it, with no download."""
    import shutil

    from huggingface_hub import constants

    snapshot = tmp_path / "hub" / "models--someone--tiny-sd" / "snapshots" / "0123abcd"
    shutil.copytree(tiny_folder, snapshot)
    (tmp_path / "hub" / "models--someone--tiny-sd" / "refs").mkdir()
    (tmp_path / "hub" / "models--someone--tiny-sd" / "refs" / "main").write_text("0123abcd")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    events = []
    hub_runner = Runner(cache_dir=model_cache, default_model="someone/tiny-sd", machine=CPU_MACHINE)
    from_cache = hub_runner.generate(
        Request(prompt="cached", seed=6, steps=2, guidance=0.0, **SMALL), emit=events.append
    )
    assert not [e for e in events if e["kind"] == "download"]
    assert from_cache.model == "someone/tiny-sd"
    assert pixels(from_cache.images[0]) == pixels(runner.generate(Request(prompt="cached", seed=6, **SMALL)).images[0])


def test_bf16_autocast_on_cpus_with_bf16_units_is_reproducible(model_cache, runner):
    from dreamtray.engine.server.hardware import Machine

    amx = Runner(cache_dir=model_cache, default_model="tiny", machine=Machine(cpu_cores=2, ram_gb=24, cpu_bf16=True))
    first = amx.generate(Request(prompt="bf16", seed=3, **SMALL))
    again = amx.generate(Request(prompt="bf16", seed=3, **SMALL))
    assert amx.loaded.plan.autocast == "bfloat16"
    assert amx.loaded.pipe.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert pixels(first.images[0]) == pixels(again.images[0])
    fp32 = runner.generate(Request(prompt="bf16", seed=3, **SMALL))
    assert pixels(first.images[0]) != pixels(fp32.images[0]), "autocast really ran in bf16"
