"""The memory budget of the one-off steps of quality fast, for real on the tiny model: a step that would not fit
is not started (the job runs on torch and says why), and a worker the kernel kills for memory (in a real cgroup
with a memory limit, where this machine lets the test make one) is reported as out of memory, after which the
same request does not walk into the same step again."""

from __future__ import annotations

import os
import shutil
import signal
import time
import uuid
from pathlib import Path

import pytest

from dreamtray.engine.server import memory
from dreamtray.engine.server.hardware import Machine
from dreamtray.engine.server.jobs import JobManager
from dreamtray.engine.server.runner import Runner
from dreamtray.engine.settings import WorkerSettings
from dreamtray.request import Request

OPENVINO_CPU = Machine(cpu_cores=2, ram_gb=24, ram_free_gb=20, openvino=True)
FAST = Request(prompt="a red fox", seed=5, steps=2, width=64, height=64, quality="fast")
WAIT = 300  # seconds a job of the tiny model may take on a busy 2-core machine before the test fails
CGROUP_V1 = Path("/sys/fs/cgroup/memory")


def test_sizes_read_as_bytes():
    assert memory.parse_bytes("4G") == 4 * 2**30
    assert memory.parse_bytes("512m") == 512 * 2**20
    assert memory.parse_bytes("1073741824") == 2**30
    with pytest.raises(ValueError, match="no size"):
        memory.parse_bytes("lots")


def test_a_limit_set_by_hand_is_the_budget(monkeypatch):
    monkeypatch.setenv(memory.LIMIT_VARIABLE, "300M")
    budget = memory.budget()
    assert budget.limit == 300 * 2**20 and budget.where == memory.LIMIT_VARIABLE
    assert budget.room(budget.used) == 300 * 2**20  # the process's own use, read once (a later read may differ)
    assert "under a limit of 0.3 GB" in budget.describe(memory.own_usage())


def test_a_conversion_that_would_not_fit_is_not_started_and_the_job_runs_on_torch(tmp_path, monkeypatch):
    monkeypatch.setenv(memory.LIMIT_VARIABLE, "300M")
    runner = Runner(cache_dir=tmp_path, default_model="tiny", machine=OPENVINO_CPU)
    messages: list[str] = []
    result = runner.generate(FAST, emit=lambda event: messages.append(event.get("message", "")))
    assert result.images and result.images[0].startswith(b"\x89PNG")
    (warning,) = [w for w in result.warnings if "memory" in w]
    assert warning.startswith("Quality fast runs on torch: converting the model to OpenVINO needs about 1.0 GB")
    assert "under a limit of 0.3 GB (DREAMTRAY_MEMORY_LIMIT)" in warning and "Close other programs" in warning
    assert warning in messages  # shown while it runs (the CLI's and the tray's progress), and in the result
    assert not any(m.startswith("Converting") for m in messages)
    assert not (tmp_path / "openvino").exists()


def test_a_step_that_ran_out_of_memory_before_is_skipped_while_there_is_no_more_room(tmp_path):
    memory.record_wall(tmp_path, "tiny", "int8", room=2**50)  # more than any machine here has
    runner = Runner(cache_dir=tmp_path, default_model="tiny", machine=OPENVINO_CPU)
    messages: list[str] = []
    result = runner.generate(FAST, emit=lambda event: messages.append(event.get("message", "")))
    assert any(m.startswith("Converting the UNet of tiny") for m in messages)  # converting still fits
    assert not any(m.startswith("Calibrating") for m in messages)
    (warning,) = [w for w in result.warnings if "memory" in w]
    assert warning.startswith(
        "Quality fast runs with data-free int8 weights, not the calibrated int8: quantizing the model to int8 ran "
        "out of memory before for tiny"
    )
    (root,) = (tmp_path / "openvino").iterdir()
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == [
        "text_encoder",
        "tiny_decoder",
        "unet",
        "unet-int8-weights",
    ]
    # A new runner (a new worker) finds the data-free UNet in the cache and quantizes nothing.
    messages.clear()
    again = Runner(cache_dir=tmp_path, default_model="tiny", machine=OPENVINO_CPU)
    second = again.generate(FAST, emit=lambda event: messages.append(event.get("message", "")))
    assert not any(m.startswith(("Quantizing", "Converting", "Memory for")) for m in messages), messages
    assert second.images[0].startswith(b"\x89PNG")


