"""A Stable Diffusion text-to-image pipeline on OpenVINO and numpy alone, for models in optimum-intel's export
layout: what `quality = fast` runs in the torch-free worker (torchfree.py).

Step for step what diffusers' StableDiffusionPipeline does with the export's modules on the torch-hosted fast path
(fast.py): the CLIP tokenizer (read without transformers where it can be), the text encoder, noise from
torch's CPU generator reproduced in numpy (torch_randn.py), the Euler samplers in numpy (ov_scheduler.py),
classifier-free guidance, and the export's VAE decoder. The same seed gives the same pixels as that path within
a few levels (see docs/fast-path.md), and exactly the same pixels from one run to the next.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from dreamtray.engine.server import ov_scheduler
from dreamtray.engine.server.openvino_runtime import compile_in_turn, read_export  # it keeps telemetry out
from dreamtray.engine.server.taesd import preview_png
from dreamtray.engine.server.torch_randn import TorchGenerator

PIPELINES = ("StableDiffusionPipeline",)
"""The export's pipeline classes this file reproduces."""
OnStep = Callable[[int, np.ndarray], bool]


class ClipTokenizer:
    """The model's CLIP tokenizer: its `tokenizer.json` read by the `tokenizers` package alone where there is one
    (transformers' import costs some 2 s of CPU at every worker start), else transformers' CLIPTokenizer (a folder
    with vocab.json and merges.txt only). Either way the ids are transformers' own (tests/test_torchfree.py)."""

    def __init__(self, folder: Path):
        config_file = folder / "tokenizer_config.json"
        config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.is_file() else {}
        self.window = int(config.get("model_max_length", 77))
        self.fast = self.padded = self.slow = None
        if (folder / "tokenizer.json").is_file():
            from tokenizers import Tokenizer

            self.fast = Tokenizer.from_file(str(folder / "tokenizer.json"))
            self.fast.no_truncation()
            self.fast.no_padding()
            pad = config.get("pad_token", "<|endoftext|>")
            pad = pad.get("content", "") if isinstance(pad, dict) else pad
            self.padded = Tokenizer.from_str(self.fast.to_str())
            self.padded.enable_truncation(self.window)
            self.padded.enable_padding(length=self.window, pad_id=self.fast.token_to_id(pad), pad_token=pad)
        else:
            from transformers import CLIPTokenizer

            self.slow = CLIPTokenizer.from_pretrained(folder)
            self.window = self.slow.model_max_length

    def length(self, text: str) -> int:
        """How many tokens `text` takes, its start and end tokens included."""
        if self.fast is not None:
            return len(self.fast.encode(text).ids)
        return len(self.slow(text, truncation=False).input_ids)

    def ids(self, text: str) -> np.ndarray:
        """The ids the text encoder takes: (1, window), cut to the window and padded, as diffusers asks for them."""
        if self.padded is not None:
            return np.asarray([self.padded.encode(text).ids], dtype=np.int64)
        encoded = self.slow(text, padding="max_length", max_length=self.window, truncation=True, return_tensors="np")
        return encoded.input_ids.astype(np.int64)


def _config(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "config.json").read_text(encoding="utf-8"))


