"""What the machine can do, and the pure decision of how to run a model on it.

`probe_machine()` reads the hardware (it imports torch, so only the engine and `doctor` call it).
`decide()` and `choose_auto_preset()` are pure functions of a `Machine` and a `Preset`: the same inputs
give the same plan, which is what the decision-table tests check on simulated machines.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from dreamtray.engine.presets import PRESETS, Preset
from dreamtray.engine.settings import Overrides, Policy

MARGIN_GB = 0.5
"""Head-room kept free on the device for the allocator, the desktop and fragmentation."""
SEQUENTIAL_FLOOR_GB = 1.0
"""Sequential offload still keeps one block's weights and buffers on the device."""
MPS_USABLE_SHARE = 0.65
"""Apple silicon shares RAM with the GPU; this share of it is taken as usable by the model."""
ROOMY_GB = 8.0
"""Spare device memory beyond which VAE tiling waits until 4x the native pixel count."""
CONVERSION_RAM_FACTOR = 5.4
"""Peak RAM of converting a model to OpenVINO, per GB of its largest part in 16-bit (SD-Turbo's UNet: 9.2 GB)."""
OPENVINO_PIPELINES = ("StableDiffusionPipeline",)
"""Pipelines whose modules the OpenVINO back end converts (their UNet takes no extra conditioning inputs)."""


STEP_DOWN = {
    Policy.GPU: Policy.MODEL_OFFLOAD,
    Policy.MODEL_OFFLOAD: Policy.SEQUENTIAL_OFFLOAD,
    Policy.SEQUENTIAL_OFFLOAD: Policy.CPU,
}


class InsufficientMemory(RuntimeError):
    """No policy fits the model into this machine."""


@dataclass(frozen=True)
class Gpu:
    name: str
    total_gb: float
    free_gb: float
    bf16: bool
    index: int = 0


@dataclass(frozen=True)
class Machine:
    """The facts the decision needs; probed for real, or written out by hand in tests."""

    gpus: tuple[Gpu, ...] = ()
    mps: bool = False
    cpu_cores: int = 1
    ram_gb: float = 8.0
    ram_free_gb: float = 8.0
    cpu_bf16: bool = False
    """The CPU computes bf16 natively (AMX or AVX512-BF16)."""
    openvino: bool = False
    """The OpenVINO runtime is installed."""


@dataclass(frozen=True)
class Plan:
    """How a preset runs on a machine, with the reasons in words for `doctor`."""

    device: str
    dtype: str
    policy: Policy
    vae_tiling_above: int
    """Images with more pixels than this decode with VAE tiling; 0 means always tile."""
    attention_slicing: bool = False
    autocast: str | None = None
    """Run the pipeline under torch.autocast to this dtype (weights stay in `dtype`)."""
    channels_last: bool = False
    """Keep the UNet and VAE in channels-last memory format."""
    runtime: str = "torch"
    """The back end of `quality = fast` (torch or openvino); balanced and best always run on torch."""
    quality: str = "balanced"
    """The quality of requests that name none."""
    int8: bool = True
    """`fast` on OpenVINO runs an int8 UNet and TAESD decoder (quantized once per model: openvino_int8.py)."""
    reasons: tuple[str, ...] = field(default=())

    def stepped_down(self) -> Plan | None:
        """The next more frugal plan, used after an out-of-memory error; None when there is none."""
        lower = STEP_DOWN.get(self.policy)
        if lower is None:
            return None
        device, dtype = (self.device, self.dtype) if lower is not Policy.CPU else ("cpu", "float32")
        return replace(
            self,
            policy=lower,
            device=device,
            dtype=dtype,
            autocast=None,
            runtime="torch",
            vae_tiling_above=0,
            reasons=self.reasons + (f"stepped down to {lower.value} after running out of memory",),
        )

    def tiles(self, width: int, height: int) -> bool:
        return width * height > self.vae_tiling_above


def _fits(free_gb: float, need_gb: float) -> bool:
    return free_gb >= need_gb + MARGIN_GB


