"""A model folder in optimum-intel's export layout (`optimum-cli export openvino`), built from the `tiny` model.

optimum-intel does not install next to this project's torch, so the layout is written here as it writes it:
model_index.json; unet/, text_encoder/, vae_decoder/ and vae_encoder/ each with openvino_model.xml and .bin
(inputs named as optimum-intel names them: sample, timestep, encoder_hidden_states; input_ids; latent_sample;
sample) and the module's config.json; tokenizer/ and scheduler/ as diffusers saves them. No torch weights.
"""

from __future__ import annotations  # noqa: I001 (the back end comes before openvino: it keeps telemetry out)

import shutil
import warnings
from pathlib import Path

# First: importing the back end keeps OpenVINO's telemetry out, as in the engine. Its UNet wrapper takes the inputs
# optimum-intel names (sample, timestep, encoder_hidden_states).
from dreamtray.engine.server.openvino_backend import _UNet

import openvino as ov  # noqa: E402
import torch  # noqa: E402


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
        return self.vae.encode(sample, return_dict=False)[0].sample()


def _save(module: torch.nn.Module, example: dict[str, torch.Tensor], folder: Path) -> None:
    folder.mkdir(parents=True)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = ov.convert_model(module.eval(), example_input=example)
    for port, name in zip(model.inputs, example):
        port.get_tensor().set_names({name})
    ov.save_model(model, folder / "openvino_model.xml")


def build_export(tiny_folder: Path, out: Path) -> Path:
    """The tiny model at `tiny_folder` (a diffusers folder) exported to `out` in optimum-intel's layout."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(tiny_folder, local_files_only=True)
    unet, vae, encoder = pipe.unet, pipe.vae, pipe.text_encoder
    size, hidden = unet.config.sample_size, encoder.config.hidden_size
    latent = torch.randn(1, unet.config.in_channels, size, size)
    _save(
        _UNet(unet),
        {
            "sample": latent,
            "timestep": torch.tensor([999], dtype=torch.int64),
            "encoder_hidden_states": torch.randn(1, 77, hidden),
        },
        out / "unet",
    )
    _save(_TextEncoder(encoder), {"input_ids": torch.zeros(1, 77, dtype=torch.int64)}, out / "text_encoder")
    _save(_Decoder(vae), {"latent_sample": latent}, out / "vae_decoder")
    pixels = size * pipe.vae_scale_factor
    _save(_Encoder(vae), {"sample": torch.randn(1, 3, pixels, pixels)}, out / "vae_encoder")
    unet.save_config(out / "unet")
    encoder.config.save_pretrained(out / "text_encoder")
    for part in ("vae_decoder", "vae_encoder"):
        vae.save_config(out / part)
    for part in ("tokenizer", "scheduler"):
        shutil.copytree(tiny_folder / part, out / part)
    shutil.copy(tiny_folder / "model_index.json", out / "model_index.json")
    return out