class OvPipeline:
    """An export's modules, tokenizer and scheduler configuration; compiled programs go under `compiled_root`."""

    def __init__(self, folder: Path, compiled_root: Path, decoder: Path | None = None):
        """`decoder`: a folder whose `vae_decoder/` is a TAESD decoder in the same layout (a preset's ready-made
        one), drawing the images in place of the export's own VAE decoder (as fast.py's torch-hosted path does)."""
        self.folder = folder
        index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
        self.pipeline = index.get("_class_name", "")
        scheduler = json.loads((folder / "scheduler" / "scheduler_config.json").read_text(encoding="utf-8"))
        self.scheduler_class = scheduler.pop("_class_name", "")
        self.scheduler_config = {k: v for k, v in scheduler.items() if not k.startswith("_")}
        self.unet_config = _config(folder / "unet")
        own = folder / "vae_decoder" / "config.json"
        vae = _config(own.parent) if own.is_file() else {}
        self.vae_scale_factor = 2 ** (len(vae.get("block_out_channels", [0] * 4)) - 1)
        self.tokenizer = ClipTokenizer(folder / "tokenizer")
        self.unet, self.text_encoder, self.decoder, self.decode_scale = read_export(folder, compiled_root, decoder)

    def unsupported(self) -> str | None:
        """Why this export's model cannot run here (in words), or None when it can."""
        if self.pipeline not in PIPELINES:
            return f"its pipeline {self.pipeline or '(none named)'} has no torch-free version"
        if any(self.unet_config.get(key) for key in ("time_cond_proj_dim", "addition_embed_type", "class_embed_type")):
            return "its UNet takes extra conditioning"
        return None

    @property
    def native_size(self) -> int:
        return int(self.unet_config.get("sample_size", 64)) * self.vae_scale_factor

    def fits_window(self, text: str) -> bool:
        """Whether `text` is within the text encoder's window (a longer one is chunked on torch)."""
        return self.tokenizer.length(text) <= self.tokenizer.window

    def encode(self, prompt: str, negative: str, guidance: bool) -> np.ndarray:
        """The text embeddings the UNet takes: the negative's first when `guidance` (classifier-free) is on."""
        texts = [negative, prompt] if guidance else [prompt]
        return np.concatenate([self.text_encoder.run(self.tokenizer.ids(text))[0] for text in texts]).astype(np.float32)

    def guides(self, guidance: float) -> bool:
        return guidance > 1.0 and self.unet_config.get("time_cond_proj_dim") is None

    def compile_for(self, batch: int, width: int, height: int, window: int, hidden: int) -> None:
        """Compile (or read from the compiled cache) every module for one request's shapes."""
        channels = int(self.unet_config.get("in_channels", 4))
        latent = (channels, height // self.vae_scale_factor, width // self.vae_scale_factor)
        work = [
            (self.text_encoder, [(1, window)]),
            (self.unet, [(batch, *latent), (1,), (batch, window, hidden)]),
            (self.decoder, [(1, *latent)]),
        ]
        compile_in_turn(work)

    def denoise(
        self,
        embeddings: np.ndarray,
        seed: int,
        width: int,
        height: int,
        steps: int,
        guidance: float,
        scheduler: tuple[str, dict[str, Any]],
        on_step: OnStep,
    ) -> np.ndarray:
        """The final latents of one image; `on_step(step, latents)` after each step: true ends the image there, as
        far as it got (it may also raise, to stop and discard)."""
        sampler = ov_scheduler.EulerSampler(*scheduler, steps)
        generator = TorchGenerator(seed)
        channels = int(self.unet_config.get("in_channels", 4))
        shape = (1, channels, height // self.vae_scale_factor, width // self.vae_scale_factor)
        latents = generator.randn(shape) * sampler.init_noise_sigma
        guided = embeddings.shape[0] == 2
        for step, timestep in enumerate(sampler.timesteps):
            model_input = np.concatenate([latents, latents]) if guided else latents
            model_input = sampler.scale_model_input(model_input)
            (noise,) = self.unet.run(model_input, np.asarray(timestep, np.float32), embeddings)[:1]
            if guided:
                unconditional, text = noise[:1], noise[1:]
                noise = unconditional + np.float32(guidance) * (text - unconditional)
            latents = sampler.step(noise, latents, generator)
            if on_step(step + 1, latents):
                break
        return latents

    def decode(self, latents: np.ndarray) -> np.ndarray:
        """Pixels (height, width, 3) in uint8, as diffusers' image processor makes them from the VAE's output."""
        (image, *_) = self.decoder.run(latents.astype(np.float32) * np.float32(self.decode_scale))
        image = np.clip(image.astype(np.float32), -1, 1)
        image = np.clip(image * np.float32(0.5) + np.float32(0.5), 0, 1)
        return (image[0].transpose(1, 2, 0) * np.float32(255)).round().astype(np.uint8)

    def preview(self, latents: np.ndarray) -> str:
        """The image of `latents`, scaled down to the preview's side, as base64 PNG (a preview event's `png`)."""
        from PIL import Image

        return preview_png(Image.fromarray(self.decode(latents)))
