"""The engine service on loopback, through the real client: tokens, progress, cancel, crashes, idle unload."""

from __future__ import annotations

import base64
import io
import os
import re
import signal
import time

import httpx
import psutil
import pytest
from fixtures_engine import first_step, pixels, start_engine
from PIL import Image

from dreamtray.engine.client import EngineError, JobCancelled, JobFailed, LocalEngine
from dreamtray.engine.server.worker import WorkerSettings
from dreamtray.request import Request

SMALL = {"width": 64, "height": 64}
SLOW = {"width": 256, "height": 256, "steps": 40}


def raw(engine) -> httpx.Client:
    client = engine.client()
    return httpx.Client(
        base_url=client.url, headers={"Authorization": f"Bearer {engine.token_file.read_text().strip()}"}
    )


def test_token_file_is_private_and_required(engine):
    engine.health()
    assert oct(engine.token_file.stat().st_mode & 0o777) == "0o600"
    url = engine.client().url
    assert httpx.get(f"{url}/health").status_code == 401
    wrong = httpx.post(f"{url}/v1/jobs", json={"prompt": "x"}, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and "token" in wrong.json()["error"]["message"]
    assert url.startswith("http://127.0.0.1:")


def test_service_process_imports_no_torch(engine):
    pid = engine.health()["pid"]
    maps = open(f"/proc/{pid}/maps").read()
    assert "libtorch" not in maps


def test_generate_with_progress_events(engine):
    job = engine.submit(Request(prompt="a fox", seed=11, steps=3, **SMALL))
    kinds = [(e["kind"], e.get("step")) for e in job.events()]
    assert [step for kind, step in kinds if kind == "step"] == [1, 2, 3]
    assert kinds[-1][0] == "done"
    result = job.result()
    assert result.seeds == [11] and result.images[0].startswith(b"\x89PNG")
    again = engine.submit(Request(prompt="a fox", seed=11, steps=3, **SMALL)).result()
    assert pixels(again.images[0]) == pixels(result.images[0])


def test_malformed_and_out_of_range_requests_get_4xx_with_a_message(engine):
    with raw(engine) as http:
        cases = {
            "empty prompt": ({"prompt": "  "}, "prompt"),
            "huge width": ({"prompt": "x", "width": 100_000}, "width"),
            "bad steps": ({"prompt": "x", "steps": "many"}, "steps"),
            "unknown field": ({"prompt": "x", "colour": "red"}, "colour"),
        }
        for name, (body, field) in cases.items():
            response = http.post("/v1/jobs", json=body)
            assert response.status_code == 400, name
            assert field in response.json()["error"]["message"], name
        broken = http.post("/v1/jobs", content=b"{not json", headers={"content-type": "application/json"})
        assert broken.status_code == 400
        assert http.get("/v1/jobs/nope").status_code == 404


def test_openai_compatible_generation(engine):
    body = {
        "prompt": "a fox",
        "size": "64x64",
        "seed": 11,
        "steps": 3,
        "n": 1,
        "negative_prompt": "",
        "user": "ignored",
    }
    with raw(engine) as http:
        response = http.post("/v1/images/generations", json=body, timeout=60)
        assert response.status_code == 200, response.text
        data = response.json()
        png = base64.b64decode(data["data"][0]["b64_json"])
        assert data["seeds"] == [11] and isinstance(data["created"], int)
        reference = engine.submit(Request(prompt="a fox", seed=11, steps=3, **SMALL)).result()
        assert pixels(png) == pixels(reference.images[0])
        assert http.post("/v1/images/generations", json={"prompt": "x", "response_format": "url"}).status_code == 400
        assert http.post("/v1/images/generations", json={"prompt": "x", "size": "big"}).status_code == 400
        assert http.post("/v1/images/generations", json={"prompt": "x", "n": 0}).status_code == 400
        models = http.get("/v1/models").json()
        assert {"sd-turbo", "sdxl-turbo", "flux-schnell", "tiny"} <= {m["id"] for m in models["data"]}


def test_cancel_discards_the_job(engine):
    job = engine.submit(Request(prompt="slow", seed=1, **SLOW))
    first_step(job)
    job.cancel()
    with pytest.raises(JobCancelled):
        job.result()
    assert engine.submit(Request(prompt="after", seed=1, **SMALL)).result().images


def test_interrupt_keeps_the_image_as_far_as_it_got_and_makes_no_more(engine):
    long = {**SLOW, "steps": 150}  # the interrupt surely comes before the first image is done
    full = engine.submit(Request(prompt="slow", seed=5, count=1, **long)).result()
    job = engine.submit(Request(prompt="slow", seed=5, count=3, **long))
    first_step(job)
    queued = engine.submit(Request(prompt="queued", seed=1, **SMALL))
    queued.interrupt()  # it waits behind the running job: an interrupt leaves it to run
    job.interrupt()
    result = job.result()
    assert len(result.images) == 1 and result.seeds == [5], "the batch stopped after the image being made"
    assert any(re.fullmatch(r"Interrupted at step \d+ of \d+: the image is as far as it had got\.", w)
               for w in result.warnings), result.warnings
    assert Image.open(io.BytesIO(result.images[0])).size == (256, 256)
    assert pixels(result.images[0]) != pixels(full.images[0]), "fewer steps than the whole image had"
    assert queued.result().images and not any("Interrupted" in w for w in queued.result().warnings)


def test_worker_killed_mid_job_is_reported_and_the_next_request_succeeds(engine):
    job = engine.submit(Request(prompt="doomed", seed=1, **SLOW))
    first_step(job)
    worker_pid = engine.health()["worker_pid"]
    os.kill(worker_pid, signal.SIGKILL)
    with pytest.raises(JobFailed, match="killed by SIGKILL"):
        job.result()
    result = engine.submit(Request(prompt="next", seed=1, **SMALL)).result()
    assert result.images and engine.health()["worker_pid"] not in (None, worker_pid)


def test_idle_worker_exits_and_returns_its_memory(tmp_path, model_cache):
    local = start_engine(tmp_path, model_cache, idle_unload_seconds=1.0)
    try:
        local.submit(Request(prompt="x", seed=1, **SMALL)).result()
        worker_pid = local.health()["worker_pid"]
        assert psutil.Process(worker_pid).memory_info().rss > 100 * 2**20
        deadline = time.monotonic() + 20
        while psutil.pid_exists(worker_pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not psutil.pid_exists(worker_pid)
        assert local.health()["worker_pid"] is None and local.health()["loaded_model"] is None
        assert local.submit(Request(prompt="again", seed=1, **SMALL)).result().images, "a new worker starts on demand"
    finally:
        local.stop()


def test_after_an_unload_a_ready_worker_without_a_model_takes_the_next_job(tmp_path, model_cache):
    local = start_engine(tmp_path, model_cache, idle_unload_seconds=1.0)
    try:
        first = local.submit(Request(prompt="x", seed=1, **SMALL)).result()
        loaded_pid = local.health()["worker_pid"]
        loaded_rss = psutil.Process(loaded_pid).memory_info().rss
        ready = wait_for(lambda: local.health()["ready_worker_pid"], 30, "a ready worker after the idle unload")
        assert not psutil.pid_exists(loaded_pid) and ready != loaded_pid
        time.sleep(3)  # past a second idle time: a ready worker holds no model, so it does not retire
        assert psutil.pid_exists(ready) and local.health()["ready_worker_pid"] == ready
        assert psutil.Process(ready).memory_info().rss < loaded_rss
        again = local.submit(Request(prompt="x", seed=1, **SMALL)).result()
        assert local.health()["worker_pid"] == ready and local.health()["ready_worker_pid"] is None
        assert pixels(again.images[0]) == pixels(first.images[0])
        local.unload()  # an explicit unload leaves a ready worker too
        assert wait_for(lambda: local.health()["ready_worker_pid"], 30, "a ready worker after unload") != ready
        pid = local.health()["pid"]
        ready = local.health()["ready_worker_pid"]
        local.stop()
        assert not psutil.pid_exists(pid) and not psutil.pid_exists(ready), "stop ends the ready worker too"
    finally:
        local.stop()


def test_no_ready_worker_when_the_setting_is_off(tmp_path, model_cache):
    local = start_engine(tmp_path, model_cache, ready_worker=False)
    try:
        local.submit(Request(prompt="x", seed=1, **SMALL)).result()
        local.unload()
        time.sleep(1)
        assert local.health()["worker_pid"] is None and local.health()["ready_worker_pid"] is None
    finally:
        local.stop()


def wait_for(value, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if found := value():
            return found
        time.sleep(0.1)
    raise AssertionError(f"no {what} within {seconds} s")


def test_unload_now_and_stop_leave_no_process(tmp_path, model_cache):
    local = start_engine(tmp_path, model_cache)
    local.submit(Request(prompt="x", seed=1, **SMALL)).result()
    health = local.health()
    local.unload()
    assert not psutil.pid_exists(health["worker_pid"]) or psutil.Process(health["worker_pid"]).status() == "zombie"
    ready = local.health()["ready_worker_pid"]
    local.stop()
    assert not psutil.pid_exists(health["pid"])
    assert not psutil.pid_exists(ready) or psutil.Process(ready).status() == "zombie"
    assert not local.state_file.exists()


def test_the_local_engine_lets_as_many_jobs_wait_as_it_was_started_with(tmp_path, model_cache):
    settings = WorkerSettings(cache_dir=str(model_cache), default_model="tiny")
    local = LocalEngine(settings, tmp_path / "state", tmp_path / "token", exit_after_idle=600, max_queue=1)
    try:
        assert local.health()["max_queue"] == 1
        running = local.submit(Request(prompt="running", seed=1, **SLOW))
        first_step(running)
        waiting = local.submit(Request(prompt="waiting", seed=1, **SMALL))
        with pytest.raises(EngineError, match="1 jobs are already waiting"):
            local.submit(Request(prompt="one too many", seed=1, **SMALL))
        waiting.cancel()
        running.cancel()
        with pytest.raises(JobCancelled):
            running.result()
    finally:
        local.stop()
        local.close()
