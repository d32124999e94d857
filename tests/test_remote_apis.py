"""The OpenAI-compatible and AUTOMATIC1111 engines against small servers that play those public APIs.

The servers generate for real with the engine's Runner on the tiny model; they record what the client sent
and can be told to answer with the errors those APIs give (401, 429 with Retry-After, 500, slow answers).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import threading
import time

import a1111_schema
import pytest
from fastapi import FastAPI
from fastapi import Request as HttpRequest
from fastapi.responses import JSONResponse
from fixtures_engine import pixels
from PIL import Image
from pydantic import ValidationError
from remote_helpers import truncating_server, uvicorn_server

from dreamtray.engine.client import EngineError, EngineUnavailable, JobCancelled, JobFailed
from dreamtray.engine.server.runner import GenerationCancelled as RunnerCancelled
from dreamtray.request import Request
from dreamtray_plugins.remote.a1111 import A1111
from dreamtray_plugins.remote.openai import OpenAIImages

SMALL = {"width": 64, "height": 64}


class Scripted:
    """Answers to give before the real one: (status, headers, body, delay)."""

    def __init__(self):
        self.queue: list[tuple[int, dict, dict, float]] = []
        self.received: list[tuple[str, dict, dict]] = []

    async def next_error(self, http: HttpRequest) -> JSONResponse | None:
        body = await http.json() if http.method == "POST" and await http.body() else {}
        self.received.append((http.url.path, dict(http.headers), body))
        if not self.queue:
            return None
        status, headers, answer, delay = self.queue.pop(0)
        await asyncio.sleep(delay)
        return JSONResponse(answer, status_code=status, headers=headers)


SCHEDULE_TYPES = {"karras": "Karras", "exponential": "Exponential", "beta": "Beta"}
"""A1111 API schedule labels -> the schedule types the test server's runner applies."""


def b64png(png: bytes) -> str:
    return base64.b64encode(png).decode()


def openai_app(runner, script: Scripted) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/images/generations")
    async def generations(http: HttpRequest):
        if (error := await script.next_error(http)) is not None:
            return error
        body = script.received[-1][2]
        width, height = (int(side) for side in body.get("size", "64x64").split("x"))
        request = Request(
            prompt=body["prompt"],
            width=width,
            height=height,
            steps=body.get("steps", 2),
            seed=body.get("seed", 0),
            count=body.get("n", 1),
        )
        result = await asyncio.to_thread(runner.generate, request)
        return {"created": int(time.time()), "data": [{"b64_json": b64png(png)} for png in result.images]}

    @app.get("/v1/models")
    async def models(http: HttpRequest):
        return await script.next_error(http) or {"object": "list", "data": [{"id": "sd-test", "object": "model"}]}

    return app


class A1111State:
    def __init__(self):
        self.step, self.steps, self.job_no, self.jobs = 0, 0, 0, 0
        self.interrupted = threading.Event()


