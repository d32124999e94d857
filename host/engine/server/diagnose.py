"""What this machine has and how each preset would run on it, as JSON on stdout.

Run as `python -m dreamtray.engine.server.diagnose [OVERRIDES_JSON]` by `dreamtray doctor`, so that the
command line never imports torch itself.
"""

from __future__ import annotations

import json
import platform
import sys
from typing import Any

from dreamtray.engine.settings import Overrides, Policy


def diagnose(overrides: Overrides) -> dict[str, Any]:
    """The machine, the software, and a plan (or the reason there is none) for every preset."""
    import diffusers
    import torch
    from huggingface_hub import constants

    from dreamtray.engine.presets import PRESETS
    from dreamtray.engine.server.hardware import InsufficientMemory, choose_auto_preset, decide, probe_machine

    machine = probe_machine()
    plans: dict[str, dict[str, Any]] = {}
    for name, preset in PRESETS.items():
        try:
            plan = decide(machine, preset, overrides)
        except InsufficientMemory as exc:
            plans[name] = {"error": str(exc)}
            continue
        plans[name] = {
            "device": plan.device,
            "dtype": plan.dtype,
            "policy": plan.policy.value,
            "autocast": plan.autocast,
            "channels_last": plan.channels_last,
            "quality": plan.quality,
            "fast_runtime": plan.runtime,
            "why": list(plan.reasons),
        }
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
        "plans": plans,
        "model_cache": constants.HF_HUB_CACHE,
        "openvino": _version("openvino") if machine.openvino else None,
    }


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def main(argv: list[str]) -> None:
    values = json.loads(argv[0]) if argv else {}
    if values.get("policy"):
        values["policy"] = Policy(values["policy"])
    json.dump(diagnose(Overrides(**values)), sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1:])
