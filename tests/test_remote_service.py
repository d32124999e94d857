"""`dreamtray serve` on loopback with TLS, and a second dreamtray engine using it as its remote engine."""

from __future__ import annotations

import logging
import os
import socket

import httpx
import pytest
from click.testing import CliRunner
from fixtures_engine import pixels, start_engine
from remote_helpers import ServeProcess, free_port, self_signed_certificate

from dreamtray.cli.serve import is_loopback, serve_command
from dreamtray.engine.backends import FallbackEngine, engine_names, open_engine
from dreamtray.engine.client import EngineError, EngineUnavailable
from dreamtray.plugins import PluginHost
from dreamtray.request import Request
from dreamtray_plugins.remote.service import RemoteService
from dreamtray_plugins.remote.transport import tls_verify as trust

SMALL = {"width": 64, "height": 64, "steps": 2}
PROMPT = "a lighthouse at dusk, secret-prompt-words"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def remote(tmp_path_factory, certificate):
    """The 'GPU box': dreamtray serve over TLS with a token, a 1 MiB body limit and the default rate limit."""
    cert, key = certificate
    server = ServeProcess(
        tmp_path_factory.mktemp("box"),
        "--tls-cert",
        str(cert),
        "--tls-key",
        str(key),
        "--max-body-mb",
        "1",
        scheme="https",
    )
    server.wait_ready(verify=trust(str(cert)))
    yield server
    server.stop()


@pytest.fixture
def plugins(monkeypatch):
    monkeypatch.setenv("DREAMTRAY_PLUGINS", "remote")
    return PluginHost()


def remote_settings(remote, cert, **extra):
    return {
        "backend": "remote",
        "backends": {"remote": {"url": remote.url, "token_file": str(remote.token_file), "verify": str(cert)}},
        **extra,
    }


def test_off_loopback_refuses_to_start_without_a_token():
    result = CliRunner().invoke(serve_command, ["--host", "0.0.0.0", "--port", str(free_port())])
    assert result.exit_code == 2
    assert "Refusing to serve on 0.0.0.0 without a token" in result.output and "--token-file" in result.output
    half_tls = CliRunner().invoke(serve_command, ["--tls-cert", __file__, "--port", str(free_port())])
    assert half_tls.exit_code == 2 and "both --tls-cert and --tls-key" in half_tls.output
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.20") and not is_loopback("gpu-box")


def test_a_taken_port_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.setattr(logging.root, "handlers", list(logging.root.handlers))  # serve sets up logging
    monkeypatch.setattr(logging.root, "level", logging.root.level)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = CliRunner().invoke(serve_command, ["--port", str(port), "--token-file", str(tmp_path / "token")])
    assert result.exit_code == 1 and f"Cannot serve on 127.0.0.1:{port}: Address already in use" in result.output


def test_wrong_or_missing_token_and_untrusted_certificate_are_rejected(remote, certificate):
    cert, _ = certificate
    assert remote.url.startswith("https://127.0.0.1:")
    assert httpx.get(f"{remote.url}/health", verify=trust(str(cert))).status_code == 401
    wrong = httpx.post(
        f"{remote.url}/v1/jobs",
        json={"prompt": "x"},
        verify=trust(str(cert)),
        headers={"Authorization": "Bearer wrong"},
    )
    assert wrong.status_code == 401 and "token" in wrong.json()["error"]["message"]
    with pytest.raises(EngineUnavailable, match="refused the token"):
        RemoteService(remote.url, "wrong", verify=trust(str(cert))).health()
    with pytest.raises(EngineUnavailable, match="cannot be reached.*CERTIFICATE_VERIFY_FAILED"):
        RemoteService(remote.url, remote.token).health()  # the system's CAs do not know this certificate
    with pytest.raises(httpx.TransportError):
        httpx.get(remote.url.replace("https:", "http:") + "/health")  # no plain HTTP on a TLS port
    stop = httpx.post(
        f"{remote.url}/v1/shutdown", verify=trust(str(cert)), headers={"Authorization": f"Bearer {remote.token}"}
    )
    assert stop.status_code == 403 and "not stopped by its clients" in stop.json()["error"]["message"]


def test_a_second_engine_uses_the_remote_one(remote, certificate, plugins, tmp_path, model_cache):
    cert, _ = certificate
    local = start_engine(tmp_path, model_cache)
    chosen = open_engine(remote_settings(remote, cert), plugins, lambda: local)
    try:
        assert isinstance(chosen, FallbackEngine) and chosen.name == "remote"
        job = chosen.submit(Request(prompt=PROMPT, seed=5, **SMALL))
        steps = [event["step"] for event in job.events() if event["kind"] == "step"]
        result = job.result()
        assert steps == [1, 2] and result.seeds == [5] and result.images[0].startswith(b"\x89PNG")
        assert chosen.health()["loaded_model"] == "tiny"
        assert {"tiny", "sd-turbo"} <= {model["id"] for model in chosen.models()}
        assert not local.state_file.exists(), "the local engine was never started"
    finally:
        chosen.close()


