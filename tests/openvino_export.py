"""A model folder in optimum-intel's export layout (`optimum-cli export openvino`), built from a diffusers folder.

optimum-intel does not install next to this project's torch, so the layout is written here as it writes it:
model_index.json; unet/, text_encoder/, vae_decoder/ and (unless left out) vae_encoder/ each with
openvino_model.xml and .bin (inputs named as optimum-intel names them: sample, timestep, encoder_hidden_states;
input_ids; latent_sample; sample) and the module's config.json; tokenizer/ and scheduler/ as diffusers saves them.
No torch weights.

The tests build it from the `tiny` model; the benches (bench/first_run.py) from the random-weight folders of
bench/architectures.py, in SD-Turbo's and SDXS's exact shapes. The VAE may be the full one (AutoencoderKL) or a
tiny one (AutoencoderTiny, as SDXS ships its own): optimum-intel exports whichever the pipeline holds.

Weights: `fp16` (OpenVINO's default when saving: fp16 constants, computed in the CPU's own precision) or `int8`
(then also weight-only int8 of every module: asymmetric, per channel, no calibration, which is what
`optimum-cli export openvino --weight-format int8` writes). Modules are converted one at a time, each freed before
the next, so the peak is the UNet's conversion (about 3.5x its fp32 size), not the whole model.
"""

from __future__ import annotations  # noqa: I001 (the back end comes before openvino: it keeps telemetry out)

import gc
import json
import shutil
import warnings
from pathlib import Path

# First: importing the back end keeps OpenVINO's telemetry out, as in the engine. Its UNet wrapper takes the inputs
# optimum-intel names (sample, timestep, encoder_hidden_states).
from dreamtray.engine.server.openvino_backend import _UNet

import openvino as ov  # noqa: E402
import torch  # noqa: E402

WEIGHTS = ("fp16", "int8")
TEXT_WINDOW = 77


class _TextEncoder(torch.nn.Module):
    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids):
        output = self.encoder(input_ids)
        return output[0], output[1]


class _Decoder(torch.nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, latent_sample):
        return self.vae.decode(latent_sample, return_dict=False)[0]


class _Encoder(torch.nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, sample):
        encoded = self.vae.encode(sample, return_dict=False)[0]
        return encoded.sample() if hasattr(encoded, "sample") else encoded  # AutoencoderTiny gives latents


def _save(module: torch.nn.Module, example: dict[str, torch.Tensor], folder: Path, weights: str) -> None:
    folder.mkdir(parents=True)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = ov.convert_model(module.eval(), example_input=example)
    for port, name in zip(model.inputs, example):
        port.get_tensor().set_names({name})
    if weights == "int8":
        import nncf

        model = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM)
    ov.save_model(model, folder / "openvino_model.xml")  # fp16 constants (compress_to_fp16, the default)
    del model
    gc.collect()


def _component(folder: Path, index: dict, name: str):
    """The pipeline's component `name`, loaded alone in fp32 (its class as model_index.json names it)."""
    import importlib

    library, class_name = index[name]
    cls = getattr(importlib.import_module(library), class_name)
    return cls.from_pretrained(folder / name, dtype=torch.float32)


def build_export(model_folder: Path, out: Path, weights: str = "fp16", vae_encoder: bool = True) -> Path:
    """The diffusers folder `model_folder` exported to `out` in optimum-intel's layout (see the module docstring);
    written under a staging name and renamed when whole, so a half-built export is never taken for one."""
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {WEIGHTS}, not {weights!r}")
    index = json.loads((model_folder / "model_index.json").read_text(encoding="utf-8"))
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)

    unet = _component(model_folder, index, "unet")
    latent = torch.randn(1, unet.config.in_channels, unet.config.sample_size, unet.config.sample_size)
    hidden = unet.config.cross_attention_dim
    _save(
        _UNet(unet),
        {
            "sample": latent,
            "timestep": torch.tensor([999], dtype=torch.int64),
            "encoder_hidden_states": torch.randn(1, TEXT_WINDOW, hidden),
        },
        staging / "unet",
        weights,
    )
    unet.save_config(staging / "unet")
    del unet
    gc.collect()

    encoder = _component(model_folder, index, "text_encoder")
    ids = {"input_ids": torch.zeros(1, TEXT_WINDOW, dtype=torch.int64)}
    _save(_TextEncoder(encoder), ids, staging / "text_encoder", weights)
    encoder.config.save_pretrained(staging / "text_encoder")
    del encoder
    gc.collect()

    vae = _component(model_folder, index, "vae")
    _save(_Decoder(vae), {"latent_sample": latent}, staging / "vae_decoder", weights)
    parts = ["vae_decoder"]
    if vae_encoder:
        pixels = latent.shape[-1] * 2 ** (len(vae.config.block_out_channels) - 1)
        _save(_Encoder(vae), {"sample": torch.randn(1, 3, pixels, pixels)}, staging / "vae_encoder", weights)
        parts.append("vae_encoder")
    for part in parts:
        vae.save_config(staging / part)
    del vae

    for part in ("tokenizer", "scheduler"):
        shutil.copytree(model_folder / part, staging / part)
    shutil.copy(model_folder / "model_index.json", staging / "model_index.json")
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    return out


def build_decoder_export(taesd_folder: Path, out: Path) -> Path:
    """A TAESD decoder (an AutoencoderTiny folder) in the layout of a ready-made decoder repo such as FastSD CPU's
    rupeshs/taesd-ov: `vae_decoder/openvino_model.xml|.bin` and its config.json."""
    from diffusers import AutoencoderTiny

    taesd = AutoencoderTiny.from_pretrained(taesd_folder, dtype=torch.float32)
    channels = taesd.config.latent_channels
    _save(_Decoder(taesd), {"latent_sample": torch.randn(1, channels, 64, 64)}, out / "vae_decoder", "fp16")
    taesd.save_config(out / "vae_decoder")
    return out


def with_tiny_vae(model_folder: Path, taesd_folder: Path, out: Path) -> Path:
    """A copy of the diffusers folder `model_folder` whose VAE is the AutoencoderTiny at `taesd_folder`, as SDXS
    ships its own tiny VAE as `vae`."""
    shutil.copytree(model_folder, out, ignore=shutil.ignore_patterns("vae"))
    shutil.copytree(taesd_folder, out / "vae")
    index = json.loads((out / "model_index.json").read_text(encoding="utf-8"))
    index["vae"] = ["diffusers", "AutoencoderTiny"]
    (out / "model_index.json").write_text(json.dumps(index, indent=2), encoding="utf-8")
    return out
