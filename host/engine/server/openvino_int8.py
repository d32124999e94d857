"""A hybrid int8 UNet for the OpenVINO back end, calibrated on the UNet's own inputs.

The recipe is optimum-intel's hybrid quantization of diffusion models (`_get_hybrid_mixed_quantization_config`):
1. weight-only int8 (asymmetric, per channel) for every weighted layer but the convolutions: the linear layers
   (MatMul with a constant weight) and embeddings (Gather of a float table);
2. then full int8 (weights and activations, statistics from calibration samples) for everything else that NNCF
   quantizes in a transformer: the convolutions, attention's inputs and the like; the layers of step 1 are
   ignored by name. Preset "mixed", fast bias correction, smooth quant off (alpha -1), no overflow fix.
Where this differs from optimum-intel: the samples come from the pipeline as the engine runs it (its steps,
guidance and size) rather than 50 steps at 512 px, and there are fewer of them (one per prompt and step of the
built-in prompts, not 200), so that the one-off cost stays in minutes on a small CPU.

Importing this module imports the back end first, which keeps OpenVINO's telemetry package from loading; NNCF
then falls back to its own no-op telemetry, so nothing leaves the machine.
"""

from __future__ import annotations  # noqa: I001 (the back end's import comes before NNCF's and OpenVINO's)

import contextlib
import io
import json
import logging
import time
from collections.abc import Callable, Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

from dreamtray.engine.server.openvino_backend import (  # first: it keeps telemetry out
    Emit,
    folder_size,
    lock_file,
    real_folder,
    remove_or_raise,
)

import numpy as np  # noqa: E402
import openvino as ov  # noqa: E402
import torch  # noqa: E402

FORMAT = 4
"""Bumped whenever the recipe below changes, so every cached int8 UNet is quantized again."""

Sample = list[np.ndarray]
"""One UNet call's inputs: sample (latents), timestep, encoder_hidden_states."""

CALIBRATION_PROMPTS = [
    "a red fox in the snow",
    "portrait of an old fisherman with a grey beard, dramatic lighting",
    "a bowl of ramen on a wooden table",
    "watercolor painting of a lighthouse at dusk",
    "a futuristic city skyline at night, neon lights, rain",
    "a cat",
    "an astronaut riding a horse on the moon",
    "oil painting of a field of sunflowers under a stormy sky",
    "a cozy living room with a fireplace and bookshelves",
    "pixel art of a castle on a hill",
    "close-up photo of a dew drop on a green leaf, macro",
    "a mountain lake surrounded by pine trees at sunrise",
    "pencil sketch of a woman reading a book",
    "a vintage red car parked on a cobblestone street",
    "an isometric illustration of a tiny island with a house",
    "a plate of sushi, studio photo",
    "abstract geometric shapes in blue and orange",
    "a dragon flying over a medieval village, fantasy art",
    "a child flying a kite on a beach",
    "black and white photo of a busy train station",
    "a robot gardener watering flowers",
    "low poly 3d render of a fox",
    "a steaming cup of coffee next to a laptop",
    "an owl",
]
"""Varied plain prompts: subjects, styles and lengths, one image each for calibration."""


def collect_unet_inputs(
    pipe, prompts: list[str], steps: int, guidance: float, width: int, height: int, seed: int
) -> list[Sample]:
    """The UNet's inputs at every step of `pipe` run on each prompt (seed, seed+1, ...), as numpy arrays."""
    return collect_calibration(pipe, prompts, steps, guidance, width, height, seed)[0]


def collect_calibration(
    pipe, prompts: list[str], steps: int, guidance: float, width: int, height: int, seed: int
) -> tuple[list[Sample], list[Sample]]:
    """Calibration samples from `pipe` run on each prompt (seed, seed+1, ...): the UNet's inputs at every step,
    and the final latents of each image (the tiny decoder's input), as numpy arrays.

    `pipe.unet` must be the OpenVINO back end's UNet stand-in: its compiled call is wrapped for the duration
    and restored afterwards, also when the pipeline raises.
    """
    unet = pipe.unet
    if not hasattr(unet, "converted"):
        raise TypeError(f"collect_unet_inputs needs the OpenVINO UNet stand-in, not {type(unet).__name__}")
    original = unet.converted
    samples: list[Sample] = []
    latents: list[Sample] = []

    def recording(*inputs: torch.Tensor) -> list[torch.Tensor]:
        samples.append([tensor.detach().numpy().copy() for tensor in inputs])
        return original(*inputs)

    unet.converted = recording
    try:
        for index, prompt in enumerate(prompts):
            output = pipe(
                prompt=prompt,
                num_inference_steps=steps,
                guidance_scale=guidance,
                width=width,
                height=height,
                generator=torch.Generator().manual_seed(seed + index),
                output_type="latent",  # the VAE is not needed for the UNet's inputs
            )
            latents.append([output.images.detach().float().numpy().copy()])
    finally:
        unet.converted = original
    return samples, latents


