"""The TAESD decoder (TAESD, diffusers `AutoencoderTiny`): live previews, and the decoder of `quality = fast`.

TAESD reads the latents a pipeline's denoising loop holds (already scaled, as the UNet sees them) and draws an
image from them in a tenth of the full VAE's time, close to it but not the same pixels. Each model family has
its own: taesd (SD 1.x/2.x), taesdxl (SDXL), taef1 (FLUX). The `tiny` model gets a random-weight one built here
from a config, like its pipeline (tiny.py).
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

from dreamtray.atomic import staged_folder

TINY_TAESD_VERSION = 1
"""Bumped whenever the shapes below change, so a cached build is rebuilt."""
SEED = 20240612
PREVIEW_SIDE = 256
"""Previews are scaled down to this longest side: small enough to stream every step."""


def build_tiny_taesd():
    """An AutoencoderTiny with deterministic random weights, in the tiny model's latent shape (4 channels, 8x)."""
    import torch
    from diffusers import AutoencoderTiny

    torch.manual_seed(SEED)
    return AutoencoderTiny(
        encoder_block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        num_encoder_blocks=(1, 1, 1, 1),
        num_decoder_blocks=(1, 1, 1, 1),
        latent_channels=4,
    )


def ensure_tiny_taesd_folder(cache_dir: Path) -> Path:
    """The tiny TAESD saved as a diffusers folder under `cache_dir`, built once and then reused."""
    from filelock import FileLock

    folder = cache_dir / f"tiny-taesd-v{TINY_TAESD_VERSION}"
    if (folder / "config.json").exists():
        return folder
    cache_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(cache_dir / f"tiny-taesd-v{TINY_TAESD_VERSION}.lock")):
        if not (folder / "config.json").exists():
            with staged_folder(folder) as staging:
                build_tiny_taesd().save_pretrained(staging, safe_serialization=True)
    return folder


class TaesdDecoder:
    """Turns a pipeline's latents into images with TAESD (torch, or a compiled OpenVINO decoder in its place)."""

    def __init__(self, taesd, pipe, decode=None):
        self.taesd, self.pipe = taesd, pipe
        self._decode = decode or self._torch_decode

    def _torch_decode(self, latents):
        import torch

        with torch.no_grad():
            return self.taesd.decode(latents.to(self.taesd.dtype), return_dict=False)[0]

    def to_images(self, latents, width: int, height: int) -> list:
        """PIL images from latents as the denoising loop holds them (FLUX's come packed)."""
        import torch

        if latents.ndim == 3:  # FLUX packs 2x2 patches into tokens: unpack, then undo its scale and shift
            latents = self.pipe._unpack_latents(latents, height, width, self.pipe.vae_scale_factor)
            config = self.taesd.config
            latents = latents / config.scaling_factor + getattr(config, "shift_factor", 0.0)
        image = self._decode(latents).float().clamp(-1, 1)
        return self.pipe.image_processor.postprocess(image.to(torch.float32), output_type="pil")

    def preview(self, latents, width: int, height: int) -> str:
        """The first image of `latents`, scaled down, as base64 PNG: the `png` of a preview event."""
        return preview_png(self.to_images(latents[:1], width, height)[0])


def png_bytes(image) -> bytes:
    """A PIL image as lossless PNG; level 1 is 2-6x faster to write than the default 6, for some 17% more bytes."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def preview_png(image) -> str:
    """A PIL image scaled down to the preview's side, as base64 PNG (a preview event's `png`)."""
    image.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))
    return base64.b64encode(png_bytes(image)).decode("ascii")


def preview_event(decoder: TaesdDecoder, latents: Any, step: int, width: int, height: int) -> dict[str, Any]:
    return {"kind": "preview", "step": step, "png": decoder.preview(latents, width, height)}
