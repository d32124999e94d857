"""Choose and install the torch build that fits this machine, before dreamtray itself is installed.

- an NVIDIA GPU whose driver answers `nvidia-smi`: the CUDA build that driver supports;
- Apple silicon: the default wheel (it carries MPS);
- anything else: the CPU build.

Overrides: `--cuda` / `--cpu`, or the environment variable DREAMTRAY_TORCH=auto|cpu|cuda|mps|cuXYZ.
`--dry-run` prints the choice and the pip commands without running them.

Standard library only: it runs in dreamtray's fresh virtual environment before anything else is there.
For each build it first asks pip for the exact pinned wheel as pip is configured (a local wheel, a mirror),
and only if that fails asks the PyTorch wheel index for it.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

TORCH_VERSION = "2.13.0"
WHEEL_INDEX = "https://download.pytorch.org/whl/"
CUDA_BUILDS = (("cu130", (13, 0)), ("cu128", (12, 8)), ("cu126", (12, 6)))
"""The CUDA builds of this torch release, newest first, with the CUDA version the driver must support."""
DEFAULT_CUDA_BUILD = "cu128"
"""Taken when CUDA is asked for but no driver tells which version it supports."""
CHOICES = ("auto", "cpu", "cuda", "mps")


class NoBuild(ValueError):
    """No torch build fits what was asked on this machine; the message says why and what to do."""


@dataclass(frozen=True)
class Machine:
    system: str  # platform.system(): Linux, Darwin, Windows
    arch: str  # platform.machine(): x86_64, AMD64, arm64, aarch64
    gpu: str | None = None  # NVIDIA GPU name, when nvidia-smi answered
    driver_cuda: tuple[int, int] | None = None  # highest CUDA version the driver supports


@dataclass(frozen=True)
class Choice:
    build: str  # "cpu", "mps" or a CUDA tag such as "cu128"
    reason: str
    attempts: tuple[tuple[str, ...], ...]
    """pip argument lists, tried in order until one succeeds."""


def _windows_nvsmi() -> str | None:
    """Where older Windows drivers put nvidia-smi, off the PATH."""
    if platform.system() != "Windows":
        return None
    smi = Path(os.environ.get("ProgramFiles", r"C:\Program Files")) / "NVIDIA Corporation" / "NVSMI" / "nvidia-smi.exe"
    return str(smi) if smi.is_file() else None


def probe_nvidia(
    run: Callable[..., subprocess.CompletedProcess] = subprocess.run,
) -> tuple[str, tuple[int, int]] | None:
    """(GPU name, CUDA version the driver supports) from nvidia-smi, or None without a working driver."""
    smi = shutil.which("nvidia-smi") or _windows_nvsmi()
    if smi is None:
        return None
    try:
        names = run([smi, "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=30)
        table = run([smi], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r"CUDA Version:\s*(\d+)\.(\d+)", table.stdout)
    if names.returncode != 0 or table.returncode != 0 or not names.stdout.strip() or not found:
        return None
    return names.stdout.strip().splitlines()[0].strip(), (int(found[1]), int(found[2]))


def probe() -> Machine:
    """The facts of this machine that decide the build."""
    nvidia = probe_nvidia()
    return Machine(
        system=platform.system(),
        arch=platform.machine(),
        gpu=nvidia[0] if nvidia else None,
        driver_cuda=nvidia[1] if nvidia else None,
    )


def _pinned(build: str) -> tuple[tuple[str, ...], ...]:
    """Ask pip as configured for the exact wheel first, then the PyTorch index for that build."""
    pin = f"torch=={TORCH_VERSION}+{build}"
    return (("install", pin), ("install", pin, "--index-url", WHEEL_INDEX + build))


def _cuda_build_for(driver: tuple[int, int]) -> str | None:
    return next((tag for tag, needs in CUDA_BUILDS if driver >= needs), None)


def decide(machine: Machine, wanted: str = "auto") -> Choice:
    """The build for `machine`, honouring `wanted` (one of CHOICES or a CUDA tag like "cu126")."""
    wanted = wanted.strip().lower() or "auto"
    if wanted not in CHOICES and not re.fullmatch(r"cu\d{3}", wanted):
        raise NoBuild(f"unknown torch build {wanted!r}; choose one of {', '.join(CHOICES)} or a CUDA tag like cu128")
    mac = machine.system == "Darwin"
    if mac and machine.arch != "arm64":
        raise NoBuild(
            f"torch {TORCH_VERSION} has no build for Intel Macs; dreamtray needs a Mac with Apple silicon "
            "(or a Linux or Windows machine)"
        )
    if mac:
        if wanted not in ("auto", "mps", "cpu"):
            raise NoBuild("CUDA builds do not exist for macOS; use auto, mps or cpu")
        return Choice(
            "mps",
            "Apple silicon: the default wheel, with the Metal (MPS) backend",
            (("install", f"torch=={TORCH_VERSION}"),),
        )
    if wanted == "mps":
        raise NoBuild("the MPS build is for Macs with Apple silicon; use auto, cpu or cuda here")
    if wanted == "cpu":
        return Choice("cpu", "CPU build, as asked", _pinned("cpu"))
    if wanted.startswith("cu") and wanted != "cuda":
        return Choice(wanted, f"CUDA build {wanted}, as asked", _pinned(wanted))
    if machine.driver_cuda is None:
        if wanted == "cuda":
            return Choice(
                DEFAULT_CUDA_BUILD,
                f"CUDA build {DEFAULT_CUDA_BUILD}, as asked (no NVIDIA driver answered)",
                _pinned(DEFAULT_CUDA_BUILD),
            )
        return Choice("cpu", "no NVIDIA GPU with a working driver found (nvidia-smi): CPU build", _pinned("cpu"))
    build = _cuda_build_for(machine.driver_cuda)
    driver = "{}.{}".format(*machine.driver_cuda)
    if build is None:
        oldest = "{}.{}".format(*CUDA_BUILDS[-1][1])
        if wanted == "cuda":
            raise NoBuild(
                f"the NVIDIA driver supports CUDA {driver}, but torch {TORCH_VERSION} needs {oldest} or newer: "
                "update the NVIDIA driver, then run the installer again"
            )
        return Choice(
            "cpu",
            f"{machine.gpu}: its driver supports CUDA {driver} only, torch {TORCH_VERSION} needs "
            f"{oldest} or newer; CPU build for now (update the driver and re-run for the GPU)",
            _pinned("cpu"),
        )
    return Choice(build, f"{machine.gpu}, driver supports CUDA {driver}: CUDA build {build}", _pinned(build))


def install(
    choice: Choice, python: str = sys.executable, run: Callable[..., subprocess.CompletedProcess] = subprocess.run
) -> bool:
    """Run the choice's pip commands in order until one succeeds; True when torch got installed."""
    for number, attempt in enumerate(choice.attempts):
        if number:
            print("pick_torch: not found that way; asking the PyTorch wheel index", flush=True)
        if run([python, "-m", "pip", *attempt]).returncode == 0:
            return True
    return False


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Install the torch build that fits this machine.")
    forced = parser.add_mutually_exclusive_group()
    forced.add_argument("--cuda", dest="wanted", action="store_const", const="cuda", help="install a CUDA build")
    forced.add_argument("--cpu", dest="wanted", action="store_const", const="cpu", help="install the CPU build")
    parser.add_argument("--dry-run", action="store_true", help="print the choice and the commands, install nothing")
    args = parser.parse_args(argv)
    wanted = args.wanted or os.environ.get("DREAMTRAY_TORCH", "auto")
    try:
        choice = decide(probe(), wanted)
    except NoBuild as problem:
        print(f"pick_torch: {problem}", file=sys.stderr)
        return 2
    print(f"pick_torch: torch {TORCH_VERSION}, {choice.reason}")
    if args.dry_run:
        for attempt in choice.attempts:
            print("would run: " + shlex.join([sys.executable, "-m", "pip", *attempt]))
        return 0
    if install(choice):
        return 0
    print(
        f"pick_torch: could not install torch {TORCH_VERSION} ({choice.build}); see pip's messages above",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
