"""The fast path on the tiny model, for real: TAESD previews and decoding, the quality setting, the decision rows."""

from __future__ import annotations

import base64
import io
from dataclasses import replace

import pytest
from fixtures_engine import CPU_MACHINE, pixels
from PIL import Image

from dreamtray.engine.presets import PRESETS
from dreamtray.engine.server.hardware import Gpu, Machine, decide
from dreamtray.engine.server.runner import Runner
from dreamtray.engine.settings import Overrides
from dreamtray.request import Request

SMALL = {"width": 64, "height": 64}


def previews(events: list[dict]) -> list[Image.Image]:
    return [Image.open(io.BytesIO(base64.b64decode(e["png"]))) for e in events if e["kind"] == "preview"]


def test_previews_arrive_during_the_job_and_leave_the_image_as_it_was(runner):
    events: list[dict] = []
    with_previews = runner.generate(Request(prompt="a fox", seed=4, steps=3, preview_every=1, **SMALL), events.append)
    plain = runner.generate(Request(prompt="a fox", seed=4, steps=3, **SMALL))
    kinds = [e["kind"] for e in events]
    assert kinds.count("preview") == 3, "every step, the last one too: the full VAE draws the final image"
    assert kinds.index("preview") < kinds.index("step", kinds.index("preview")), "the first preview comes mid-job"
    assert [e["step"] for e in events if e["kind"] == "preview"] == [1, 2, 3]
    assert all(image.size == (64, 64) and image.mode == "RGB" for image in previews(events))
    assert pixels(with_previews.images[0]) == pixels(plain.images[0])


def test_previews_every_n_steps(runner):
    events: list[dict] = []
    runner.generate(Request(prompt="a fox", seed=4, steps=4, preview_every=2, **SMALL), events.append)
    assert [e["step"] for e in events if e["kind"] == "preview"] == [2, 4]


def test_fast_decodes_with_taesd_as_diffusers_documents_it(runner, tiny_folder, model_cache):
    """quality fast on torch equals a plain diffusers pipeline whose VAE was swapped for the same AutoencoderTiny."""
    import torch
    from diffusers import AutoencoderTiny, StableDiffusionPipeline

    from dreamtray.engine.server.taesd import ensure_tiny_taesd_folder

    request = Request(prompt="a lighthouse", seed=9, steps=2, quality="fast", **SMALL)
    events: list[dict] = []
    fast = runner.generate(request, events.append)
    assert fast.request.quality == "fast" and not fast.warnings
    assert not [e for e in events if e["kind"] == "preview"], "the last step's preview would be the image itself"

    pipe = StableDiffusionPipeline.from_pretrained(tiny_folder, local_files_only=True)
    pipe.vae = AutoencoderTiny.from_pretrained(ensure_tiny_taesd_folder(model_cache), local_files_only=True)
    pipe.scheduler = runner.loaded.default_scheduler
    pipe.set_progress_bar_config(disable=True)
    direct = pipe(
        "a lighthouse",
        num_inference_steps=2,
        guidance_scale=0.0,
        width=64,
        height=64,
        generator=torch.Generator("cpu").manual_seed(9),
    ).images[0]
    assert pixels(fast.images[0]) == direct.convert("RGB").tobytes()
    balanced = runner.generate(request.model_copy(update={"quality": "balanced"}))
    assert pixels(balanced.images[0]) != pixels(fast.images[0])


def test_best_is_the_full_precision_reference_on_a_cpu_with_bf16_units(model_cache, runner):
    amx = Runner(cache_dir=model_cache, default_model="tiny", machine=Machine(cpu_cores=2, ram_gb=24, cpu_bf16=True))
    request = Request(prompt="bf16", seed=3, **SMALL)
    balanced = amx.generate(request)
    best = amx.generate(request.model_copy(update={"quality": "best"}))
    reference = runner.generate(request.model_copy(update={"quality": "best"}))
    assert balanced.request.quality == "balanced" and best.request.quality == "best"
    assert pixels(best.images[0]) == pixels(amx.generate(request.model_copy(update={"quality": "best"})).images[0])
    # The same fp32 arithmetic as a CPU without bf16 units, up to the rounding of channels-last convolutions
    # (the last bit of a pixel, here and there); bf16 autocast changes much more.
    assert differing(best, reference) < 0.001 * 64 * 64 * 3
    assert differing(balanced, reference) > 0.1 * 64 * 64 * 3


