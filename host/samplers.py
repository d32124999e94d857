"""A1111's sampler and schedule names, both ways, and the diffusers schedulers that run them.

dreamtray names a sampler as A1111 did before 1.9, sampler and schedule in one: `DPM++ 2M Karras`. A1111 1.9
and later writes them apart (`Sampler: DPM++ 2M, Schedule type: Karras`) and its API takes `sampler_name` and
`scheduler` (`karras`); `split` and `join` convert. Whatever a user types (any case, a diffusers scheduler class
such as `EulerAncestralDiscreteScheduler`), `parse` gives the A1111 name, which is what dreamtray writes.
Pure data: no torch, no diffusers, so the client checks names before a job is submitted.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any

SAMPLERS: dict[str, tuple[str, dict[str, Any]]] = {
    "Euler": ("EulerDiscreteScheduler", {}),
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "Heun": ("HeunDiscreteScheduler", {}),
    "LMS": ("LMSDiscreteScheduler", {}),
    "DPM2": ("KDPM2DiscreteScheduler", {}),
    "DPM2 a": ("KDPM2AncestralDiscreteScheduler", {}),
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "DPM++ 2M SDE": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}),
    "DPM++ SDE": ("DPMSolverSDEScheduler", {}),
    "DDIM": ("DDIMScheduler", {}),
    "PLMS": ("PNDMScheduler", {"skip_prk_steps": True}),
    "UniPC": ("UniPCMultistepScheduler", {}),
    "LCM": ("LCMScheduler", {}),
}
"""A1111 sampler name -> diffusers scheduler class and the settings that make it that sampler."""

SCHEDULES: dict[str, dict[str, Any]] = {
    "Karras": {"use_karras_sigmas": True},
    "Exponential": {"use_exponential_sigmas": True},
    "Beta": {"use_beta_sigmas": True},
}
"""A1111 schedule types that change a sampler's sigmas, as diffusers scheduler settings."""

SIGMA_SCHEDULES = frozenset(
    {"Euler", "Heun", "LMS", "DPM2", "DPM2 a", "DPM++ 2M", "DPM++ 2M SDE", "DPM++ SDE", "UniPC"}
)
"""The samplers whose diffusers scheduler takes the Karras, exponential and beta schedules."""

DEFAULT_SCHEDULES = frozenset({"Automatic", "Uniform", "Normal"})
"""A1111 schedule types that are the sampler's own default spacing: nothing to change."""

OTHER_CLASSES = {"FlowMatchEulerDiscreteScheduler": "Euler"}
"""Scheduler classes that A1111 (Forge) names after a sampler of another family."""

_SCHEDULER_CLASS = re.compile(r"[A-Z]\w*Scheduler")


class SamplerError(ValueError):
    """A sampler name that is neither an A1111 sampler (with a known schedule) nor a diffusers scheduler class."""


@dataclass(frozen=True)
class Sampler:
    """One sampler: its A1111 name (or a diffusers class name A1111 has no name for) and schedule type."""

    name: str
    schedule: str | None = None

    @property
    def label(self) -> str:
        """The one-string name dreamtray writes: `DPM++ 2M Karras`."""
        return f"{self.name} {self.schedule}" if self.schedule else self.name

    def scheduler(self) -> tuple[str, dict[str, Any]]:
        """The diffusers scheduler class and the settings to build it with (over the model's own config)."""
        class_name, settings = SAMPLERS.get(self.name, (self.name, {}))
        if self.name not in SIGMA_SCHEDULES:
            return class_name, settings
        flags = {flag: False for options in SCHEDULES.values() for flag in options}
        return class_name, {**settings, **flags, **SCHEDULES.get(self.schedule or "", {})}


def parse(text: str) -> Sampler:
    """The sampler `text` names: an A1111 name with or without a schedule (`dpm++ 2m karras`), or a class name."""
    wanted = " ".join(text.split())
    if _SCHEDULER_CLASS.fullmatch(wanted):
        return from_class(wanted, {})
    by_key = {name.casefold(): name for name in SAMPLERS}
    if wanted.casefold() in by_key:
        return Sampler(by_key[wanted.casefold()])
    for schedule in SCHEDULES:
        head = wanted[: -len(schedule)].strip()
        if wanted.casefold().endswith(" " + schedule.casefold()) and head.casefold() in by_key:
            name = by_key[head.casefold()]
            if name not in SIGMA_SCHEDULES:
                raise SamplerError(f"the sampler {name!r} does not take the {schedule} schedule here")
            return Sampler(name, schedule)
    labels = [*SAMPLERS, *(f"{name} {schedule}" for name in sorted(SIGMA_SCHEDULES) for schedule in SCHEDULES)]
    closest = difflib.get_close_matches(wanted, labels, n=3, cutoff=0.0)
    raise SamplerError(
        f"unknown sampler {text!r}; the closest are {', '.join(map(repr, closest))} "
        "(A1111 names with an optional Karras, Exponential or Beta schedule, or a diffusers scheduler class)"
    )


def from_class(class_name: str, config: dict[str, Any]) -> Sampler:
    """The A1111 sampler a diffusers scheduler is (its class and config), else one named by the class."""
    schedule = next((name for name, flags in SCHEDULES.items() if all(config.get(k) for k in flags)), None)
    for name, (candidate, settings) in SAMPLERS.items():
        if candidate == class_name and all(config.get(key, value) == value for key, value in settings.items()):
            return Sampler(name, schedule if name in SIGMA_SCHEDULES else None)
    if class_name in OTHER_CLASSES:
        return Sampler(OTHER_CLASSES[class_name], schedule)
    return Sampler(class_name)


def split(label: str) -> dict[str, str]:
    """The infotext fields of a sampler label: `Sampler` and, when there is one, `Schedule type` (A1111 1.9+)."""
    try:
        sampler = parse(label)
    except SamplerError:
        return {"Sampler": label}
    return {"Sampler": sampler.name} | ({"Schedule type": sampler.schedule} if sampler.schedule else {})


def join(sampler: str, schedule: str | None) -> tuple[Sampler | None, list[str]]:
    """The sampler of an A1111 infotext (`Sampler`, `Schedule type`), with a warning for what cannot be honoured.

    A sampler dreamtray cannot run gives None (the model's default sampler is used) and a warning; an unknown
    schedule keeps the sampler with its default schedule and a warning.
    """
    try:
        found = parse(sampler)
    except SamplerError:
        return None, [f"Sampler: {sampler!r} is not available here; the model's default sampler is used"]
    if found.name not in SAMPLERS and found.name not in OTHER_CLASSES.values():
        return None, [f"Sampler: {sampler!r} is not available here; the model's default sampler is used"]
    if not schedule or schedule in DEFAULT_SCHEDULES or schedule == found.schedule:
        return found, []
    if schedule in SCHEDULES and found.name in SIGMA_SCHEDULES:
        return Sampler(found.name, schedule), []
    return found, [f"Schedule type: {schedule!r} is not available for {found.name}; its default schedule is used"]


def a1111_sampler(label: str) -> dict[str, str]:
    """The A1111 API fields (1.9+) for a sampler label: `sampler_name` and `scheduler` (`karras`, `automatic`)."""
    sampler = parse(label)
    if sampler.name not in SAMPLERS:
        raise SamplerError(f"A1111 has no sampler for the diffusers scheduler {sampler.name!r}")
    return {"sampler_name": sampler.name, "scheduler": (sampler.schedule or "Automatic").lower()}