def a1111_app(runner, script: Scripted, state: A1111State) -> FastAPI:
    app = FastAPI()

    async def generate(http: HttpRequest):
        if (error := await script.next_error(http)) is not None:
            return error
        body = script.received[-1][2]
        schema = a1111_schema.Img2Img if http.url.path.endswith("img2img") else a1111_schema.Txt2Img
        try:
            schema.model_validate(body)
        except ValidationError as exc:
            return JSONResponse({"detail": exc.errors(include_url=False, include_context=False)}, status_code=422)
        if body.get("sampler_name") not in (None, *a1111_schema.SAMPLERS):
            return JSONResponse({"detail": "Sampler not found"}, status_code=404)
        if body.get("scheduler") not in (None, *a1111_schema.SCHEDULERS):
            return JSONResponse({"detail": "Scheduler not found"}, status_code=404)
        init = body.get("init_images")
        state.interrupted.clear()
        state.steps, state.jobs, state.step, state.job_no = body["steps"], body["n_iter"], 0, 0

        def progress(event):
            if event["kind"] == "step":
                state.job_no, state.step = divmod(event["step"], body["steps"])

        def stopped() -> bool:
            time.sleep(0.05)  # slow enough for progress to be seen
            return state.interrupted.is_set()

        request = Request(
            prompt=body["prompt"],
            negative_prompt=body["negative_prompt"],
            seed=body["seed"],
            steps=body["steps"],
            guidance=body["cfg_scale"],
            width=body["width"],
            height=body["height"],
            count=body["n_iter"],
            sampler=" ".join(
                part for part in (body.get("sampler_name"), SCHEDULE_TYPES.get(body.get("scheduler"))) if part
            )
            or None,
            init_image=base64.b64decode(init[0]) if init else None,
            strength=body.get("denoising_strength", 0.6),
        )
        try:
            result = await asyncio.to_thread(runner.generate, request, progress, stopped)
        except RunnerCancelled:
            return {"images": [], "parameters": body, "info": "{}"}
        info = {
            "seed": result.seeds[0],
            "all_seeds": result.seeds,
            "sd_model_name": "tiny",
            "sampler_name": result.sampler,
        }
        return {"images": [b64png(png) for png in result.images], "parameters": body, "info": json.dumps(info)}

    app.post("/sdapi/v1/txt2img")(generate)
    app.post("/sdapi/v1/img2img")(generate)

    @app.get("/sdapi/v1/progress")
    async def progress():
        return {
            "progress": 0.0,
            "eta_relative": 0.0,
            "current_image": None,
            "textinfo": None,
            "state": {
                "sampling_step": state.step,
                "sampling_steps": state.steps,
                "job_no": state.job_no,
                "job_count": state.jobs,
                "interrupted": state.interrupted.is_set(),
                "skipped": False,
            },
        }

    @app.post("/sdapi/v1/interrupt")
    async def interrupt(http: HttpRequest):
        script.received.append((http.url.path, dict(http.headers), {}))
        state.interrupted.set()
        return {}

    @app.get("/sdapi/v1/options")
    async def options(http: HttpRequest):
        return await script.next_error(http) or {"sd_model_checkpoint": "tiny.safetensors [abc123]"}

    @app.get("/sdapi/v1/sd-models")
    async def sd_models():
        return [
            {
                "title": "tiny.safetensors [abc123]",
                "model_name": "tiny",
                "hash": "abc123",
                "filename": "tiny.safetensors",
            }
        ]

    @app.post("/sdapi/v1/unload-checkpoint")
    async def unload(http: HttpRequest):
        script.received.append((http.url.path, dict(http.headers), {}))
        return {}

    return app


@pytest.fixture(scope="module")
def warm_runner(runner):
    runner.ensure_loaded("tiny")  # the servers answer at once, as a running server would
    return runner


@pytest.fixture(scope="module")
def openai_server(warm_runner):
    runner = warm_runner
    script = Scripted()
    with uvicorn_server(openai_app(runner, script)) as url:
        yield url, script


@pytest.fixture(scope="module")
def a1111_server(warm_runner):
    runner = warm_runner
    script, state = Scripted(), A1111State()
    with uvicorn_server(a1111_app(runner, script, state)) as url:
        yield url, script, state


@pytest.fixture
def openai(openai_server, monkeypatch):
    url, script = openai_server
    script.queue.clear()
    script.received.clear()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    sleeps: list[float] = []
    engine = OpenAIImages({"url": url, "model": "sd-test", "timeout": 30}, sleep=sleeps.append)
    yield engine, script, sleeps
    engine.close()


@pytest.fixture
def a1111(a1111_server):
    url, script, state = a1111_server
    script.queue.clear()
    script.received.clear()
    engine = A1111({"url": url, "progress_interval": 0.02})
    yield engine, script, state
    engine.close()


def size_of(png: bytes) -> tuple[int, int]:
    return Image.open(io.BytesIO(png)).size


