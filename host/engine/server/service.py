"""The engine service: an HTTP API (FastAPI) in front of the job queue and its worker process.

The service process imports no torch (only its worker does), so it answers at once and survives a worker
that crashes or runs out of memory. Every request must carry the user's token as `Authorization: Bearer`.

Endpoints: GET /health, GET /v1/models, POST /v1/jobs, GET /v1/jobs/{id}, GET /v1/jobs/{id}/events (SSE),
POST /v1/jobs/{id}/cancel, POST /v1/images/generations (OpenAI-compatible), POST /v1/expand (prompt expansion),
POST /v1/unload, POST /v1/shutdown, and with a route (`dreamtray serve`) AUTOMATIC1111's /sdapi/v1/... (a1111_api).
The two image APIs make their images along the route `serve` hands in (routing); /v1/jobs sends requests to the
engine as they are.
Request bodies are size-limited; `serve` can add a per-token rate limit and logs requests without tokens,
and prompts only when asked (`log_prompts`).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import Depends, FastAPI, HTTPException
from fastapi import Request as HttpRequest
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from dreamtray.atomic import write_atomically
from dreamtray.engine.client import EngineError, JobCancelled
from dreamtray.engine.job_record import JobRecord
from dreamtray.engine.presets import PRESETS
from dreamtray.engine.server import a1111_api, api_fields
from dreamtray.engine.server.expansion import add_expansion_route, close_expansions
from dreamtray.engine.server.guard import token_matches, too_large_message
from dreamtray.engine.server.jobs import STOPPING, JobManager, QueueFull
from dreamtray.engine.server.routing import DirectRoute, ManagerEngine, Route, Routed, RouteFactory
from dreamtray.engine.settings import QUEUE_LENGTH, WorkerSettings
from dreamtray.engine.token import load_or_create_token
from dreamtray.request import Request, describe_validation_error, parse_size

VERSION = "1"
MAX_BODY_BYTES = 32 * 2**20
"""Room for an init image of a few thousand pixels a side, as base64 JSON."""
SHUTDOWN_GRACE = 5
"""Seconds open connections get to finish once the service is told to stop (its jobs are cancelled first)."""
QUEUE_FULL_RETRY_AFTER = 10
"""Seconds a client is asked to wait (Retry-After) when the queue is full: about one small job."""
GALLERY_SETTINGS = ("always", "asked", "never")
"""Which images made through the served image APIs the route keeps in the gallery: all, those an A1111 request
asks for (`save_images`), none."""
log = logging.getLogger("dreamtray.serve")


class ServeError(ValueError):
    """The service cannot start as asked (a TLS file that does not load, say); the message names the file."""


def error_response(
    status: int, message: str, kind: str = "invalid_request_error", headers: dict[str, str] | None = None
) -> JSONResponse:
    """Errors in the OpenAI shape, so OpenAI clients show the message."""
    return JSONResponse({"error": {"message": message, "type": kind}}, status_code=status, headers=headers)


class ImagesGeneration(BaseModel):
    """OpenAI's images/generations body, plus dreamtray's fields (seed, steps, guidance, negative_prompt, style)."""

    model_config = ConfigDict(extra="ignore")

    prompt: str
    model: str | None = None
    n: int = Field(1, ge=1, le=8)
    size: str | None = None
    response_format: str = "b64_json"
    seed: int | None = None
    steps: int | None = None
    guidance: float | None = None
    negative_prompt: str = ""
    style: str | list[str] | None = None
    output_format: str = "png"
    output_compression: int | None = None

    def to_request(self) -> Request:
        width = height = None
        if self.size and self.size != "auto":
            try:
                width, height = parse_size(self.size)
            except ValueError as exc:
                raise ValueError(f"size: {exc}") from None
        if self.response_format != "b64_json":
            raise ValueError("response_format: only b64_json is served (no image URLs)")
        model = None if self.model in (None, "", "dall-e-2", "dall-e-3", "gpt-image-1") else self.model
        return Request.parse(
            prompt=self.prompt,
            negative_prompt=self.negative_prompt,
            styles=self.style or (),
            width=width,
            height=height,
            steps=self.steps,
            guidance=self.guidance,
            seed=self.seed,
            model=model,
            count=self.n,
        )


def describe_request(request: Request, log_prompts: bool) -> str:
    """A request for the log: its settings, and its prompts only when the operator asked for them."""
    size = f"{request.width or 'auto'}x{request.height or 'auto'}"
    text = f"model={request.model or 'default'} size={size} steps={request.steps or 'default'} n={request.count}"
    if log_prompts:
        return f"{text} prompt={request.prompt!r} negative={request.negative_prompt!r}"
    return f"{text} prompt=<{len(request.prompt)} chars>"


def local_health(manager: JobManager) -> dict[str, Any]:
    """The /health answer of a service with its own worker process."""
    worker = manager.worker if manager.worker and manager.worker.alive() else None
    return {
        "status": "ok",
        "service": "dreamtray",
        "api": VERSION,
        "pid": os.getpid(),
        "worker_pid": worker.pid if worker else None,
        "ready_worker_pid": manager.ready.pid if manager.ready and manager.ready.alive() else None,
        "loaded_model": manager.loaded_model if worker else None,
        "running": manager.running.id if manager.running else None,
        "queued": manager.waiting(),
        "max_queue": manager.pending.maxsize,
    }


def create_app(
    manager: JobManager,
    token: str,
    on_shutdown: Callable[[], None] | None = None,
    *,
    max_body_bytes: int = MAX_BODY_BYTES,
    log_prompts: bool = False,
    health: Callable[[], dict[str, Any]] | None = None,
    styles: api_fields.Styles | None = None,
    route: RouteFactory | None = None,
    gallery: str = "never",
) -> FastAPI:
    """The HTTP API over `manager`, guarded by `token`.

    `styles` (the serving machine's style registry) applies the styles a request names; without it, only
    requests a client styled itself are taken (see api_fields).

    `route` makes the core's route for this service's engine: with it, the image APIs (OpenAI's, and A1111's,
    offered only then) run plugins, styles, the gallery (as `gallery` says: one of GALLERY_SETTINGS) and the
    hooks, and their PNGs carry A1111 `parameters` text; without it, they go straight to the engine.

    `manager` is a JobManager or anything with its submit/get/cancel/unload; `health` replaces the
    answer of /health for managers without a local worker (the Ray deployment). Without `on_shutdown`,
    /v1/shutdown is refused: clients of a shared server must not stop it for everyone.
    """
    app = FastAPI(
        title="dreamtray engine",
        version=VERSION,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,  # served below, behind the token like every other path
        max_body_size=max_body_bytes,
    )
    describe_health = health or (lambda: local_health(manager))
    engine = ManagerEngine(manager, lambda request: describe_request(request, log_prompts))
    images_route: Route = route(engine) if route is not None else DirectRoute(engine, styles)

    def authorized(http: HttpRequest) -> None:
        if not token_matches(http.headers.get("authorization", ""), token):
            headers = {"WWW-Authenticate": "Basic"} if http.url.path.startswith(a1111_api.PREFIX) else None
            raise HTTPException(401, "missing or wrong token", headers=headers)

    def answer_error(
        http: HttpRequest, status: int, message: str, kind: str, headers=None, a1111_kind: str = "HTTPException"
    ) -> JSONResponse:
        """The error in the shape of the API asked: A1111's under /sdapi (`a1111_kind` names the exception, as
        A1111 does), OpenAI's elsewhere (`kind` is its type)."""
        if http.url.path.startswith(a1111_api.PREFIX):
            answer = a1111_api.error_body(status, message, a1111_kind)
            answer.headers.update(headers or {})
            return answer
        return error_response(status, message, kind, headers)

    @app.exception_handler(StarletteHTTPException)  # also FastAPI's, and the body limit's 413
    async def _http_error(http: HttpRequest, exc: StarletteHTTPException) -> JSONResponse:
        kind = "authentication_error" if exc.status_code == 401 else "invalid_request_error"
        message = str(exc.detail)
        if exc.status_code == 413:
            message = too_large_message(max_body_bytes)
        return answer_error(http, exc.status_code, message, kind, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(http: HttpRequest, exc: RequestValidationError) -> JSONResponse:
        status = 422 if http.url.path.startswith(a1111_api.PREFIX) else 400
        message = describe_validation_error(exc)
        return answer_error(http, status, message, "invalid_request_error", a1111_kind="RequestValidationError")

    guarded = [Depends(authorized)]

    def job_or_404(job_id: str) -> JobRecord:
        job = manager.get(job_id)
        if job is None:
            raise HTTPException(404, f"no job {job_id}")
        return job

    @app.exception_handler(api_fields.FieldError)
    async def _field(http: HttpRequest, exc: api_fields.FieldError) -> JSONResponse:
        if http.url.path.startswith(a1111_api.PREFIX):
            return a1111_api.error_body(exc.status, str(exc), type(exc).__name__)
        error = {"message": str(exc), "type": "invalid_request_error"} | ({"code": exc.code} if exc.code else {})
        return JSONResponse({"error": error}, status_code=exc.status)

    def run_route(request: Request, save: bool, on_job: Callable[[Any], None] = lambda job: None) -> Routed:
        """`request` along the images route; its failures as HTTP errors (the handlers above shape them)."""
        try:
            return images_route.generate(request, save=save, on_job=on_job)
        except QueueFull as exc:
            raise HTTPException(429, str(exc), headers={"Retry-After": str(QUEUE_FULL_RETRY_AFTER)}) from None
        except JobCancelled as exc:
            raise HTTPException(409, f"Interrupted: {exc}") from None
        except (EngineError, RuntimeError) as exc:  # the engine's failure, or the gallery's
            raise HTTPException(500, str(exc)) from None
        except api_fields.FieldError:
            raise
        except ValueError as exc:  # a style or request that plugins or styles made invalid
            raise HTTPException(400, str(exc)) from None

    def submit(request: Request) -> JobRecord:
        api_fields.check_model(request.model)
        request = api_fields.apply_styles(request, styles)
        try:
            job = manager.submit(request)
        except QueueFull as exc:
            raise HTTPException(429, str(exc), headers={"Retry-After": str(QUEUE_FULL_RETRY_AFTER)}) from None
        log.info("job %s queued: %s", job.id, describe_request(request, log_prompts))
        return job

    @app.get("/openapi.json", dependencies=guarded, include_in_schema=False)
    def openapi() -> dict[str, Any]:
        return app.openapi()

    @app.get("/health", dependencies=guarded)
    def health() -> dict[str, Any]:
        return describe_health()

    @app.get("/v1/models", dependencies=guarded)
    def models() -> dict[str, Any]:
        data = [
            {
                "id": p.name,
                "object": "model",
                "owned_by": "dreamtray",
                "native_size": p.native_size,
                "steps": p.steps,
                "description": p.description,
                "loaded": p.name == manager.loaded_model,
            }
            for p in PRESETS.values()
        ]
        return {"object": "list", "data": data}

    @app.post("/v1/jobs", status_code=202, dependencies=guarded)
    def create_job(request: Request) -> dict[str, Any]:
        return submit(request).summary()

    @app.get("/v1/jobs/{job_id}", dependencies=guarded)
    def job_status(job_id: str) -> Response:
        job = job_or_404(job_id)
        body = json.dumps(job.summary())
        if job.result_json is not None:
            body = body[:-1] + ', "result": ' + job.result_json + "}"
        return Response(body, media_type="application/json")

    @app.post("/v1/jobs/{job_id}/cancel", dependencies=guarded)
    def cancel_job(job_id: str) -> dict[str, Any]:
        job = job_or_404(job_id)
        manager.cancel(job)
        return job.summary()

    @app.post("/v1/jobs/{job_id}/interrupt", dependencies=guarded)
    def interrupt_job(job_id: str) -> dict[str, Any]:
        job = job_or_404(job_id)
        manager.interrupt(job)
        return job.summary()

    @app.get("/v1/jobs/{job_id}/events", dependencies=guarded)
    def job_events(job_id: str) -> StreamingResponse:
        job = job_or_404(job_id)

        async def stream() -> AsyncIterator[str]:
            seen = 0
            while True:
                events, finished = await asyncio.to_thread(job.wait, seen, 10.0)
                seen += len(events)
                for event in events:
                    yield f"data: {json.dumps(event)}\n\n"
                if finished and not events:
                    return
                if not events:  # a keep-alive that also says whether the job still waits its turn
                    yield f": {'queued' if job.status == 'queued' else 'running'}\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream")

    @app.post("/v1/images/generations", dependencies=guarded)
    def images_generations(body: ImagesGeneration) -> Response:
        api_fields.check_output_format(body.output_format, body.output_compression)
        try:
            request = body.to_request()
        except (ValueError, ValidationError) as exc:
            return error_response(400, str(exc))
        names, notes = api_fields.openai_styles(request.styles, styles)
        routed = run_route(request.model_copy(update={"styles": names}), save=gallery == "always")
        result = routed.result
        encoded = [api_fields.encode_image(png, body.output_format, body.output_compression) for png in routed.pngs]
        data = [
            {"b64_json": base64.b64encode(image).decode("ascii"), "revised_prompt": result.request.prompt}
            for image in encoded
        ]
        return JSONResponse(
            {
                "created": int(time.time()),
                "data": data,
                "seeds": result.seeds,
                "model": result.model,
                "warnings": notes + routed.warnings,
                "output_format": body.output_format.lower(),
            }
        )

    if route is not None:
        default_model = getattr(getattr(manager, "settings", None), "default_model", None) or "auto"
        router = a1111_api.create_router(
            run_route, images_route.read_parameters, lambda: default_model, styles, gallery
        )
        app.include_router(router, dependencies=guarded)

        @app.get("/internal/ping", dependencies=guarded, include_in_schema=False)
        def ping() -> dict[str, Any]:
            """A1111's liveness check, for clients that ask it."""
            return {}

    @app.post("/v1/unload", dependencies=guarded)
    def unload() -> dict[str, Any]:
        return {"status": "unloaded" if manager.unload() else "unloading after the running job"}

    @app.post("/v1/shutdown", dependencies=guarded)
    def shutdown() -> dict[str, Any]:
        if on_shutdown is None:
            raise HTTPException(403, "This engine server is not stopped by its clients; stop it where it runs.")
        threading.Thread(target=on_shutdown, daemon=True).start()
        return {"status": "stopping"}

    if isinstance(manager, JobManager):  # prompt expansion runs beside this machine's own worker
        add_expansion_route(app, guarded, Path(manager.settings.cache_dir))
    return app


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # Naming the protocol matters: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and
    # without it every small answer waits ~40 ms for the client's delayed ACK (bench/http_latency.py).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def serve(
    settings: WorkerSettings,
    token: str,
    host: str = "127.0.0.1",
    port: int = 0,
    state_file: Path | None = None,
    exit_after_idle: float = 0.0,
    ssl: dict[str, str] | None = None,
    *,
    rate_per_minute: int = 0,
    max_body_bytes: int = MAX_BODY_BYTES,
    log_prompts: bool = False,
    clients_may_stop: bool = True,
    max_queue: int = QUEUE_LENGTH,
    styles: api_fields.Styles | None = None,
    route: RouteFactory | None = None,
    gallery: str = "never",
) -> None:
    """Run the service until shut down (or idle for `exit_after_idle` seconds, when that is set).

    `ssl` holds uvicorn's options (ssl_certfile, ssl_keyfile); `rate_per_minute` above 0 limits each token;
    `clients_may_stop` offers /v1/shutdown (the local engine's owner uses it; a shared server does not);
    `max_queue` jobs may wait behind the running one (a further one is answered 429);
    `styles` is the style registry whose styles requests may name; `route` and `gallery`: see `create_app`.
    """
    from dreamtray.engine.server.guard import guarded, loopback_hosts
    from dreamtray.engine.token import is_loopback

    if ssl:
        check_tls_files(ssl["ssl_certfile"], ssl["ssl_keyfile"])
    sock = bind(host, port)
    manager = JobManager(settings, max_queue)
    config = uvicorn.Config(
        None, log_level="warning", access_log=False, timeout_graceful_shutdown=SHUTDOWN_GRACE, **(ssl or {})
    )
    scheme = "https" if ssl else "http"
    url = f"{scheme}://{_url_host(host)}:{sock.getsockname()[1]}"

    def announce() -> None:
        log.info("dreamtray engine listening on %s", url)
        if state_file is not None:
            write_atomically(state_file, json.dumps({"pid": os.getpid(), "url": url}))

    server = StartedServer(config, announce)

    def stop() -> None:
        manager.stop_jobs(STOPPING)
        server.should_exit = True

    app = create_app(
        manager,
        token,
        on_shutdown=stop if clients_may_stop else None,
        max_body_bytes=max_body_bytes,
        log_prompts=log_prompts,
        styles=styles,
        route=route,
        gallery=gallery,
    )
    config.app = guarded(app, token, rate_per_minute, max_body_bytes, loopback_hosts() if is_loopback(host) else None)
    if exit_after_idle:
        threading.Thread(target=_exit_when_idle, args=(manager, exit_after_idle, stop), daemon=True).start()
    try:
        server.run(sockets=[sock])
    finally:
        manager.shutdown()
        close_expansions(app)
        if state_file is not None:
            remove_own_state(state_file)