def differing(one, other) -> int:
    return sum(a != b for a, b in zip(pixels(one.images[0]), pixels(other.images[0]), strict=True))


def test_without_a_taesd_decoder_fast_decodes_with_the_vae_and_says_so(runner, tiny_folder, tmp_path, monkeypatch):
    """A local model whose family's TAESD is not in the cache, offline: a warning, never an error."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    folder = Runner(cache_dir=runner.cache_dir, default_model=str(tiny_folder), machine=CPU_MACHINE)
    events: list[dict] = []
    result = folder.generate(
        Request(prompt="x", seed=1, steps=2, quality="fast", preview_every=1, **SMALL), events.append
    )
    reference = folder.generate(Request(prompt="x", seed=1, steps=2, preview_every=1, **SMALL), events.append)
    (warning,) = result.warnings
    assert warning.startswith("Decoded with the full VAE: the TAESD decoder is not available.")
    assert "madebyollin/taesd" in warning
    assert not reference.warnings, "no previews is no reason to warn about the image"
    assert [e["message"] for e in events if e["kind"] == "warning"][-1].startswith("No previews:")
    assert not previews(events)
    assert pixels(result.images[0]) == pixels(reference.images[0])


def test_a_taesd_decoder_already_in_the_hugging_face_cache_is_used_offline(
    model_cache, tiny_folder, tmp_path, monkeypatch
):
    """A model that is no preset finds its family's TAESD where another program put it, with no download."""
    import shutil

    from huggingface_hub import constants

    from dreamtray.engine.server.taesd import ensure_tiny_taesd_folder

    repo = tmp_path / "hub" / "models--madebyollin--taesd"
    shutil.copytree(ensure_tiny_taesd_folder(model_cache), repo / "snapshots" / "0123abcd")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    folder = Runner(cache_dir=model_cache, default_model=str(tiny_folder), machine=CPU_MACHINE)
    events: list[dict] = []
    result = folder.generate(
        Request(prompt="x", seed=1, steps=2, quality="fast", preview_every=1, **SMALL), events.append
    )
    assert not result.warnings and len(previews(events)) == 1
    assert not [e for e in events if e["kind"] == "download"]


@pytest.mark.parametrize(("quality", "steps"), [("balanced", [1, 2]), ("fast", [1])])
def test_previews_stream_through_the_service(engine, quality, steps):
    """Every step sends a preview, but the last one where the TAESD decoder draws the image itself (fast)."""
    job = engine.submit(Request(prompt="a fox", seed=2, steps=2, preview_every=1, quality=quality, **SMALL))
    events = list(job.events())
    result = job.result()
    assert [e["step"] for e in events if e["kind"] == "preview"] == steps
    assert all(image.size == (64, 64) for image in previews(events))
    assert result.request.preview_every == 1 and result.images


# ---------------------------------------------------------------------------------------------- decision rows

SD = PRESETS["sd-turbo"]
OPENVINO_CPU = Machine(cpu_cores=2, ram_gb=24, cpu_bf16=True, openvino=True)


def test_openvino_runs_quality_fast_on_a_cpu_where_it_is_installed():
    plan = decide(OPENVINO_CPU, SD)
    assert plan.runtime == "openvino" and plan.quality == "fast", "fast is the default there"
    assert any("OpenVINO" in reason for reason in plan.reasons)
    assert any(reason.startswith("quality fast by default") for reason in plan.reasons)
    assert decide(OPENVINO_CPU, SD, Overrides(quality="balanced")).quality == "balanced"
    assert decide(Machine(cpu_cores=2, ram_gb=24), SD).quality == "balanced", "no OpenVINO: balanced"


def test_a_preset_with_a_ready_made_openvino_model_runs_fast_there_on_a_small_machine():
    plan = decide(Machine(cpu_cores=2, ram_gb=8, openvino=True), SD)
    assert plan.runtime == "openvino" and plan.quality == "fast"
    assert any(f"ready-made from {SD.fast_files.repo}" in reason for reason in plan.reasons)