def test_openai_sends_the_api_shape_and_returns_pngs(openai):
    engine, script, _ = openai
    result = engine.submit(Request(prompt="a red kite", seed=4, count=2, **SMALL)).result()
    path, headers, body = script.received[-1]
    assert path == "/v1/images/generations" and headers["authorization"] == "Bearer sk-from-env"
    assert body == {"model": "sd-test", "prompt": "a red kite", "n": 2, "size": "64x64", "response_format": "b64_json"}
    assert len(result.images) == 2 and all(size_of(png) == (64, 64) for png in result.images)
    assert result.model == "sd-test" and "ignores: seed" in result.warnings[0]
    engine.model = "gpt-image-1"
    engine.submit(Request(prompt="a red kite", **SMALL)).result()
    assert "response_format" not in script.received[-1][2], "gpt-image models refuse the field"
    assert engine.health()["status"] == "ok" and engine.models()[0]["id"] == "sd-test"


def test_openai_extra_fields_reach_servers_that_read_them(openai, runner):
    engine, script, _ = openai
    engine.extra_fields = True
    result = engine.submit(Request(prompt="a red kite", seed=8, steps=2, **SMALL)).result()
    assert script.received[-1][2]["seed"] == 8 and script.received[-1][2]["steps"] == 2 and not result.warnings
    direct = runner.generate(Request(prompt="a red kite", seed=8, steps=2, **SMALL))
    assert pixels(result.images[0]) == pixels(direct.images[0])


@pytest.mark.parametrize(
    "answer, error, message",
    [
        (
            (401, {}, {"error": {"message": "Incorrect API key provided: sk-bad", "type": "invalid_request_error"}}, 0),
            EngineUnavailable,
            r"refused the credentials \(HTTP 401: Incorrect API key provided",
        ),
        (
            (
                500,
                {},
                {
                    "error": {
                        "message": "The server had an error while processing your request.",
                        "type": "server_error",
                    }
                },
                0,
            ),
            JobFailed,
            r"failed \(HTTP 500: The server had an error",
        ),
        (
            (
                429,
                {"retry-after": "3600"},
                {"error": {"message": "Rate limit reached for images", "type": "requests"}},
                0,
            ),
            EngineUnavailable,
            r"rate-limiting requests \(HTTP 429: Rate limit reached for images\); it asks to wait 3600 s",
        ),
        ((200, {}, {}, 8.0), EngineUnavailable, r"did not answer within 0.5 s"),
    ],
    ids=["401", "500", "429-too-long", "timeout"],
)
def test_openai_errors_are_worded_for_the_user(openai, answer, error, message):
    engine, script, _ = openai
    engine = OpenAIImages({"url": engine.api.url, "model": "sd-test", "timeout": 0.5})
    script.queue.append(answer)
    job = engine.submit(Request(prompt="x", **SMALL))
    with pytest.raises(error, match=message):
        job.result()
    assert [event["kind"] for event in job.events()][-1] == "failed"


def test_openai_waits_out_429_then_succeeds(openai):
    engine, script, sleeps = openai
    limited = (429, {"retry-after": "2"}, {"error": {"message": "Rate limit reached", "type": "requests"}}, 0)
    script.queue.extend([limited, limited])
    result = engine.submit(Request(prompt="x", **SMALL)).result()
    assert result.images and sleeps == [2.0, 2.0] and len(script.received) == 3


@pytest.mark.parametrize(
    "body, declared, error, message",
    [
        (
            b'{"data": [{"b64_json": "iVBOR',
            4000,
            EngineUnavailable,
            "closed the connection before the whole answer arrived",
        ),
        (b'{"data": [{"b64_json": "iVBOR', None, EngineError, "incomplete or malformed answer"),
        (b'{"data": [{"b64_json": "iVBORw0KGgoAAAAN"}], "x": "', None, EngineError, "incomplete or malformed answer"),
        (b'{"data": [{"b64_json": "iVBORw0KGgoAAA"}]}', None, EngineError, "not valid base64"),
        (b'{"data": [{"url": "https://example.invalid/x.png"}]}', None, EngineError, "without b64_json images"),
    ],
    ids=["cut-connection", "cut-json", "cut-json-2", "cut-base64", "url-only"],
)
def test_truncated_or_odd_bodies(monkeypatch, body, declared, error, message):
    monkeypatch.setenv("OPENAI_API_KEY", "sk")
    with truncating_server(body, declared or len(body)) as url:
        engine = OpenAIImages({"url": url, "timeout": 5})
        with pytest.raises(error, match=message):
            engine.submit(Request(prompt="x", **SMALL)).result()
        engine.close()