def test_the_same_request_on_the_fallback_gives_the_same_pixels(remote, certificate, plugins, engine):
    cert, _ = certificate
    reference = RemoteService.from_settings(remote_settings(remote, cert)["backends"]["remote"])
    expected = reference.submit(Request(prompt="fox", seed=9, **SMALL)).result()
    told: list[str] = []
    down = {
        "backend": "remote",
        "fallback_to_local": True,
        "backends": {"remote": {"url": f"https://127.0.0.1:{free_port()}", "token_file": str(remote.token_file)}},
    }
    chosen = open_engine(down, plugins, lambda: engine, warn=told.append)
    job = chosen.submit(Request(prompt="fox", seed=9, **SMALL))
    kinds = [event["kind"] for event in job.events()]
    result = job.result()
    assert kinds[0] == "warning" and kinds[-1] == "done"
    assert len(told) == 1 and "cannot be reached" in told[0] and "This machine's engine takes the job" in told[0]
    assert result.warnings[0] == told[0]
    assert pixels(result.images[0]) == pixels(expected.images[0])
    reference.close()


def test_without_fallback_the_user_is_told_how_to_allow_it(remote, plugins, engine):
    down = {
        "backend": "remote",
        "backends": {"remote": {"url": f"http://127.0.0.1:{free_port()}", "token_file": str(remote.token_file)}},
    }
    chosen = open_engine(down, plugins, lambda: engine)
    with pytest.raises(EngineUnavailable, match="cannot be reached.*engine.fallback_to_local = true"):
        chosen.submit(Request(prompt="x", seed=1, **SMALL))


def test_a_job_level_failure_to_reach_an_openai_engine_falls_back_too(plugins, engine, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    down = {
        "backend": "openai",
        "fallback_to_local": True,
        "backends": {"openai": {"url": f"http://127.0.0.1:{free_port()}"}},
    }
    told: list[str] = []
    chosen = open_engine(down, plugins, lambda: engine, warn=told.append)
    result = chosen.submit(Request(prompt="x", seed=3, **SMALL)).result()
    assert result.images and result.seeds == [3]
    assert "OpenAI-compatible engine" in told[0] and "cannot be reached" in told[0]


def test_engine_choice_errors(plugins, engine, monkeypatch):
    assert engine_names(plugins) == ["local", "a1111", "openai", "remote"]
    assert open_engine({}, plugins, lambda: engine) is engine
    with pytest.raises(EngineError, match="no engine named 'nope'.*local, a1111, openai, remote"):
        open_engine({"backend": "nope"}, plugins, lambda: engine)
    monkeypatch.delenv("DREAMTRAY_REMOTE_TOKEN", raising=False)
    with pytest.raises(EngineError, match="needs a url"):
        open_engine({"backend": "remote"}, plugins, lambda: engine)


def test_body_size_limit(remote, certificate):
    cert, _ = certificate
    headers = {"Authorization": f"Bearer {remote.token}", "content-type": "application/json"}
    big = b'{"prompt": "' + b"x" * (2 * 2**20) + b'"}'
    with httpx.Client(base_url=remote.url, verify=trust(str(cert)), headers=headers) as http:
        declared = http.post("/v1/jobs", content=big)
        streamed = http.post("/v1/jobs", content=iter([big[: 2**20], big[2**20 :]]))  # chunked: no length given
    for response in (declared, streamed):
        assert response.status_code == 413
        assert "larger than the 1 MiB" in response.json()["error"]["message"]


def test_rate_limit_per_token_with_retry_after(tmp_path):
    server = ServeProcess(tmp_path, "--rate-limit", "3")
    try:
        server.wait_ready()  # one request of the three
        good = {"Authorization": f"Bearer {server.token}"}
        answers = [httpx.get(f"{server.url}/v1/models", headers=good) for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 429]
        assert 1 <= int(answers[-1].headers["retry-after"]) <= 60 and "at most 3 a minute" in answers[-1].text
        assert httpx.get(f"{server.url}/v1/models").status_code == 401, "counted apart from the token's requests"
        delays: list[float] = []
        client = RemoteService(server.url, server.token, sleep=delays.append)
        with pytest.raises(EngineUnavailable, match="rate-limiting"):
            client.models()
        assert len(delays) == 3 and all(1 <= delay <= 60 for delay in delays)
    finally:
        server.stop()


@pytest.mark.parametrize("log_prompts", [False, True])
def test_the_log_holds_no_token_and_prompts_only_when_asked(tmp_path, log_prompts):
    server = ServeProcess(tmp_path, *(["--log-prompts"] if log_prompts else []))
    try:
        server.wait_ready()
        client = RemoteService(server.url, server.token)
        job = client.submit(Request(prompt=PROMPT, negative_prompt="blurry-secret", seed=1, **SMALL))
        job.cancel()
        httpx.get(f"{server.url}/v1/models", headers={"Authorization": "Bearer guessed-token-123"})
        client.close()
    finally:
        server.stop()
    log = server.log.read_text()
    assert f"job {job.id} queued" in log and "POST /v1/jobs -> 202" in log and "GET /v1/models -> 401" in log
    assert server.token not in log and "guessed-token-123" not in log
    assert (PROMPT in log) is log_prompts and ("blurry-secret" in log) is log_prompts
    assert ("prompt=<" in log) is not log_prompts


def test_token_file_is_created_private(tmp_path):
    server = ServeProcess(tmp_path)
    try:
        server.wait_ready()
        assert oct(os.stat(server.token_file).st_mode & 0o777) == "0o600" and len(server.token) >= 32
    finally:
        server.stop()