class StartedServer(uvicorn.Server):
    """uvicorn's server, calling `on_started` once it really listens (never before a start-up failure)."""

    def __init__(self, config: Any, on_started: Callable[[], None]):
        super().__init__(config)
        self.on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.on_started()


def check_tls_files(cert: str, key: str) -> None:
    """Load the certificate and key as the server will; ServeError names the file that fails and why."""
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    for path, what in ((cert, "certificate"), (key, "private key")):
        try:
            with open(path, "rb") as file:
                text = file.read()
        except OSError as exc:
            raise ServeError(f"TLS {what} {path}: cannot be read ({exc.strerror or exc})") from None
        if b"-----BEGIN" not in text:
            raise ServeError(f"TLS {what} {path}: not a PEM file (no -----BEGIN line)")
    try:
        context.load_verify_locations(cafile=cert)
    except (ssl.SSLError, ValueError) as exc:
        raise ServeError(f"TLS certificate {cert}: not a PEM certificate ({exc})") from None
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        reason = exc.reason or str(exc)
        if "KEY_VALUES_MISMATCH" in str(reason).upper():
            raise ServeError(f"TLS private key {key}: it is not the key of the certificate {cert}") from None
        raise ServeError(f"TLS private key {key}: cannot be used with {cert} ({reason})") from None


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def remove_own_state(path: Path) -> None:
    """Remove the state file if it is this process's: a newer service may have written its own since."""
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink(missing_ok=True)
    except (OSError, ValueError, AttributeError):
        pass


def _exit_when_idle(manager: JobManager, seconds: float, stop: Callable[[], None]) -> None:
    while True:
        time.sleep(min(seconds, 5.0))
        if not manager.busy() and time.monotonic() - manager.last_activity > seconds:
            stop()
            return


def main(argv: list[str] | None = None) -> None:
    """Entry point of the local service process that `LocalEngine` starts."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m dreamtray.engine.server.service")
    parser.add_argument("--settings", required=True, help="worker settings as JSON")
    parser.add_argument("--token-file", required=True, type=Path)
    parser.add_argument("--state-file", required=True, type=Path)
    parser.add_argument("--exit-after-idle", type=float, default=0.0)
    parser.add_argument("--max-queue", type=int, default=QUEUE_LENGTH, help="jobs that may wait")
    args = parser.parse_args(argv)
    settings = WorkerSettings(**json.loads(args.settings))
    serve(
        settings,
        load_or_create_token(args.token_file),
        state_file=args.state_file,
        exit_after_idle=args.exit_after_idle,
        max_queue=args.max_queue,
    )


if __name__ == "__main__":
    main()