def _cpu_plan(machine: Machine, preset: Preset, why: str) -> Plan:
    need = preset.weights_gb * 2 + preset.activation_gb  # fp32 on the CPU
    if machine.ram_gb < need:
        raise InsufficientMemory(
            f"{preset.name} needs about {need:.0f} GB of RAM on the CPU and this machine has "
            f"{machine.ram_gb:.0f} GB; choose a smaller model (sd-turbo) or a machine with a GPU"
        )
    runtime, reasons = _cpu_runtime(machine, preset)
    quality = "balanced"
    if runtime == "openvino":
        # Measured on a 2-core CPU (bench/fast_path.py, SD-Turbo shape, 512 px, one step): fast 1.0 s against
        # 8.6 s for balanced; the hotkey's image should come in about a second.
        quality = "fast"
        reasons += ("quality fast by default: about 8x quicker than balanced here (set engine.quality to change)",)
    if machine.cpu_bf16:
        # Measured on a 2-core AMX CPU (bench/shapes.py, SD-Turbo shape): bf16 autocast 1.3-2.2x and
        # channels_last 1.1-3x faster. Weights stay fp32, so that `balanced` keeps its pixels: bf16 weights would
        # run the norms in bf16 (the text encoder alone is 1.1-3.5x faster with them: bench/fast_path.py).
        why += "; the CPU has bf16 units: bf16 autocast and channels-last"
        return Plan(
            "cpu",
            "float32",
            Policy.CPU,
            preset.native_pixels,
            autocast="bfloat16",
            channels_last=True,
            runtime=runtime,
            quality=quality,
            reasons=(why, *reasons),
        )
    return Plan(
        "cpu", "float32", Policy.CPU, preset.native_pixels, runtime=runtime, quality=quality, reasons=(why, *reasons)
    )


def _cpu_runtime(machine: Machine, preset: Preset) -> tuple[str, tuple[str, ...]]:
    """OpenVINO for `quality = fast` where it is installed, the model converts and the RAM holds the conversion.

    Measured on 2-core CPUs (bench/fast_path.py, SD-Turbo shape, 512 px): the UNet step 0.8-1.0 s on OpenVINO in
    bf16 (0.77 s in int8) against 2.0-2.5 s on torch with bf16 autocast; with the TAESD decoder one image 1.0-1.3 s
    against 3.0 s.
    """
    if not machine.openvino:
        return "torch", ()
    if preset.pipeline not in OPENVINO_PIPELINES:
        return "torch", (f"quality fast runs on torch: the OpenVINO back end does not convert {preset.pipeline}",)
    if preset.fast_files is not None:
        # Nothing is converted here: the model comes converted (docs/models.md). Running it holds its 16-bit weights
        # and one image's working memory, less than the fp32 torch model that `_cpu_plan` already asked room for.
        ready = preset.fast_files.repo
        return "openvino", (
            f"quality fast runs on OpenVINO, downloaded ready-made from {ready} (nothing converted here)",
        )
    need = preset.largest_part_gb * CONVERSION_RAM_FACTOR
    if machine.ram_gb < need:
        return "torch", (f"quality fast runs on torch: converting to OpenVINO needs about {need:.0f} GB of RAM",)
    return "openvino", ("quality fast runs on OpenVINO (converted once, cached per model)",)


def _gpu_policy(free_gb: float, preset: Preset) -> Policy | None:
    if _fits(free_gb, preset.weights_gb + preset.activation_gb):
        return Policy.GPU
    if _fits(free_gb, preset.largest_part_gb + preset.activation_gb):
        return Policy.MODEL_OFFLOAD
    if _fits(free_gb, SEQUENTIAL_FLOOR_GB + preset.activation_gb):
        return Policy.SEQUENTIAL_OFFLOAD
    return None


def _automatic(machine: Machine, preset: Preset) -> Plan:
    if machine.gpus:
        gpu = max(machine.gpus, key=lambda g: g.free_gb)
        policy = _gpu_policy(gpu.free_gb, preset)
        if policy is None:
            return _cpu_plan(machine, preset, f"{gpu.name} has {gpu.free_gb:.1f} GB free, too little even for offload")
        dtype = "bfloat16" if gpu.bf16 else "float16"
        spare = gpu.free_gb - preset.weights_gb - preset.activation_gb
        roomy = policy is Policy.GPU and spare >= ROOMY_GB
        why = f"{gpu.name}: {gpu.free_gb:.1f} of {gpu.total_gb:.1f} GB free -> {policy.value} in {dtype}"
        return Plan(f"cuda:{gpu.index}", dtype, policy, preset.native_pixels * (4 if roomy else 1), reasons=(why,))
    if machine.mps:
        usable = machine.ram_gb * MPS_USABLE_SHARE
        if _fits(usable, preset.weights_gb + preset.activation_gb):
            why = f"Apple GPU (MPS) sharing {machine.ram_gb:.0f} GB of RAM -> whole model in float16"
            return Plan(
                "mps",
                "float16",
                Policy.GPU,
                preset.native_pixels,
                attention_slicing=machine.ram_gb < 64,
                reasons=(why,),
            )
        return _cpu_plan(machine, preset, f"{preset.name} does not fit the Apple GPU's share of RAM")
    return _cpu_plan(machine, preset, f"no GPU: CPU with {machine.cpu_cores} cores in float32")


