"""Image-to-image on the fast path: the fast pipeline's OpenVINO UNet and text encoder, TAESD's encoder on OpenVINO.

An init image (a refine, the `init-image` method of a same-subject series) is encoded by TAESD's encoder
(AutoencoderTiny has one beside the decoder the fast path already draws with), converted to OpenVINO once per
model like the decoder; the pipeline's VAE is a stand-in that only encodes, so no torch weights of the model are
needed and a light pipeline (fast.py) serves the request as it is. TAESD's latents are already scaled as the UNet
sees them, so the stand-in's scaling factor is 1. The pixels differ from torch's image-to-image (another encoder,
bf16 on this CPU), as `fast` images do; each seed gives the same pixels every time.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from dreamtray.engine.server.openvino_backend import Converted, StandIn, TaesdHalf, ensure_converted

ENCODER_FOLDER = "tiny_encoder"
"""The converted TAESD encoder's cache entry, beside the decoder's `tiny_decoder`."""


class TaesdEncoderVae(StandIn):
    """The VAE of an image-to-image pipeline on the fast path: `encode` runs TAESD's encoder on OpenVINO; the
    configuration is the model's VAE's (the image processor's scale) with a scaling factor of 1."""

    def __init__(self, vae_config: Any, encoder: Converted):
        from diffusers.configuration_utils import FrozenDict

        super().__init__(FrozenDict({**vae_config, "scaling_factor": 1.0}), encoder)

    def enable_tiling(self) -> None:
        """TAESD encodes any size whole, in a fraction of the VAE's memory: no tiles."""

    def disable_tiling(self) -> None:
        """Nothing to undo (`enable_tiling`)."""

    def encode(self, image: torch.Tensor, return_dict: bool = True):
        from diffusers.models.autoencoders.autoencoder_tiny import AutoencoderTinyOutput

        (latents,) = self.converted(image.float())
        return AutoencoderTinyOutput(latents=latents) if return_dict else (latents,)


def pipeline(extras: dict[str, Any], fast, taesd, root: Path, label: str, emit: Callable[[dict], None]):
    """The image-to-image pipeline over `fast` (the text-to-image pipeline on OpenVINO), sharing its modules; its
    TAESD encoder converted (or read from the cache under `root`) on first need and kept in `extras`."""
    from diffusers import AutoPipelineForImage2Image

    if extras.get("taesd_encoder") is None:
        pixels = torch.rand(1, 3, 512, 512, generator=torch.Generator().manual_seed(0))
        example = (pixels * 2 - 1,)  # in [-1, 1], as the image processor gives them; each size compiles on use
        encoder = TaesdHalf(copy.deepcopy(taesd).float(), "encode").eval()  # the decoder's TAESD keeps its dtype
        label = f"TAESD encoder of {label}"
        extras["taesd_encoder"] = ensure_converted(root / ENCODER_FOLDER, encoder, example, label, emit)
    kept = extras.get("fast_img2img")
    if kept is None or kept[0] is not fast:  # made again when the fast pipeline was
        vae = TaesdEncoderVae(fast.vae.config, extras["taesd_encoder"])
        img2img = AutoPipelineForImage2Image.from_pipe(fast, vae=vae)
        img2img.set_progress_bar_config(disable=True)
        extras["fast_img2img"] = kept = (fast, img2img)
    img2img = kept[1]
    img2img.scheduler = fast.scheduler
    return img2img
