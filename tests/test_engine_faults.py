"""The engine under real faults: a stopped (SIGSTOP) worker or service, stop during a job, two services
racing for the state file, a full queue. Real processes and signals throughout; nothing waits forever."""

from __future__ import annotations

import json
import os
import signal
import threading

import httpx
import psutil
import pytest
from fixtures_engine import first_step, process_gone, start_engine

from dreamtray.engine.client import (
    EngineError,
    EngineUnavailable,
    JobCancelled,
    JobFailed,
    ServiceEngine,
    ServiceJob,
)
from dreamtray.engine.settings import QUEUE_LENGTH
from dreamtray.request import Request

SMALL = {"width": 64, "height": 64, "steps": 2}
SLOW = {"width": 256, "height": 256, "steps": 60}


@pytest.fixture
def stalling_engine(tmp_path, model_cache):
    """A local engine whose watchdog ends a job after 3 s without progress (9 s while it starts). Its jobs run on
    torch: a one-off OpenVINO conversion of the fast quality can take longer than that on a loaded machine."""
    local = start_engine(tmp_path, model_cache, stall_seconds=3.0, overrides={"quality": "balanced"})
    yield local
    local.stop()


def test_a_stopped_worker_ends_its_job_with_a_message_and_the_queue_moves_on(stalling_engine):
    job = stalling_engine.submit(Request(prompt="frozen", seed=1, **SLOW))
    first_step(job)
    worker = stalling_engine.health()["worker_pid"]
    os.kill(worker, signal.SIGSTOP)
    waiting = stalling_engine.submit(Request(prompt="next in line", seed=2, **SMALL))
    assert stalling_engine.unload() is False, "an unload does not wait on the stuck job: it follows it"
    with pytest.raises(JobFailed) as failed:
        job.result()
    message = str(failed.value)
    assert "no progress for 3 s" in message and f"process {worker}" in message and "engine.stall_seconds" in message
    assert process_gone(worker), "the stuck worker was killed"
    assert waiting.result().images[0].startswith(b"\x89PNG"), "the job queued behind it got its image"
    assert stalling_engine.health()["worker_pid"] not in (None, worker)


def test_the_client_gives_up_on_a_running_job_that_only_sends_keep_alives(tmp_path, model_cache):
    local = start_engine(tmp_path, model_cache, stall_seconds=600.0)  # the service's watchdog stays out of it
    try:
        job = local.submit(Request(prompt="frozen", seed=1, **SLOW))
        first_step(job)
        worker = local.health()["worker_pid"]
        os.kill(worker, signal.SIGSTOP)
        impatient = ServiceEngine(local.client().url, local.token_file.read_text().strip(), silence_limit=2.0)
        with pytest.raises(EngineUnavailable, match="sent no progress on job .* for 2 s"):
            for _ in ServiceJob(impatient, job.id).events():
                pass
        impatient.close()
    finally:
        local.stop()
    assert process_gone(worker)


def test_engine_stop_during_a_job_cancels_it_and_leaves_no_process(tmp_path, model_cache):
    local = start_engine(tmp_path, model_cache)
    job = local.submit(Request(prompt="long", seed=1, **SLOW))
    first_step(job)
    health = local.health()
    family = [psutil.Process(health["pid"]), *psutil.Process(health["pid"]).children(recursive=True)]
    assert local.stop() is True
    assert all(process_gone(process.pid) for process in family), [p.pid for p in family if not process_gone(p.pid)]
    assert not local.state_file.exists()
    assert local.running() is None and local.stop() is False


def test_engine_stop_ends_a_service_that_no_longer_answers(tmp_path, model_cache):
    local = start_engine(tmp_path, model_cache)
    local.submit(Request(prompt="warm", seed=1, **SMALL)).result()
    health = local.health()
    os.kill(health["pid"], signal.SIGSTOP)
    assert local.stop() is True
    assert process_gone(health["pid"]) and process_gone(health["worker_pid"]), "the worker follows its service"
    assert not local.state_file.exists()


