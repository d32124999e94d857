"""Named model presets: where the weights come from and how each model likes to be run.

Pure data, no torch: the CLI, `doctor` and the hardware decision read it without loading anything.
"""

from __future__ import annotations

from dataclasses import dataclass

UNPINNED = "main"
"""The revision of a ready-made repo whose commit could not be verified: the hub's newest, whatever it holds then.
docs/models.md lists which repos are pinned and which are not."""


@dataclass(frozen=True)
class FastFiles:
    """A preset's model already converted to OpenVINO, on the hub in optimum-intel's export layout
    (`optimum-cli export openvino`): what `quality = fast` downloads and runs instead of the torch weights."""

    repo: str
    revision: str = UNPINNED
    decoder: str | None = None
    """A repo whose `vae_decoder/` is a TAESD decoder in OpenVINO, drawing `fast` images in place of the export's
    own (full) VAE decoder; None when the export's decoder is already a tiny one (SDXS's)."""
    decoder_revision: str = UNPINNED


@dataclass(frozen=True)
class Preset:
    """A model dreamtray knows by name, with the settings it was trained for."""

    name: str
    hub_id: str | None
    pipeline: str
    native_size: int
    steps: int
    guidance: float
    scheduler: str
    size_multiple: int
    weights_gb: float
    """Size of all weights in 16-bit precision; fp32 doubles it."""
    largest_part_gb: float
    """The biggest single module (UNet or transformer) in 16-bit: what model offload keeps on the device."""
    activation_gb: float
    """Working memory of one image at native size, on top of the weights."""
    variant: str | None = None
    min_vram_gb: float = 0.0
    """Below this much free VRAM the preset is not offered on a GPU at all."""
    text_window: int = 77
    taesd: str | None = None
    """Hub id of the TAESD decoder (TAESD) for this model's latent space: live previews and `quality = fast`."""
    fast_files: FastFiles | None = None
    """Where `quality = fast` on OpenVINO gets the model ready-made (nothing converted on the user's machine)."""
    description: str = ""

    @property
    def native_pixels(self) -> int:
        return self.native_size * self.native_size


PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset(
            name="sd-turbo",
            hub_id="stabilityai/sd-turbo",
            pipeline="StableDiffusionPipeline",
            native_size=512,
            steps=1,
            guidance=0.0,
            scheduler="EulerAncestralDiscreteScheduler",
            size_multiple=8,
            weights_gb=2.6,
            largest_part_gb=1.7,
            activation_gb=1.0,
            variant="fp16",
            taesd="madebyollin/taesd",
            fast_files=FastFiles("rupeshs/sd-turbo-openvino", decoder="rupeshs/taesd-ov"),
            description="SD 2.1 distilled to one step: fast everywhere, 512 px.",
        ),
        Preset(
            name="sdxs",
            hub_id="IDKiro/sdxs-512-0.9",
            pipeline="StableDiffusionPipeline",
            native_size=512,
            steps=1,
            guidance=0.0,
            scheduler="",  # the repo's own, as its authors' demo and FastSD CPU run it
            size_multiple=8,
            weights_gb=1.3,
            largest_part_gb=0.65,
            activation_gb=0.8,
            taesd="madebyollin/taesd",
            fast_files=FastFiles("rupeshs/sdxs-512-0.9-openvino"),
            description="SDXS-512: a 0.32 B UNet in one step with its own tiny decoder: the quickest on a CPU.",
        ),
        Preset(
            name="sdxl-turbo",
            hub_id="stabilityai/sdxl-turbo",
            pipeline="StableDiffusionXLPipeline",
            native_size=512,
            steps=1,
            guidance=0.0,
            scheduler="EulerAncestralDiscreteScheduler",
            size_multiple=8,
            weights_gb=6.9,
            largest_part_gb=5.1,
            activation_gb=1.5,
            variant="fp16",
            min_vram_gb=4.0,
            taesd="madebyollin/taesdxl",
            description="SDXL distilled to one step: better composition, needs a mid-range card.",
        ),
        Preset(
            name="flux-schnell",
            hub_id="black-forest-labs/FLUX.1-schnell",
            pipeline="FluxPipeline",
            native_size=1024,
            steps=4,
            guidance=0.0,
            scheduler="FlowMatchEulerDiscreteScheduler",
            size_multiple=16,
            weights_gb=33.7,
            largest_part_gb=23.8,
            activation_gb=3.0,
            min_vram_gb=24.0,
            text_window=256,
            taesd="madebyollin/taef1",
            description="FLUX.1 schnell, 4 steps, 1024 px: the best quality, big cards only.",
        ),
        Preset(
            name="tiny",
            hub_id=None,
            pipeline="StableDiffusionPipeline",
            native_size=512,
            steps=2,
            guidance=0.0,
            scheduler="EulerDiscreteScheduler",
            size_multiple=8,
            weights_gb=0.01,
            largest_part_gb=0.01,
            activation_gb=0.3,
            description="Random weights in Stable Diffusion's shape, built offline: a plumbing check that draws noise.",
        ),
    )
}

AUTO = "auto"

TAESD_BY_PIPELINE = {
    "StableDiffusionPipeline": "madebyollin/taesd",
    "StableDiffusionImg2ImgPipeline": "madebyollin/taesd",
    "StableDiffusionXLPipeline": "madebyollin/taesdxl",
    "StableDiffusionXLImg2ImgPipeline": "madebyollin/taesdxl",
    "FluxPipeline": "madebyollin/taef1",
}
"""The TAESD decoder for models that are no preset, by their pipeline: each family has its own latent space."""


def get_preset(name: str) -> Preset | None:
    """The preset called `name`, or None when `name` is a path or hub id instead."""
    return PRESETS.get(name)
