"""The request bodies of AUTOMATIC1111's /sdapi/v1/txt2img and img2img, as its API schema (1.10) defines them.

A test server validates what dreamtray sends against these: an unknown field is refused, and so are a sampler
or schedule type A1111 does not have (A1111 answers 404 "Sampler not found" for the sampler).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

SAMPLERS = (
    "DPM++ 2M", "DPM++ SDE", "DPM++ 2M SDE", "DPM++ 2M SDE Heun", "DPM++ 2S a", "DPM++ 3M SDE", "Euler a", "Euler",
    "LMS", "Heun", "DPM2", "DPM2 a", "DPM fast", "DPM adaptive", "Restart", "DDIM", "DDIM CFG++", "PLMS", "UniPC",
    "LCM",
)  # fmt: skip
"""`[s["name"] for s in GET /sdapi/v1/samplers]` of A1111 1.10."""
SCHEDULERS = (
    "automatic", "uniform", "karras", "exponential", "polyexponential", "sgm_uniform", "kl_optimal",
    "align_your_steps", "simple", "normal", "ddim", "beta",
)  # fmt: skip
"""`[s["name"] for s in GET /sdapi/v1/schedulers]` of A1111 1.10."""


class Txt2Img(BaseModel):
    """StableDiffusionProcessingTxt2Img's API model."""

    model_config = ConfigDict(extra="forbid", strict=True)

    prompt: str = ""
    negative_prompt: str = ""
    styles: list[str] | None = None
    seed: int = -1
    subseed: int = -1
    subseed_strength: float = 0
    seed_resize_from_h: int = -1
    seed_resize_from_w: int = -1
    sampler_name: str | None = None
    scheduler: str | None = None
    batch_size: int = 1
    n_iter: int = 1
    steps: int = 50
    cfg_scale: float = 7.0
    width: int = 512
    height: int = 512
    restore_faces: bool | None = None
    tiling: bool | None = None
    do_not_save_samples: bool = False
    do_not_save_grid: bool = False
    eta: float | None = None
    denoising_strength: float | None = None
    override_settings: dict[str, Any] | None = None
    override_settings_restore_afterwards: bool = True
    refiner_checkpoint: str | None = None
    refiner_switch_at: float | None = None
    disable_extra_networks: bool = False
    enable_hr: bool = False
    hr_scale: float = 2.0
    hr_upscaler: str | None = None
    hr_second_pass_steps: int = 0
    hr_checkpoint_name: str | None = None
    hr_sampler_name: str | None = None
    hr_scheduler: str | None = None
    hr_prompt: str = ""
    hr_negative_prompt: str = ""
    sampler_index: str = "Euler"
    script_name: str | None = None
    script_args: list[Any] = []
    send_images: bool = True
    save_images: bool = False
    alwayson_scripts: dict[str, Any] = {}
    infotext: str | None = None


class Img2Img(Txt2Img):
    """StableDiffusionProcessingImg2Img's API model (the fields dreamtray may send on top of txt2img's)."""

    init_images: list[str] | None = None
    resize_mode: int = 0
    image_cfg_scale: float | None = None
    mask: str | None = None
    include_init_images: bool = False
