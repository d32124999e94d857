"""The engine on Ray Serve (a real local Ray, started through the one helper): the same clients generate with it."""

from __future__ import annotations

import httpx
import psutil
import pytest
from fixtures_engine import pixels
from remote_helpers import ServeProcess, self_signed_certificate

from dreamtray.engine.client import JobCancelled, ServiceEngine
from dreamtray.request import Request
from dreamtray_plugins.remote.openai import OpenAIImages
from dreamtray_plugins.remote.transport import tls_verify

SMALL = {"width": 64, "height": 64, "steps": 2}


@pytest.fixture(scope="module")
def ray_server(tmp_path_factory):
    """`dreamtray serve --ray` over TLS: a local Ray (started through the one helper) serving two engine replicas."""
    root = tmp_path_factory.mktemp("ray")
    styles = root / "data" / "dreamtray" / "styles"
    styles.mkdir(parents=True)
    (styles / "mine.csv").write_text("name,prompt\nWatercolor,watercolor painting of {prompt}\n", encoding="utf-8")
    cert, key = self_signed_certificate(root)
    server = ServeProcess(
        root,
        "--ray",
        "--replicas",
        "2",
        "--replica-cpus",
        "0.5",
        "--tls-cert",
        str(cert),
        "--tls-key",
        str(key),
        scheme="https",
    )
    server.cert = str(cert)
    server.wait_ready(verify=tls_verify(server.cert), timeout=120)
    yield server
    ray_processes = psutil.Process(server.process.pid).children(recursive=True)
    server.stop()
    assert server.process.returncode == 0, server.log.read_text()
    _, alive = psutil.wait_procs(ray_processes, timeout=20)
    assert not alive, f"Ray processes left behind: {[p.name() for p in alive]}"


@pytest.fixture(scope="module")
def ray_url(ray_server):
    return ray_server.url


@pytest.fixture(scope="module")
def token(ray_server):
    return ray_server.token


@pytest.fixture(scope="module")
def cert(ray_server):
    return ray_server.cert


def test_service_client_generates_on_the_pool(ray_url, token, cert):
    engine = ServiceEngine(ray_url, token, verify=tls_verify(cert), timeout=120)
    try:
        assert engine.health()["backend"] == "ray" and engine.health()["replicas"] == 2
        jobs = [engine.submit(Request(prompt="a fox", seed=seed, **SMALL)) for seed in (7, 7, 8)]
        steps = [event["step"] for event in jobs[0].events() if event["kind"] == "step"]
        results = [job.result() for job in jobs]
        assert steps == [1, 2]
        assert all(result.images[0].startswith(b"\x89PNG") and result.model == "tiny" for result in results)
        assert pixels(results[0].images[0]) == pixels(results[1].images[0]), "same seed, same pixels on any replica"
        assert pixels(results[0].images[0]) != pixels(results[2].images[0])
        assert "tiny" in {model["id"] for model in engine.models()}
    finally:
        engine.close()


def test_openai_client_generates_on_the_pool(ray_url, token, cert):
    engine = OpenAIImages(
        {
            "url": ray_url,
            "api_key": token,
            "allow_plain_secret": True,
            "model": "tiny",
            "extra_fields": True,
            "timeout": 120,
            "verify": cert,
        }
    )
    try:
        result = engine.submit(Request(prompt="a fox", seed=7, **SMALL)).result()
        assert result.seeds == [7] and result.images[0].startswith(b"\x89PNG")
    finally:
        engine.close()


def test_the_pool_applies_the_serving_machines_styles(ray_url, token, cert):
    headers = {"Authorization": f"Bearer {token}"}
    body = {"prompt": "a fox", "model": "tiny", "size": "64x64", "seed": 3, "steps": 1, "style": "watercolor"}
    with httpx.Client(base_url=ray_url, headers=headers, verify=tls_verify(cert), timeout=120) as http:
        answer = http.post("/v1/images/generations", json=body)
        assert answer.status_code == 200, answer.text
        assert answer.json()["data"][0]["revised_prompt"] == "watercolor painting of a fox"
        refused = http.post("/v1/images/generations", json=body | {"style": "Watercolour"})
        assert refused.status_code == 400 and "the closest are 'Watercolor'" in refused.json()["error"]["message"]


def test_token_and_cancel_on_the_pool(ray_url, token, cert):
    assert ray_url.startswith("https://127.0.0.1:")
    assert httpx.get(f"{ray_url}/health", verify=tls_verify(cert)).status_code == 401
    assert (
        httpx.get(f"{ray_url}/health", verify=tls_verify(cert), headers={"Authorization": "Bearer wrong"}).status_code
        == 401
    )
    engine = ServiceEngine(ray_url, token, verify=tls_verify(cert), timeout=120)
    try:
        job = engine.submit(Request(prompt="slow", seed=1, width=256, height=256, steps=60))
        for event in job.events():
            if event["kind"] == "step":
                break
        job.cancel()
        with pytest.raises(JobCancelled):
            job.result()
    finally:
        engine.close()