def test_the_hand_set_limit_also_bounds_the_fallback(tmp_path, monkeypatch):
    """With the calibrated int8 recorded as a wall and too little room even for data-free int8: bf16, said so."""
    memory.record_wall(tmp_path, "tiny", "int8", room=2**50)
    runner = Runner(cache_dir=tmp_path, default_model="tiny", machine=OPENVINO_CPU)
    runner.generate(FAST)  # converted with room to spare
    monkeypatch.setenv(memory.LIMIT_VARIABLE, "300M")
    for made in (tmp_path / "openvino").glob("*/unet-int8-weights"):
        shutil.rmtree(made)
    fresh = Runner(cache_dir=tmp_path, default_model="tiny", machine=OPENVINO_CPU)
    result = fresh.generate(FAST)
    (warning,) = [w for w in result.warnings if "memory" in w]
    assert warning.startswith("Quality fast runs in bf16, not int8: quantizing the model to int8 ran out of memory")


def can_make_cgroup() -> bool:
    return os.geteuid() == 0 and (CGROUP_V1 / "memory.limit_in_bytes").is_file()


@pytest.fixture
def cgroup():
    """A memory cgroup (v1) of this test's own, removed after it; skipped where the machine cannot make one."""
    if not can_make_cgroup():
        pytest.skip("cannot make a memory cgroup here (needs root and cgroup v1's memory controller)")
    folder = CGROUP_V1 / f"dreamtray-test-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    yield folder
    for pid in (folder / "cgroup.procs").read_text().split():
        os.kill(int(pid), signal.SIGKILL)
    deadline = time.monotonic() + 10
    while (folder / "cgroup.procs").read_text().strip() and time.monotonic() < deadline:
        time.sleep(0.05)
    folder.rmdir()


def wait_for(job, condition, what: str) -> dict:
    seen = 0
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        events, over = job.wait(seen, timeout=1.0)
        seen += len(events)
        for event in events:
            if condition(event):
                return event
        if over:
            break
    pytest.fail(f"{what} never came: {job.events}")


def test_a_worker_killed_for_memory_is_reported_so_and_the_next_request_skips_that_step(tmp_path, cgroup):
    settings = WorkerSettings(cache_dir=str(tmp_path), default_model="tiny", ready_worker=False)
    manager = JobManager(settings)
    try:
        job = manager.submit(FAST)
        step = wait_for(job, lambda event: event.get("one_off"), "a one-off step")["one_off"]
        pid = manager.worker.pid
        # The worker, stopped, goes into a group that lets it allocate a few MB more: the step cannot finish.
        os.kill(pid, signal.SIGSTOP)
        (cgroup / "cgroup.procs").write_text(str(pid))
        (cgroup / "memory.limit_in_bytes").write_text(str(8 * 2**20))
        os.kill(pid, signal.SIGCONT)
        wait_for(job, lambda event: event["kind"] in ("done", "failed", "cancelled"), "the end of the job")
        assert job.status == "failed", job.events
        assert job.error.startswith("The engine ran out of memory: the system ended its worker"), job.error
        label = memory.STEP_LABELS[step["step"]]
        assert f"while {label} (tiny). The next request skips that step" in job.error
        assert "killed by SIGKILL" not in job.error

        again = manager.submit(FAST)
        wait_for(again, lambda event: event["kind"] in ("done", "failed", "cancelled"), "the end of the next job")
        assert again.status == "done", again.events
        assert not [e for e in again.events if (e.get("one_off") or {}).get("step") == step["step"]]
        warnings = [e["message"] for e in again.events if e["kind"] == "warning"]
        assert any(f"{label} ran out of memory before for tiny" in w for w in warnings), warnings
    finally:
        manager.shutdown()