def test_unreachable_openai_engine(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk")
    engine = OpenAIImages({"url": "http://127.0.0.1:9"})
    with pytest.raises(EngineUnavailable, match=r"OpenAI-compatible engine at http://127.0.0.1:9 cannot be reached"):
        engine.submit(Request(prompt="x", **SMALL)).result()
    with pytest.raises(EngineError, match="does not do image-to-image"):
        engine.submit(Request(prompt="x", init_image=b"\x89PNG", **SMALL))


class MemoryKeyring:
    """A keyring backend in memory (set with keyring.set_keyring)."""

    def __new__(cls):
        from keyring.backend import KeyringBackend

        class Backend(KeyringBackend):
            priority = 1

            def __init__(self):
                super().__init__()
                self.store: dict[tuple[str, str], str] = {}

            def get_password(self, service, username):
                return self.store.get((service, username))

            def set_password(self, service, username, password):
                self.store[(service, username)] = password

            def delete_password(self, service, username):
                self.store.pop((service, username), None)

        return Backend()


def test_api_key_from_keyring_never_from_plain_config_unless_insisted(openai_server, monkeypatch):
    import keyring

    url, script = openai_server
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    saved = keyring.get_keyring()
    keyring.set_keyring(MemoryKeyring())
    try:
        with pytest.raises(
            EngineError,
            match=r"No API key for the openai engine: set the environment variable OPENAI_API_KEY.*keyring set dreamtray openai",
        ):
            OpenAIImages({"url": url})
        keyring.set_password("dreamtray", "openai", "sk-from-keyring")
        engine = OpenAIImages({"url": url})
        engine.health()
        assert script.received[-1][1]["authorization"] == "Bearer sk-from-keyring"
        with pytest.raises(EngineError, match="written in the config file in plain text.*allow_plain_secret = true"):
            OpenAIImages({"url": url, "api_key": "sk-plain"})
        insisted = OpenAIImages({"url": url, "api_key": "sk-plain", "allow_plain_secret": True})
        insisted.health()
        assert script.received[-1][1]["authorization"] == "Bearer sk-plain"
    finally:
        keyring.set_keyring(saved)


def test_a1111_txt2img_shape_progress_and_pixels(a1111, runner):
    engine, script, _ = a1111
    request = Request(
        prompt="a red kite", negative_prompt="fog", seed=21, steps=4, guidance=5.0, sampler="Euler a", **SMALL
    )
    job = engine.submit(request)
    steps = [event["step"] for event in job.events() if event["kind"] == "step"]
    result = job.result()
    path, _, body = script.received[-1]
    assert path == "/sdapi/v1/txt2img"
    assert {
        key: body[key]
        for key in (
            "prompt",
            "negative_prompt",
            "seed",
            "steps",
            "cfg_scale",
            "width",
            "height",
            "n_iter",
            "sampler_name",
            "send_images",
            "save_images",
        )
    } == {
        "prompt": "a red kite",
        "negative_prompt": "fog",
        "seed": 21,
        "steps": 4,
        "cfg_scale": 5.0,
        "width": 64,
        "height": 64,
        "n_iter": 1,
        "sampler_name": "Euler a",
        "send_images": True,
        "save_images": False,
    }
    assert steps and steps == sorted(steps) and steps[-1] <= 4, steps
    assert result.seeds == [21] and result.model == "tiny" and result.sampler == "Euler a"
    direct = runner.generate(request)
    assert pixels(result.images[0]) == pixels(direct.images[0])
    assert engine.health()["loaded_model"].startswith("tiny") and engine.models()[0]["name"] == "tiny"
    engine.unload()
    assert script.received[-1][0] == "/sdapi/v1/unload-checkpoint"


@pytest.mark.parametrize(
    ("sampler", "sent"),
    [
        ("dpm++ 2m karras", {"sampler_name": "DPM++ 2M", "scheduler": "karras"}),
        ("EulerAncestralDiscreteScheduler", {"sampler_name": "Euler a", "scheduler": "automatic"}),
        ("LMS Exponential", {"sampler_name": "LMS", "scheduler": "exponential"}),
    ],
)
def test_a1111_gets_the_shape_a1111_sampler_names_and_keeps_the_checkpoint(a1111_server, sampler, sent):
    url, script, _ = a1111_server
    engine = A1111({"url": url, "native_size": 96})
    job = engine.submit(Request(prompt="a kite", aspect=1.5, sampler=sampler, model="tiny", steps=1, seed=2))
    result = job.result()
    body = script.received[-1][2]
    assert (body["width"], body["height"]) == (120, 80) == Image.open(io.BytesIO(result.images[0])).size
    assert {key: body[key] for key in sent} == sent, "A1111's own names: it answers 404 to others"
    assert body["override_settings"] == {"sd_model_checkpoint": "tiny"}
    assert body["override_settings_restore_afterwards"] is False, "the checkpoint is swapped once, not twice"
    assert (result.request.width, result.request.height) == (120, 80)
    assert result.sampler == Request(prompt="x", sampler=sampler).sampler
    engine.close()


def test_a1111_refuses_a_scheduler_class_it_has_no_sampler_for(a1111):
    engine, _, _ = a1111
    with pytest.raises(EngineError, match="A1111 has no sampler for the diffusers scheduler 'DEISMultistepScheduler'"):
        engine.submit(Request(prompt="x", sampler="DEISMultistepScheduler", **SMALL)).result()


def test_a1111_img2img(a1111):
    engine, script, _ = a1111
    init = Image.new("RGB", (64, 64), (200, 40, 40))
    buffer = io.BytesIO()
    init.save(buffer, format="PNG")
    result = engine.submit(
        Request(prompt="x", seed=2, steps=2, init_image=buffer.getvalue(), strength=0.5, model="tiny", **SMALL)
    ).result()
    path, _, body = script.received[-1]
    assert path == "/sdapi/v1/img2img" and body["denoising_strength"] == 0.5
    assert base64.b64decode(body["init_images"][0]) == buffer.getvalue()
    assert body["override_settings"] == {"sd_model_checkpoint": "tiny"}
    assert size_of(result.images[0]) == (64, 64)


def test_a1111_cancel_interrupts_the_server(a1111):
    engine, script, state = a1111
    job = engine.submit(Request(prompt="slow", seed=1, steps=60, **SMALL))
    for event in job.events():
        if event["kind"] == "step":
            break
    job.cancel()
    with pytest.raises(JobCancelled):
        job.result()
    deadline = time.monotonic() + 5
    while not state.interrupted.is_set() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert state.interrupted.is_set() and "/sdapi/v1/interrupt" in [path for path, _, _ in script.received]


@pytest.mark.parametrize(
    "answer, error, message",
    [
        (
            (401, {"www-authenticate": "Basic"}, {"detail": "Incorrect username or password"}, 0),
            EngineUnavailable,
            r"AUTOMATIC1111 engine at .* refused the credentials \(HTTP 401: Incorrect username or password",
        ),
        (
            (500, {}, {"error": "OutOfMemoryError", "detail": "", "body": "", "errors": "CUDA out of memory."}, 0),
            JobFailed,
            r"failed \(HTTP 500: CUDA out of memory",
        ),
    ],
    ids=["401", "500"],
)
def test_a1111_errors(a1111, answer, error, message):
    engine, script, _ = a1111
    script.queue.append(answer)
    with pytest.raises(error, match=message):
        engine.submit(Request(prompt="x", steps=2, **SMALL)).result()


def test_a1111_basic_auth_password_from_environment(a1111_server, monkeypatch):
    url, script, _ = a1111_server
    monkeypatch.setenv("DREAMTRAY_A1111_PASSWORD", "pw")
    engine = A1111({"url": url, "user": "me"})
    engine.health()
    assert script.received[-1][1]["authorization"] == "Basic " + base64.b64encode(b"me:pw").decode()
    engine.close()