def test_an_old_service_leaves_a_newer_services_state_file_alone(tmp_path, model_cache):
    old = start_engine(tmp_path, model_cache)
    old_client = old.client()
    old_pid = old_client.health()["pid"]
    old.state_file.unlink()  # as when the old one stopped answering and a new generate started another
    new = start_engine(tmp_path, model_cache)
    new_pid = new.health()["pid"]
    assert new_pid != old_pid
    old_client.shutdown()
    psutil.Process(old_pid).wait(timeout=30)
    assert json.loads(new.state_file.read_text())["pid"] == new_pid, "the old service removed only its own"
    assert new.running() is not None
    new.stop()
    assert process_gone(new_pid)


def test_a_full_queue_says_when_to_try_again(tmp_path, model_cache):
    local = start_engine(tmp_path, model_cache, stall_seconds=600.0)
    try:
        blocker = local.submit(Request(prompt="blocker", seed=1, **SLOW))
        first_step(blocker)
        os.kill(local.health()["worker_pid"], signal.SIGSTOP)
        client = local.client()
        answers = [
            client.http.post("/v1/jobs", json={"prompt": f"filler {i}", **SMALL}) for i in range(QUEUE_LENGTH + 1)
        ]
        assert [answer.status_code for answer in answers] == [202] * QUEUE_LENGTH + [429], "the one default"
        assert int(answers[-1].headers["retry-after"]) > 0
        assert "already waiting" in answers[-1].json()["error"]["message"]
        with pytest.raises(EngineError, match="already waiting"):
            local.submit(Request(prompt="one more", **SMALL))
    finally:
        local.stop()


def test_stop_while_a_client_follows_the_job(tmp_path, model_cache):
    local = start_engine(tmp_path, model_cache)
    job = local.submit(Request(prompt="followed", seed=1, **SLOW))
    first_step(job)
    outcome: list[BaseException] = []

    def follow() -> None:
        try:
            job.result()
        except BaseException as exc:  # noqa: BLE001 - the test looks at what the follower saw
            outcome.append(exc)

    follower = threading.Thread(target=follow)
    follower.start()
    local.stop()
    follower.join(timeout=60)
    assert not follower.is_alive()
    assert outcome and isinstance(outcome[0], (JobCancelled, EngineUnavailable)), outcome
    message = str(outcome[0])
    assert "engine was stopped" in message or "it was stopped (`dreamtray engine stop`)" in message, message
    assert "Error" not in message, "no exception class names"


@pytest.mark.parametrize("seen", ["answering", "not answering"])
def test_a_job_followed_while_the_engine_is_stopped_says_it_was_stopped(tmp_path, model_cache, seen):
    """Whether the service sends its `cancelled` event first or is killed, the follower hears "stopped"."""
    local = start_engine(tmp_path, model_cache)
    job = local.submit(Request(prompt="followed", seed=1, **SLOW))
    first_step(job)
    if seen == "not answering":
        os.kill(local.health()["pid"], signal.SIGSTOP)
    outcome: list[BaseException] = []
    follower = threading.Thread(target=lambda: outcome.append(_raised(job.result)))
    follower.start()
    assert local.stop() is True
    follower.join(timeout=60)
    assert not follower.is_alive() and outcome
    message = str(outcome[0])
    assert "was stopped (`dreamtray engine stop`" in message, message
    assert "ConnectError" not in message and "cannot be reached" not in message, message


def _raised(call) -> BaseException | None:
    try:
        call()
    except BaseException as exc:  # noqa: BLE001 - the test looks at what the follower saw
        return exc
    return None


def test_serving_on_loopback_checks_the_host_header_and_guards_openapi(engine):
    url = engine.client().url
    token = {"Authorization": f"Bearer {engine.token_file.read_text().strip()}"}
    rebinding = httpx.get(f"{url}/health", headers={**token, "Host": "attacker.example:8080"})
    assert rebinding.status_code == 403 and "Host" in rebinding.json()["error"]["message"]
    for host in ("localhost", "127.0.0.1:1234", "[::1]:99"):
        assert httpx.get(f"{url}/health", headers={**token, "Host": host}).status_code == 200, host
    assert httpx.get(f"{url}/openapi.json").status_code == 401
    schema = httpx.get(f"{url}/openapi.json", headers=token)
    assert schema.status_code == 200 and "/v1/jobs" in schema.json()["paths"]
