"""`dreamtray doctor`: what this machine has, and what dreamtray will do with each model on it."""

from __future__ import annotations

import platform
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dreamtray.app import App


def diagnose(app: App) -> dict[str, Any]:
    """A report as plain data (imports torch to read the hardware)."""
    import diffusers
    import torch
    from huggingface_hub import constants

    from dreamtray.engine.presets import PRESETS
    from dreamtray.engine.server.hardware import InsufficientMemory, choose_auto_preset, decide, probe_machine

    machine = probe_machine()
    overrides = app.config.engine.overrides()
    plans = {}
    for name, preset in PRESETS.items():
        try:
            plan = decide(machine, preset, overrides)
            plans[name] = {
                "device": plan.device,
                "dtype": plan.dtype,
                "policy": plan.policy.value,
                "autocast": plan.autocast,
                "channels_last": plan.channels_last,
                "why": list(plan.reasons),
            }
        except InsufficientMemory as exc:
            plans[name] = {"error": str(exc)}
    return {
        "system": f"{platform.system()} {platform.release()} ({platform.machine()}), "
        f"Python {platform.python_version()}",
        "torch": torch.__version__,
        "cuda_build": torch.version.cuda,
        "diffusers": diffusers.__version__,
        "gpus": [
            {"name": g.name, "total_gb": round(g.total_gb, 1), "free_gb": round(g.free_gb, 1), "bf16": g.bf16}
            for g in machine.gpus
        ],
        "mps": machine.mps,
        "cpu_cores": machine.cpu_cores,
        "cpu_bf16": machine.cpu_bf16,
        "ram_gb": round(machine.ram_gb, 1),
        "ram_free_gb": round(machine.ram_free_gb, 1),
        "auto_model": choose_auto_preset(machine).name,
        "configured_model": app.config.model,
        "plans": plans,
        "model_cache": constants.HF_HUB_CACHE,
        "config_file": str(app.loaded_config.path),
        "config_problems": list(app.loaded_config.problems),
    }


def render(report: dict[str, Any]) -> str:
    lines = [
        f"System:   {report['system']}",
        f"Software: torch {report['torch']} (CUDA {report['cuda_build'] or 'none'}), diffusers {report['diffusers']}",
    ]
    if report["gpus"]:
        for gpu in report["gpus"]:
            bf16 = "yes" if gpu["bf16"] else "no"
            lines.append(f"GPU:      {gpu['name']}: {gpu['free_gb']} of {gpu['total_gb']} GB free, bf16 {bf16}")
    else:
        lines.append("GPU:      no CUDA device" + (" (Apple MPS available)" if report["mps"] else ""))
    lines.append(f"CPU:      {report['cpu_cores']} cores, {report['ram_gb']} GB RAM ({report['ram_free_gb']} GB free)")
    lines.append(f"Model:    {report['configured_model']} (auto would pick {report['auto_model']})")
    lines.append("What dreamtray will do:")
    for name, plan in report["plans"].items():
        if "error" in plan:
            lines.append(f"  {name:13} cannot run here: {plan['error']}")
        else:
            speed = f" with {plan['autocast']} autocast" if plan.get("autocast") else ""
            lines.append(f"  {name:13} {plan['policy']} on {plan['device']} in {plan['dtype']}{speed}")
    lines.append(f"Weights cache: {report['model_cache']}")
    lines.append(f"Config:   {report['config_file']}")
    lines.extend(f"  problem: {problem}" for problem in report["config_problems"])
    return "\n".join(lines)