def int8_key(source_xml: Path) -> dict[str, Any]:
    """What a quantized UNet depends on: this recipe, NNCF's and OpenVINO's versions, the source IR's own key
    (less the stamp of the model's files, which the back end renews without converting again)."""
    return {
        "format": FORMAT,
        "nncf": version("nncf"),
        "openvino": ov.get_version(),
        "source": {name: value for name, value in (read_key(source_xml.parent) or {}).items() if name != "files"},
    }


def read_key(folder: Path) -> dict[str, Any] | None:
    """The key saved with the IR in `folder`; None when there is none (or it cannot be read)."""
    try:
        return json.loads((folder / "key.json").read_text())
    except (OSError, ValueError):
        return None


def is_current(folder: Path, source_xml: Path) -> bool:
    """Whether `folder` holds the int8 UNet of `source_xml` made by this recipe and these versions."""
    return not folder.is_symlink() and (folder / "model.xml").exists() and read_key(folder) == int8_key(source_xml)


def quantize_unet(
    source_xml: Path,
    samples: Sequence[Sample] | Callable[[], Sequence[Sample]],
    folder: Path,
    emit: Emit,
) -> Path:
    """The hybrid int8 UNet of the IR at `source_xml` in `folder`: the cached one when current, else made now.

    `samples` are calibration inputs (see `collect_unet_inputs`), or a function that collects them, called only
    when quantizing. The result is written to a staging folder and renamed into place, under a file lock.
    Returns `folder`.
    """
    return _quantize(source_xml, samples, folder, emit, "UNet", hybrid_quantize)


def compress_unet(source_xml: Path, folder: Path, emit: Emit) -> Path:
    """The UNet of the IR at `source_xml` with data-free int8 weights (`weights_only_quantize`) in `folder`,
    cached like `quantize_unet`."""
    return _quantize(source_xml, [[]], folder, emit, "UNet", weights_only_quantize)


def quantize_decoder(
    source_xml: Path,
    samples: Sequence[Sample] | Callable[[], Sequence[Sample]],
    folder: Path,
    emit: Emit,
) -> Path:
    """The int8 tiny decoder of the IR at `source_xml` in `folder` (convolutions only: weights and activations
    in int8), calibrated on final latents (see `collect_calibration`); cached like `quantize_unet`."""
    return _quantize(source_xml, samples, folder, emit, "tiny decoder", decoder_quantize)


def _quantize(
    source_xml: Path,
    samples: Sequence[Sample] | Callable[[], Sequence[Sample]],
    folder: Path,
    emit: Emit,
    label: str,
    recipe: Callable[[ov.Model, Sequence[Sample]], ov.Model],
) -> Path:
    from filelock import FileLock

    real_folder(folder.parent)
    with FileLock(lock_file(folder)):
        if is_current(folder, source_xml):
            return folder
        why = "its cache is out of date" if folder.exists() else "once for this model"
        emit({"kind": "loading", "message": f"Quantizing the {label} to int8 ({why})"})
        started = time.monotonic()
        data = list(samples() if callable(samples) else samples)
        if not data:
            raise ValueError("quantizing needs at least one calibration sample")
        from nncf.common.logging import nncf_logger  # NNCF is imported only to quantize: seconds, and much code

        level = nncf_logger.level
        nncf_logger.setLevel(logging.WARNING)  # not a line per layer it leaves alone
        try:
            quantized = _with_heartbeat(lambda: recipe(ov.Core().read_model(source_xml), data), label, emit)
        finally:
            nncf_logger.setLevel(level)
        staging = folder.with_name(folder.name + ".partial")
        remove_or_raise(staging)
        staging.mkdir()
        ov.save_model(quantized, staging / "model.xml")
        (staging / "key.json").write_text(json.dumps(int8_key(source_xml), indent=2))
        remove_or_raise(folder)
        staging.rename(folder)
        size = folder_size(folder) / 2**20
        seconds = time.monotonic() - started
        emit({"kind": "loading", "message": f"Quantized the {label} to int8: {size:.1f} MiB in {seconds:.0f} s"})
    return folder


