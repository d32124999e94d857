"""pick_torch: the build chosen for each kind of machine and the pip commands it runs (never run for real here)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "installer" / "pick_torch.py"
_spec = importlib.util.spec_from_file_location("pick_torch", SCRIPT)
pick_torch = sys.modules["pick_torch"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pick_torch)
Machine = pick_torch.Machine
INDEX = "https://download.pytorch.org/whl/"

FAKE_SMI = """#!/bin/sh
if [ "$1" = "--query-gpu=name" ]; then echo "NVIDIA GeForce RTX 4070"; exit 0; fi
cat <<'TABLE'
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 570.86.15              Driver Version: 570.86.15      CUDA Version: 12.8     |
+-----------------------------------------------------------------------------------------+
TABLE
"""


def test_cpu_machine_tries_the_configured_wheel_then_the_cpu_index() -> None:
    choice = pick_torch.decide(Machine("Linux", "x86_64"))
    assert choice.build == "cpu"
    assert choice.attempts == (
        ("install", "torch==2.13.0+cpu"),
        ("install", "torch==2.13.0+cpu", "--index-url", INDEX + "cpu"),
    )
    assert pick_torch.decide(Machine("Windows", "AMD64")).attempts == choice.attempts


@pytest.mark.parametrize(
    ("driver", "build"), [((12, 8), "cu128"), ((12, 9), "cu128"), ((13, 1), "cu130"), ((12, 6), "cu126")]
)
def test_nvidia_driver_picks_the_newest_cuda_build_it_supports(driver, build) -> None:
    choice = pick_torch.decide(Machine("Linux", "x86_64", "NVIDIA H100", driver))
    assert choice.build == build
    assert choice.attempts[-1] == ("install", f"torch==2.13.0+{build}", "--index-url", INDEX + build)
    assert "NVIDIA H100" in choice.reason


def test_old_driver_falls_back_to_cpu_and_says_how_to_fix_it() -> None:
    old = Machine("Windows", "AMD64", "NVIDIA GTX 1060", (11, 4))
    choice = pick_torch.decide(old)
    assert choice.build == "cpu" and "update the driver" in choice.reason
    with pytest.raises(pick_torch.NoBuild, match="update the NVIDIA driver"):
        pick_torch.decide(old, "cuda")


def test_apple_silicon_gets_the_default_wheel_and_intel_macs_a_clear_no() -> None:
    choice = pick_torch.decide(Machine("Darwin", "arm64"))
    assert (choice.build, choice.attempts) == ("mps", (("install", "torch==2.13.0"),))
    assert pick_torch.decide(Machine("Darwin", "arm64"), "cpu").attempts == choice.attempts
    with pytest.raises(pick_torch.NoBuild, match="Intel Macs"):
        pick_torch.decide(Machine("Darwin", "x86_64"))
    with pytest.raises(pick_torch.NoBuild, match="CUDA builds do not exist for macOS"):
        pick_torch.decide(Machine("Darwin", "arm64"), "cuda")


def test_overrides() -> None:
    gpu = Machine("Linux", "x86_64", "NVIDIA L4", (12, 8))
    assert pick_torch.decide(gpu, "cpu").build == "cpu"
    assert pick_torch.decide(gpu, "CU126").build == "cu126"
    assert pick_torch.decide(Machine("Linux", "x86_64"), "cuda").build == pick_torch.DEFAULT_CUDA_BUILD
    with pytest.raises(pick_torch.NoBuild, match="for Macs with Apple silicon"):
        pick_torch.decide(gpu, "mps")
    with pytest.raises(pick_torch.NoBuild, match="choose one of auto, cpu, cuda, mps"):
        pick_torch.decide(gpu, "rocm")


def test_install_falls_back_to_the_index_only_when_the_first_try_fails() -> None:
    ran = []

    def pip(argv, **_):
        ran.append(argv)
        return subprocess.CompletedProcess(argv, 1 if len(ran) == 1 else 0)

    choice = pick_torch.decide(Machine("Linux", "x86_64"))
    assert pick_torch.install(choice, python="py", run=pip) is True
    assert ran == [["py", "-m", "pip", *attempt] for attempt in choice.attempts]

    ran.clear()
    assert (
        pick_torch.install(
            choice, python="py", run=lambda argv, **_: ran.append(argv) or subprocess.CompletedProcess(argv, 0)
        )
        is True
    )
    assert len(ran) == 1  # the configured wheel was found: the index is never asked


def _dry_run(tmp_path: Path, *args: str, smi: bool = False, wanted: str | None = None):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    if smi:
        (bin_dir / "nvidia-smi").write_text(FAKE_SMI)
        (bin_dir / "nvidia-smi").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "DREAMTRAY_TORCH"}
    env["PATH"] = f"{bin_dir}:/usr/bin:/bin"
    if wanted is not None:
        env["DREAMTRAY_TORCH"] = wanted
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--dry-run", *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_dry_run_on_a_machine_without_gpu_prints_the_cpu_commands(tmp_path: Path) -> None:
    result = _dry_run(tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "CPU build" in lines[0]
    assert lines[1].endswith("-m pip install torch==2.13.0+cpu")
    assert lines[2].endswith(f"-m pip install torch==2.13.0+cpu --index-url {INDEX}cpu")


def test_dry_run_reads_the_driver_from_nvidia_smi(tmp_path: Path) -> None:
    result = _dry_run(tmp_path, smi=True)
    assert result.returncode == 0, result.stderr
    assert "NVIDIA GeForce RTX 4070, driver supports CUDA 12.8: CUDA build cu128" in result.stdout
    assert f"torch==2.13.0+cu128 --index-url {INDEX}cu128" in result.stdout
    assert "torch==2.13.0+cpu" in _dry_run(tmp_path, "--cpu", smi=True).stdout
    assert "torch==2.13.0+cpu" in _dry_run(tmp_path, smi=True, wanted="cpu").stdout
    assert "torch==2.13.0+cu128" in _dry_run(tmp_path, "--cuda").stdout


def test_bad_choice_is_refused_with_the_allowed_values(tmp_path: Path) -> None:
    result = _dry_run(tmp_path, wanted="rocm")
    assert result.returncode == 2
    assert "unknown torch build 'rocm'; choose one of auto, cpu, cuda, mps" in result.stderr
    assert result.stdout == ""
