"""Engine fixtures shared by the test modules: the tiny model, an in-process runner, a running service."""

from __future__ import annotations

import io
from pathlib import Path

import psutil
import pytest
from PIL import Image

from dreamtray.engine.client import LocalEngine
from dreamtray.engine.server.hardware import Machine
from dreamtray.engine.server.runner import Runner
from dreamtray.engine.settings import WorkerSettings

CPU_MACHINE = Machine(cpu_cores=2, ram_gb=24, ram_free_gb=20)


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def tiny_folder(model_cache) -> Path:
    from dreamtray.engine.server.tiny import ensure_tiny_folder

    return ensure_tiny_folder(model_cache)


@pytest.fixture(scope="session")
def runner(model_cache) -> Runner:
    return Runner(cache_dir=model_cache, default_model="tiny", machine=CPU_MACHINE)


def start_engine(root: Path, model_cache: Path, **settings) -> LocalEngine:
    worker = WorkerSettings(cache_dir=str(model_cache), default_model="tiny", **settings)
    return LocalEngine(worker, state_dir=root / "state", token_file=root / "token", exit_after_idle=600)


@pytest.fixture(scope="session")
def engine(tmp_path_factory, model_cache):
    local = start_engine(tmp_path_factory.mktemp("engine"), model_cache)
    yield local
    local.stop()
    local.close()


def pixels(png: bytes) -> bytes:
    return Image.open(io.BytesIO(png)).convert("RGB").tobytes()


def first_step(job) -> None:
    """Follow `job` until its first denoising step has been reported; a job that ends before it fails the test."""
    last = None
    for last in job.events():
        if last["kind"] == "step":
            return
    raise AssertionError(f"job {job.id} ended before its first step; its last event: {last}")


def process_gone(pid: int) -> bool:
    """Whether process `pid` has ended (a zombie counts: it runs no more)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