def decide(machine: Machine, preset: Preset, overrides: Overrides = Overrides()) -> Plan:
    """The plan for running `preset` on `machine`, with the config's overrides applied last."""
    plan = _automatic(machine, preset)
    changes: dict[str, object] = {}
    notes = []
    if overrides.policy is not None and overrides.policy is not plan.policy:
        changes["policy"] = overrides.policy
        if overrides.policy is Policy.CPU:
            changes.update(device="cpu", dtype="float32")
        notes.append(f"memory policy {overrides.policy.value} set in the config")
    if overrides.device is not None:
        changes["device"] = overrides.device
        notes.append(f"device {overrides.device} set in the config")
    if overrides.dtype is not None:
        changes.update(dtype=overrides.dtype, autocast=None)
        notes.append(f"dtype {overrides.dtype} set in the config")
    if overrides.runtime is not None and overrides.runtime != plan.runtime:
        changes["runtime"] = overrides.runtime
        notes.append(f"back end {overrides.runtime} for quality fast, set in the config")
    if overrides.quality is not None:
        changes["quality"] = overrides.quality
        notes.append(f"quality {overrides.quality} by default, set in the config")
    if overrides.int8 is not None and overrides.int8 != plan.int8:
        changes["int8"] = overrides.int8
        notes.append(f"int8 for quality fast on OpenVINO {'on' if overrides.int8 else 'off'}, set in the config")
    if overrides.vae_tiling is not None:
        changes["vae_tiling_above"] = 0 if overrides.vae_tiling else 2**62
        notes.append(f"VAE tiling {'always' if overrides.vae_tiling else 'never'}, set in the config")
    if not changes:
        return plan
    return replace(plan, **changes, reasons=plan.reasons + tuple(notes))


AUTO_ORDER = ("flux-schnell", "sdxl-turbo", "sd-turbo")
CPU_DEFAULT = "sdxs"
"""The preset of a machine without a GPU, chosen by measurement (docs/models.md, bench/first_run.py): SDXS-512's first
run peaks at about 60% of SD-Turbo's memory, its download is half, its UNet call takes 0.6x the time, and its
weights' licence allows commercial use where SD-Turbo's does not."""


def choose_auto_preset(machine: Machine) -> Preset:
    """The best preset this machine runs at a usable speed: whole or model-offloaded on a GPU; SDXS on a CPU."""
    if not machine.gpus and not machine.mps:
        return PRESETS[CPU_DEFAULT]
    for name in AUTO_ORDER:
        preset = PRESETS[name]
        if machine.gpus:
            free = max(g.free_gb for g in machine.gpus)
            if free >= preset.min_vram_gb and _gpu_policy(free, preset) in (Policy.GPU, Policy.MODEL_OFFLOAD):
                return preset
        elif machine.mps:
            usable = machine.ram_gb * MPS_USABLE_SHARE
            if usable >= preset.min_vram_gb and _fits(usable, preset.weights_gb + preset.activation_gb):
                return preset
    return PRESETS["sd-turbo"]


def probe_machine() -> Machine:
    """Read this machine's GPUs, RAM (as much of it as this process's cgroup allows) and cores (imports torch)."""
    import torch

    gpus = []
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(index)
            major, _ = torch.cuda.get_device_capability(index)
            gpus.append(Gpu(torch.cuda.get_device_name(index), total / 2**30, free / 2**30, major >= 8, index))
    cpu = getattr(torch, "cpu", None)
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return host_machine(
        cpu_bf16=any(getattr(cpu, probe, lambda: False)() for probe in probes),
        gpus=tuple(gpus),
        mps=bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
    )


def host_machine(cpu_bf16: bool, gpus: tuple[Gpu, ...] = (), mps: bool = False) -> Machine:
    """The machine with these GPU and CPU facts, and its cores, RAM (as much of it as this process's cgroup
    allows: containers, systemd slices, Flatpak) and OpenVINO read here, without torch."""
    from dreamtray.engine.server.memory import budget, own_usage

    memory = budget()
    return Machine(
        gpus=gpus,
        mps=mps,
        cpu_cores=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1),
        ram_gb=memory.ceiling / 2**30,
        ram_free_gb=memory.room(own_usage()) / 2**30,
        cpu_bf16=cpu_bf16,
        openvino=importlib.util.find_spec("openvino") is not None,
    )


def cpu_flags() -> set[str]:
    """The CPU's feature flags as Linux names them in /proc/cpuinfo (none where it cannot be read)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    line = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return set(line.partition(":")[2].split())
