"""A model with no OpenVINO files converts in a process of its own, at low priority, while its first images come
from torch; the first request after it is done runs on OpenVINO, and the process ends with the worker that started
it."""

from __future__ import annotations

import subprocess
import sys

import psutil
import pytest
from fixtures_engine import pixels
from xsession import wait_until

from dreamtray.config import EngineSettings
from dreamtray.engine.server.background_conversion import log_file
from dreamtray.engine.server.conversion_process import PRIORITY
from dreamtray.engine.server.fast import openvino_folder
from dreamtray.engine.server.hardware import Machine
from dreamtray.engine.server.runner import Runner
from dreamtray.engine.settings import Overrides
from dreamtray.request import Request

OPENVINO_CPU = Machine(cpu_cores=2, ram_gb=24, openvino=True)
FAST = Request(prompt="a red fox", seed=5, steps=2, width=64, height=64, quality="fast")


def made(runner: Runner, request: Request = FAST) -> tuple[bytes, list[str], list[str]]:
    """One image: its PNG, its warnings and the messages of its events."""
    messages: list[str] = []
    result = runner.generate(request, lambda event: messages.append(str(event.get("message", ""))))
    return result.images[0], result.warnings, messages


def test_the_first_images_come_from_torch_while_the_model_converts_then_openvino_takes_over(tiny_folder, tmp_path):
    cache = tmp_path / "cache"
    background = Overrides(background=True)
    runner = Runner(cache_dir=cache, default_model=str(tiny_folder), overrides=background, machine=OPENVINO_CPU)
    first, warnings, messages = made(runner)
    root = openvino_folder(cache, runner.loaded.source)
    assert (
        f"Converting {runner.loaded.source.name} to OpenVINO in the background, at low priority (once for this "
        f"model; its log: {log_file(root)}): quality fast runs on torch until it is done."
    ) in warnings
    assert "openvino" not in runner.loaded.extras and not [m for m in messages if m.startswith("Converting the")]
    [process] = runner.conversions.running.values()
    assert process.wait(timeout=600) == 0, log_file(root).read_text()
    log = log_file(root).read_text()
    assert f"at niceness {PRIORITY}" in log and "Converted the UNet of" in log and log.endswith("Done.\n")

    second, warnings, messages = made(runner)
    assert not [w for w in warnings if "torch" in w] and runner.loaded.extras["openvino"] is not None, "OpenVINO"
    assert not [m for m in messages if m.startswith(("Converting the", "Quantizing"))], "read from the cache as made"
    assert pixels(second) != pixels(first), "OpenVINO's image, not torch's"
    inline = Runner(cache_dir=tmp_path / "inline", default_model=str(tiny_folder), machine=OPENVINO_CPU)
    assert pixels(made(inline)[0]) == pixels(second), "the same image as a worker that converts it itself"


def test_the_conversion_ends_with_the_worker_that_started_it(tiny_folder, tmp_path):
    start = f"""
import sys, time
from pathlib import Path
from dreamtray.engine.server.background_conversion import BackgroundConversions
from dreamtray.engine.settings import Overrides
conversions = BackgroundConversions(Path({str(tmp_path / "cache")!r}), Overrides())
conversions.start({str(tiny_folder)!r}, "float32", Path({str(tmp_path / "root")!r}), 64, 64)
print(conversions.running[Path({str(tmp_path / "root")!r})].pid, flush=True)
time.sleep(600)
"""
    worker = subprocess.Popen([sys.executable, "-c", start], stdout=subprocess.PIPE, text=True)
    try:
        child = psutil.Process(int(worker.stdout.readline()))
        wait_until(lambda: child.nice() == PRIORITY, 60, "the conversion to lower its priority")
    finally:
        worker.kill()
        worker.wait(timeout=60)
    child.wait(timeout=60)  # raises TimeoutExpired while it runs on: gone within a minute of its worker
    assert not (tmp_path / "root.background.log").read_text().endswith("Done.\n")


@pytest.mark.parametrize(("setting", "background"), [("auto", None), ("always", True), ("never", False)])
def test_the_setting_reaches_the_engine(setting, background):
    assert EngineSettings(convert_in_background=setting).overrides().background is background
