"""Euler samplers in numpy for the torch-free fast worker: diffusers' EulerDiscreteScheduler and
EulerAncestralDiscreteScheduler, step for step in float32, for the configurations the fast presets use.

Only what is written here is served: beta schedules `linear` and `scaled_linear`, timestep spacings `linspace`,
`leading` and `trailing`, linear interpolation of the sigmas, epsilon or v-prediction, no Karras, exponential or
beta sigmas, no zero-SNR rescale, no churn. `unsupported` says what else a configuration asks for; such a request
runs on torch (the engine's torch worker) instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dreamtray.engine.server.torch_randn import TorchGenerator

CLASSES = ("EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler")
DEFAULTS: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.0001,
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "trained_betas": None,
    "prediction_type": "epsilon",
    "interpolation_type": "linear",
    "use_karras_sigmas": False,
    "use_exponential_sigmas": False,
    "use_beta_sigmas": False,
    "timestep_spacing": "linspace",
    "timestep_type": "discrete",
    "steps_offset": 0,
    "rescale_betas_zero_snr": False,
    "final_sigmas_type": "zero",
}
"""diffusers' defaults for the keys a scheduler_config.json may leave out."""
SERVED = {
    "beta_schedule": ("linear", "scaled_linear"),
    "trained_betas": (None,),
    "prediction_type": ("epsilon", "v_prediction"),
    "interpolation_type": ("linear",),
    "use_karras_sigmas": (False, None),
    "use_exponential_sigmas": (False, None),
    "use_beta_sigmas": (False, None),
    "timestep_spacing": ("linspace", "leading", "trailing"),
    "timestep_type": ("discrete",),
    "rescale_betas_zero_snr": (False,),
    "final_sigmas_type": ("zero", "sigma_min"),
}


def unsupported(class_name: str, config: dict[str, Any]) -> str | None:
    """Why this scheduler cannot run here (in words), or None when it can."""
    if class_name not in CLASSES:
        return f"the sampler {class_name} has no torch-free version"
    settings = {**DEFAULTS, **config}
    for key, served in SERVED.items():
        if settings[key] not in served:
            return f"the sampler's setting {key} = {settings[key]!r} has no torch-free version"
    return None


def _linspace32(start: float, end: float, count: int) -> np.ndarray:
    """torch.linspace in float32 on the CPU, to the bit: a float32 step, each value from the nearer end, and the
    product and sum rounded once (ATen's kernel compiles to fused multiply-adds)."""
    first, last = float(np.float32(start)), float(np.float32(end))
    step = float(np.float32((np.float32(end) - np.float32(start)) / np.float32(count - 1)))
    index = np.arange(count, dtype=np.float64)
    values = np.where(index < count // 2, first + step * index, last - step * (count - index - 1))
    return values.astype(np.float32)


class EulerSampler:
    """One run's schedule and steps: `timesteps`, `init_noise_sigma`, `scale_model_input`, `step`."""

    def __init__(self, class_name: str, config: dict[str, Any], steps: int):
        if (why := unsupported(class_name, config)) is not None:
            raise ValueError(why)
        self.ancestral = class_name == "EulerAncestralDiscreteScheduler"
        c = {**DEFAULTS, **config}
        self.prediction = c["prediction_type"]
        train = int(c["num_train_timesteps"])
        if c["beta_schedule"] == "linear":
            betas = _linspace32(c["beta_start"], c["beta_end"], train)
        else:
            betas = _linspace32(c["beta_start"] ** 0.5, c["beta_end"] ** 0.5, train) ** np.float32(2)
        # torch accumulates a float32 cumulative product in double
        alphas_cumprod = np.cumprod((np.float32(1.0) - betas).astype(np.float64)).astype(np.float32)
        if c["timestep_spacing"] == "linspace":
            timesteps = np.linspace(0, train - 1, steps, dtype=np.float32)[::-1].copy()
        elif c["timestep_spacing"] == "leading":
            ratio = train // steps
            timesteps = (np.arange(0, steps) * ratio).round()[::-1].copy().astype(np.float32)
            timesteps += c["steps_offset"]
        else:
            timesteps = np.arange(train, 0, -train / steps).round().copy().astype(np.float32)
            timesteps -= 1
        all_sigmas = np.sqrt((np.float32(1) - alphas_cumprod) / alphas_cumprod)
        sigmas = np.interp(timesteps, np.arange(0, len(all_sigmas)), all_sigmas)
        last = 0.0
        if c["final_sigmas_type"] == "sigma_min" and not self.ancestral:
            last = float(np.sqrt((np.float32(1) - alphas_cumprod[0]) / alphas_cumprod[0]))
        self.sigmas = np.concatenate([sigmas, [last]]).astype(np.float32)
        self.timesteps = timesteps.astype(np.float32)
        top = self.sigmas.max()
        spread = c["timestep_spacing"] in ("linspace", "trailing")
        self.init_noise_sigma = top if spread else np.sqrt(top * top + np.float32(1))
        self.index = 0

    def scale_model_input(self, sample: np.ndarray) -> np.ndarray:
        sigma = self.sigmas[self.index]
        return sample / np.sqrt(sigma * sigma + np.float32(1))

    def step(self, model_output: np.ndarray, sample: np.ndarray, generator: TorchGenerator) -> np.ndarray:
        """The latents after this step (the ancestral sampler draws its noise from `generator`, as torch would)."""
        sample = sample.astype(np.float32)
        sigma, sigma_next = self.sigmas[self.index], self.sigmas[self.index + 1]
        if self.prediction == "epsilon":
            original = sample - sigma * model_output
        else:
            scale = np.sqrt(sigma * sigma + np.float32(1))
            original = model_output * (-sigma / scale) + (sample / (sigma * sigma + np.float32(1)))
        derivative = (sample - original) / sigma
        if self.ancestral:
            up = np.sqrt(sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2)
            down = np.sqrt(sigma_next**2 - up**2)
            previous = sample + derivative * (down - sigma)
            previous = previous + generator.randn(model_output.shape) * up
        else:
            previous = sample + derivative * (sigma_next - sigma)
        self.index += 1
        return previous.astype(np.float32)