HEARTBEAT_SECONDS = 15.0
"""While NNCF works (minutes, with no progress of its own), a message this often says it still does."""


def _with_heartbeat(work: Callable[[], ov.Model], label: str, emit: Emit) -> ov.Model:
    """`work()` on a thread of its own, with a progress message every HEARTBEAT_SECONDS: the engine's watchdog
    ends a job that says nothing for too long, and the user sees it is not stuck."""
    from concurrent.futures import ThreadPoolExecutor

    started = time.monotonic()
    # NNCF draws progress bars on the terminal; the engine's progress is the messages here, so they go nowhere.
    with (
        ThreadPoolExecutor(1, thread_name_prefix="dreamtray-quantize") as pool,
        contextlib.redirect_stdout(io.StringIO()),
        contextlib.redirect_stderr(io.StringIO()),
    ):
        running = pool.submit(work)
        while True:
            try:
                return running.result(timeout=HEARTBEAT_SECONDS)
            except TimeoutError:
                elapsed = time.monotonic() - started
                emit({"kind": "loading", "message": f"Quantizing the {label} to int8: {elapsed:.0f} s so far"})


def decoder_quantize(model: ov.Model, samples: Sequence[Sample]) -> ov.Model:
    """Full int8 of a convolutional decoder (TAESD has no attention and no linear layers)."""
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

    return nncf.quantize(
        model,
        nncf.Dataset(list(samples)),
        preset=nncf.QuantizationPreset.MIXED,
        subset_size=len(samples),
        fast_bias_correction=True,
        advanced_parameters=AdvancedQuantizationParameters(overflow_fix=OverflowFix.DISABLE),
    )


def hybrid_quantize(model: ov.Model, samples: Sequence[Sample], symmetric_weights: bool = True) -> ov.Model:
    """optimum-intel's hybrid recipe: int8 weights for linear layers and embeddings, full int8 for the rest.

    The linear layers' weights are symmetric int8 (optimum-intel's default is asymmetric): on SD-Turbo's shape
    a UNet call took 0.77 s against 0.80 s, with the same error against f32 (bench/int8_unet.py).
    """
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

    weighted = _ops_with_weights(model)
    mode = nncf.CompressWeightsMode.INT8_SYM if symmetric_weights else nncf.CompressWeightsMode.INT8_ASYM
    compressed = nncf.compress_weights(model, mode=mode, ignored_scope=nncf.IgnoredScope(types=["Convolution"]))
    advanced = AdvancedQuantizationParameters(overflow_fix=OverflowFix.DISABLE)
    advanced.smooth_quant_alphas.matmul = -1
    return nncf.quantize(
        compressed,
        nncf.Dataset(list(samples)),
        preset=nncf.QuantizationPreset.MIXED,
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=len(samples),
        fast_bias_correction=True,
        ignored_scope=nncf.IgnoredScope(names=weighted),
        advanced_parameters=advanced,
    )


def weights_only_quantize(model: ov.Model, samples: Sequence[Sample] = ()) -> ov.Model:
    """Data-free int8: the weights of every weighted layer (convolutions, linear layers) in symmetric int8 per
    channel, activations as they were. No calibration: the peak is about the model's size, not a calibration's
    (the plan when the hybrid recipe does not fit the memory: fast.py). `samples` are not used."""
    import nncf

    return nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_SYM)


def _ops_with_weights(model: ov.Model) -> list[str]:
    """Names of the MatMuls with a constant input and of the embedding lookups (as optimum-intel finds them)."""
    names = []
    for op in model.get_ops():
        kind = op.get_type_name()
        if kind == "MatMul" and (_constant_input(op, 0) or _constant_input(op, 1)):
            names.append(op.get_friendly_name())
        elif kind == "Gather" and op.input_value(0).get_element_type().is_real() and _constant_input(op, 0):
            names.append(op.get_friendly_name())
    return names


def _constant_input(op, port: int) -> bool:
    """Whether input `port` of `op` is a constant, seen through Convert, FakeQuantize and Reshape."""
    node = op.input_value(port).get_node()
    while node.get_type_name() in ("Convert", "FakeQuantize", "Reshape"):
        node = node.input_value(0).get_node()
    return node.get_type_name() == "Constant"