@pytest.mark.parametrize(
    "machine, preset, why",
    [
        (Machine(cpu_cores=2, ram_gb=24), SD, None),
        (Machine(cpu_cores=2, ram_gb=8, openvino=True), replace(SD, fast_files=None), "needs about 9 GB"),
        (Machine(cpu_cores=8, ram_gb=64, openvino=True), PRESETS["sdxl-turbo"], "does not convert"),
        (Machine(gpus=(Gpu("RTX 4090", 24, 23, True),), ram_gb=64, openvino=True), SD, None),
    ],
)
def test_torch_runs_quality_fast_elsewhere(machine, preset, why):
    plan = decide(machine, preset)
    assert plan.runtime == "torch"
    if why:
        assert any(why in reason for reason in plan.reasons)


def test_the_config_picks_runtime_and_default_quality():
    plan = decide(OPENVINO_CPU, SD, Overrides(runtime="torch", quality="fast"))
    assert (plan.runtime, plan.quality) == ("torch", "fast")
    assert any("quality fast by default" in reason for reason in plan.reasons)


def test_a_step_down_after_running_out_of_memory_leaves_openvino():
    gpu = Machine(gpus=(Gpu("small", 6, 5, True),), ram_gb=32, openvino=True)
    lower = decide(gpu, SD).stepped_down().stepped_down().stepped_down()
    assert lower.device == "cpu" and lower.runtime == "torch"


def test_the_negative_prompt_is_encoded_once_and_the_pixels_stay_those_of_diffusers(runner, tiny_folder):
    import torch
    from diffusers import StableDiffusionPipeline

    request = Request(prompt="a harbour", negative_prompt="blurry", seed=8, steps=2, guidance=3.0, **SMALL)
    runner.generate(request)
    calls: list[int] = []
    hook = runner.loaded.pipe.text_encoder.register_forward_hook(lambda *_: calls.append(1))
    try:
        cached = runner.generate(request.model_copy(update={"prompt": "a harbour at night"}))
    finally:
        hook.remove()
    assert len(calls) == 1, "only the prompt was encoded; the negative came from the cache"

    pipe = StableDiffusionPipeline.from_pretrained(tiny_folder, local_files_only=True)
    pipe.scheduler = runner.loaded.default_scheduler
    pipe.set_progress_bar_config(disable=True)
    direct = pipe(
        "a harbour at night",
        negative_prompt="blurry",
        num_inference_steps=2,
        guidance_scale=3.0,
        width=64,
        height=64,
        generator=torch.Generator("cpu").manual_seed(8),
    ).images[0]
    assert pixels(cached.images[0]) == direct.convert("RGB").tobytes()


def test_openvino_takes_only_unets_it_converts_faithfully(runner):
    from dreamtray.engine.server.fast import openvino_can_run
    from dreamtray.engine.server.tiny import build_tiny_pipeline

    assert openvino_can_run(runner.ensure_loaded(None).pipe)
    distilled = build_tiny_pipeline()
    distilled.unet.register_to_config(time_cond_proj_dim=32)  # an LCM-distilled UNet takes a guidance embedding
    assert not openvino_can_run(distilled)


def test_a_model_with_a_tiny_vae_of_its_own_runs_fast_and_from_an_init_image(model_cache, tiny_folder, tmp_path):
    """SDXS's layout (an AutoencoderTiny as its `vae`) as a user's own folder: fast on OpenVINO, drawn by its own
    TAESD (no other fetched, offline), and an init image on torch (diffusers' from_pipe leaves such a VAE out unless
    it is handed on)."""
    from openvino_export import with_tiny_vae

    from dreamtray.engine.server.taesd import ensure_tiny_taesd_folder

    folder = with_tiny_vae(tiny_folder, ensure_tiny_taesd_folder(model_cache), tmp_path / "sdxs-layout")
    runner = Runner(cache_dir=tmp_path / "cache", default_model=str(folder), machine=OPENVINO_CPU)
    fast = runner.generate(Request(prompt="a fox", seed=1, steps=2, quality="fast", **SMALL))
    assert runner.loaded.extras["openvino"] is not None and not fast.warnings, "its own TAESD: nothing fetched"
    assert runner.loaded.extras["tiny"].taesd is runner.loaded.pipe.vae
    again = runner.generate(
        Request(prompt="a fox", seed=2, steps=2, quality="balanced", init_image=fast.images[0], strength=0.5, **SMALL)
    )
    assert Image.open(io.BytesIO(again.images[0])).size == (64, 64)
    assert type(runner.loaded.img2img.vae).__name__ == "AutoencoderTiny"
