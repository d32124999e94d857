"""`dreamtray doctor`: what this machine has, and what dreamtray will do with each model on it.

The hardware is read by a short-lived engine process (`dreamtray.engine.server.diagnose`), so the command
line itself never imports torch.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import click

from dreamtray.cli.context import Context, pass_app
from dreamtray.cli.terminal import echo

if TYPE_CHECKING:
    from dreamtray.app import App

PROBE_TIMEOUT = 120.0


class DiagnosisFailed(RuntimeError):
    """The engine's probe could not run; the message says why."""


def diagnose(app: App) -> dict[str, Any]:
    """The engine's report on this machine, with the config's side added."""
    overrides = asdict(app.config.engine.overrides())
    if overrides.get("policy") is not None:
        overrides["policy"] = overrides["policy"].value
    command = [sys.executable, "-m", "dreamtray.engine.server.diagnose", json.dumps(overrides)]
    try:
        probe = subprocess.run(command, capture_output=True, text=True, timeout=PROBE_TIMEOUT, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise DiagnosisFailed(f"Reading the hardware took over {PROBE_TIMEOUT:.0f} s; try again.") from None
    if probe.returncode:
        reason = probe.stderr.strip().splitlines()[-1:] or [f"exit code {probe.returncode}"]
        raise DiagnosisFailed(f"The engine could not read the hardware: {reason[0]}")
    return json.loads(probe.stdout) | {
        "configured_model": app.config.model,
        "config_file": str(app.loaded_config.path),
        "openvino_cache": _openvino_cache(),
        "config_problems": list(app.loaded_config.problems),
    }


def _openvino_cache() -> dict[str, Any]:
    """Where the OpenVINO models of quality fast are kept, their size on disk, and how much of it is compiled
    copies (one per module and image shape used lately; the engine prunes the rest: docs/fast-path.md)."""
    from dreamtray import paths
    from dreamtray.engine.settings import COMPILED_STAMP

    folder = paths.cache_dir() / "models" / "openvino"
    files = [f for f in folder.rglob("*") if f.is_file() and not f.is_symlink()] if folder.is_dir() else []
    compiled = [f for f in files if "compiled" in f.relative_to(folder).parts]
    shapes = {f.parent for f in compiled if f.name == COMPILED_STAMP}
    return {
        "path": str(folder),
        "bytes": sum(f.stat().st_size for f in files),
        "compiled_bytes": sum(f.stat().st_size for f in compiled),
        "compiled_shapes": len(shapes),
    }


def _size(count: int) -> str:
    return f"{count / 2**30:.1f} GB" if count >= 2**30 else f"{count / 2**20:.0f} MB"


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
            fast = f"; quality {plan['quality']}, fast on {plan['fast_runtime']}"
            lines.append(f"  {name:13} {plan['policy']} on {plan['device']} in {plan['dtype']}{speed}{fast}")
    lines.append(f"Weights cache: {report['model_cache']}")
    cache = report["openvino_cache"]
    if report["openvino"]:
        lines.append(
            f"OpenVINO: {report['openvino']}; cache {_size(cache['bytes'])} in {cache['path']} (compiled copies "
            f"{_size(cache['compiled_bytes'])} for {cache['compiled_shapes']} module shapes)"
        )
    lines.append(f"Config:   {report['config_file']}")
    lines.extend(f"  problem: {problem}" for problem in report["config_problems"])
    return "\n".join(lines)


@click.command()
@click.option("--json", "as_json", is_flag=True)
@pass_app
def doctor(ctx: Context, as_json: bool) -> None:
    """Report the GPUs, memory and CPU, and what dreamtray will do with each model on them."""
    try:
        report = diagnose(ctx.app)
    except DiagnosisFailed as exc:
        raise click.ClickException(str(exc)) from None
    echo(json.dumps(report, indent=2) if as_json else render(report))


COMMANDS: list[click.Command] = [doctor]
