"""The hardware decision is a pure function: checked on a table of simulated machines for every preset."""

from __future__ import annotations

import pytest

from dreamtray.engine.presets import PRESETS
from dreamtray.engine.server.hardware import (
    Gpu,
    InsufficientMemory,
    Machine,
    Overrides,
    Policy,
    choose_auto_preset,
    decide,
)


def card(total_gb: float, bf16: bool = True) -> Machine:
    """A desktop with one NVIDIA card, of which the desktop itself already uses 0.3 GB."""
    return Machine(
        gpus=(Gpu(f"{total_gb:g} GB card", total_gb, total_gb - 0.3, bf16),), cpu_cores=8, ram_gb=32, ram_free_gb=24
    )


MACHINES = {
    "4gb": card(4, bf16=False),
    "6gb": card(6, bf16=False),
    "8gb": card(8),
    "12gb": card(12),
    "16gb": card(16),
    "24gb": card(24),
    "32gb": card(32),
    "mps16": Machine(mps=True, cpu_cores=8, ram_gb=16, ram_free_gb=10),
    "mps8": Machine(mps=True, cpu_cores=8, ram_gb=8, ram_free_gb=5),
    "cpu": Machine(cpu_cores=2, ram_gb=16, ram_free_gb=12),
}

GPU, OFF, SEQ, CPU, NONE = Policy.GPU, Policy.MODEL_OFFLOAD, Policy.SEQUENTIAL_OFFLOAD, Policy.CPU, None

# machine:        sd-turbo  sdxs  sdxl-turbo  flux-schnell  tiny
TABLE = {
    "4gb": (OFF, GPU, SEQ, NONE, GPU),
    "6gb": (GPU, GPU, SEQ, SEQ, GPU),
    "8gb": (GPU, GPU, OFF, SEQ, GPU),
    "12gb": (GPU, GPU, GPU, SEQ, GPU),
    "16gb": (GPU, GPU, GPU, SEQ, GPU),
    "24gb": (GPU, GPU, GPU, SEQ, GPU),
    "32gb": (GPU, GPU, GPU, OFF, GPU),
    "mps16": (GPU, GPU, GPU, NONE, GPU),
    "mps8": (GPU, GPU, NONE, NONE, GPU),
    "cpu": (CPU, CPU, CPU, NONE, CPU),
}
AUTO = {
    "4gb": "sd-turbo",
    "6gb": "sd-turbo",
    "8gb": "sdxl-turbo",
    "12gb": "sdxl-turbo",
    "16gb": "sdxl-turbo",
    "24gb": "sdxl-turbo",
    "32gb": "flux-schnell",
    "mps16": "sdxl-turbo",
    "mps8": "sd-turbo",
    "cpu": "sdxs",
}
PRESET_ORDER = ("sd-turbo", "sdxs", "sdxl-turbo", "flux-schnell", "tiny")
CASES = [(m, p, TABLE[m][i]) for m in TABLE for i, p in enumerate(PRESET_ORDER)]


@pytest.mark.parametrize(("machine", "preset", "policy"), CASES, ids=[f"{m}-{p}" for m, p, _ in CASES])
def test_decision_table(machine, preset, policy):
    if policy is None:
        with pytest.raises(InsufficientMemory, match=preset):
            decide(MACHINES[machine], PRESETS[preset])
        return
    plan = decide(MACHINES[machine], PRESETS[preset])
    assert plan.policy is policy
    assert plan.reasons, "every plan says why"
    if machine.endswith("gb"):
        assert plan.device == "cuda:0"
        assert plan.dtype == ("float16" if machine in ("4gb", "6gb") else "bfloat16")
    elif machine.startswith("mps"):
        assert (plan.device, plan.dtype) == ("mps", "float16")
    else:
        assert (plan.device, plan.dtype) == ("cpu", "float32")


@pytest.mark.parametrize("machine", list(AUTO))
def test_auto_picks_the_best_preset_the_machine_runs_well(machine):
    assert choose_auto_preset(MACHINES[machine]).name == AUTO[machine]


def test_vae_tiling_starts_above_native_size_and_later_on_roomy_cards():
    small = decide(MACHINES["6gb"], PRESETS["sd-turbo"])
    roomy = decide(MACHINES["24gb"], PRESETS["sd-turbo"])
    assert not small.tiles(512, 512) and small.tiles(768, 768)
    assert not roomy.tiles(1024, 1024) and roomy.tiles(2048, 1152)


def test_config_overrides_win_and_are_explained():
    overrides = Overrides(device="cuda:1", dtype="float16", policy=Policy.SEQUENTIAL_OFFLOAD, vae_tiling=True)
    plan = decide(MACHINES["24gb"], PRESETS["sdxl-turbo"], overrides)
    assert (plan.device, plan.dtype, plan.policy) == ("cuda:1", "float16", Policy.SEQUENTIAL_OFFLOAD)
    assert plan.tiles(64, 64)
    assert any("set in the config" in reason for reason in plan.reasons)


def test_out_of_memory_steps_down_one_policy_at_a_time_ending_on_the_cpu():
    plan = decide(MACHINES["12gb"], PRESETS["sdxl-turbo"])
    seen = [plan.policy]
    while (plan := plan.stepped_down()) is not None:
        seen.append(plan.policy)
    assert seen == [GPU, OFF, SEQ, CPU]


def test_a_model_too_big_for_the_cpu_says_what_to_do():
    with pytest.raises(InsufficientMemory, match="sd-turbo"):
        decide(MACHINES["cpu"], PRESETS["flux-schnell"])


def test_a_cpu_with_bf16_units_runs_under_bf16_autocast_in_channels_last():
    amx = Machine(cpu_cores=2, ram_gb=24, ram_free_gb=20, cpu_bf16=True)
    plan = decide(amx, PRESETS["sd-turbo"])
    assert (plan.policy, plan.device, plan.dtype) == (CPU, "cpu", "float32"), "weights stay fp32"
    assert plan.autocast == "bfloat16" and plan.channels_last
    assert "bf16" in plan.reasons[0]
    assert decide(MACHINES["cpu"], PRESETS["sd-turbo"]).autocast is None, "not on CPUs without bf16 units"
    plain = decide(amx, PRESETS["sd-turbo"], Overrides(dtype="float32"))
    assert plain.autocast is None, "a dtype set in the config turns autocast off"
