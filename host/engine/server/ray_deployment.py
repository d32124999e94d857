"""The dreamtray engine on Ray Serve: a pool of engine replicas (one per GPU) behind one endpoint.

Two deployments. `EngineReplica` wraps a `Runner` (one loaded pipeline, one job at a time: at most one
ongoing request, so Ray hands each job to a free replica and queues the rest). `EngineIngress` speaks the
engine's own HTTP API (`service.create_app`: token, OpenAI-compatible generation, jobs with progress events,
cancel, health, models) and keeps the jobs, so `ServiceEngine` and OpenAI clients use it unchanged.
The ingress is one replica (it holds the job records); the work is spread over the engine replicas, whose
number Ray places on the cluster (`num_replicas`, or an `autoscaling_config` in a Serve config file).

Start it with `dreamtray serve --ray` (through `ray_start.local_ray`), or on a cluster with the Serve config
file next to this module (`ray_serve_config.yaml`, whose `import_path` is `build_app` below).
Replicas give their model memory back after `idle_unload_seconds`; an explicit unload is not routed to
every replica, so on Ray /v1/unload leaves that to the idle timer and to Ray's autoscaling.
"""

from __future__ import annotations

import asyncio
import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ray import serve
from ray.serve.handle import DeploymentHandle

from dreamtray.engine.job_record import FINISHED, JobRecord
from dreamtray.engine.server.api_fields import Styles
from dreamtray.engine.server.jobs import KEEP_FINISHED, QueueFull
from dreamtray.engine.server.service import MAX_BODY_BYTES, VERSION, create_app
from dreamtray.engine.settings import QUEUE_LENGTH, WorkerSettings
from dreamtray.request import Request

APP_NAME = "dreamtray"
QUIET_LOGS = {"enable_access_log": False}


@dataclass(frozen=True)
class PoolOptions:
    """How many engine replicas, and what each one reserves on the cluster."""

    replicas: int = 1
    gpus: float = 0.0
    cpus: float = 0.5


@serve.deployment(max_ongoing_requests=1, logging_config=QUIET_LOGS)
class EngineReplica:
    """One Runner on one device; a streamed call yields ("event", dict)... then one final (kind, payload)."""

    def __init__(self, settings: dict[str, Any]):
        from dreamtray.engine.server.runner import Runner

        worker = WorkerSettings(**settings)
        self.runner = Runner(
            cache_dir=Path(worker.cache_dir),
            default_model=worker.default_model,
            overrides=worker.to_overrides(),
            allow_pickle=worker.allow_pickle,
            single_file_config=worker.single_file_config,
        )
        self.device = threading.Lock()
        self.last_used = time.monotonic()
        if worker.idle_unload_seconds > 0:
            threading.Thread(target=self._unload_when_idle, args=(worker.idle_unload_seconds,), daemon=True).start()

    async def generate(self, request_json: str) -> AsyncIterator[tuple[str, Any]]:
        loop = asyncio.get_running_loop()
        messages: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        cancelled = threading.Event()

        def put(kind: str, payload: Any) -> None:
            loop.call_soon_threadsafe(messages.put_nowait, (kind, payload))

        loop.run_in_executor(None, self._run, request_json, put, cancelled)
        try:
            while True:
                kind, payload = await messages.get()
                yield kind, payload
                if kind != "event":
                    return
        finally:
            cancelled.set()  # the caller cancelled (or went away): stop at the next step

    def _run(self, request_json: str, put, cancelled: threading.Event) -> None:
        from dreamtray.engine.server.models import ModelError
        from dreamtray.engine.server.runner import GenerationCancelled, GenerationError

        with self.device:
            try:
                request = Request.model_validate_json(request_json)
                result = self.runner.generate(
                    request, emit=lambda event: put("event", event), cancelled=cancelled.is_set
                )
                put("result", result.model_dump_json())
            except GenerationCancelled:
                put("cancelled", "Cancelled; the half-done image was discarded.")
            except (ModelError, GenerationError, ValueError) as exc:
                put("failed", str(exc))
            except Exception as exc:  # reported to the job; the replica stays up for the next one
                put("failed", f"{type(exc).__name__}: {exc}")
            finally:
                self.last_used = time.monotonic()

    def _unload_when_idle(self, seconds: float) -> None:
        while True:
            time.sleep(min(seconds, 5.0))
            if time.monotonic() - self.last_used > seconds and self.device.acquire(blocking=False):
                try:
                    self.runner.unload()
                finally:
                    self.device.release()


class RayJobManager:
    """The ingress's jobs: each one followed by a thread that streams it from an engine replica."""

    def __init__(self, replicas: DeploymentHandle, pool_size: int, max_queue: int = QUEUE_LENGTH):
        self.replicas, self.pool_size, self.max_queue = replicas, pool_size, max_queue
        self.jobs: OrderedDict[str, JobRecord] = OrderedDict()
        self.streams: dict[str, Any] = {}
        self.loaded_model: str | None = None
        self.lock = threading.Lock()

    def submit(self, request: Request) -> JobRecord:
        if self.waiting() >= self.max_queue:
            raise QueueFull(f"{self.max_queue} jobs are already waiting; try again when one is done")
        job = JobRecord(request)
        with self.lock:
            self.jobs[job.id] = job
            while len(self.jobs) > KEEP_FINISHED + self.max_queue and next(iter(self.jobs.values())).status in FINISHED:
                self.jobs.popitem(last=False)
            self.streams[job.id] = self.replicas.options(stream=True).generate.remote(request.model_dump_json())
        threading.Thread(target=self._follow, args=(job,), name=f"dreamtray-job-{job.id}", daemon=True).start()
        return job

    def _follow(self, job: JobRecord) -> None:
        from ray.serve.exceptions import RequestCancelledError

        try:
            for kind, payload in self.streams[job.id]:
                if kind == "event":
                    job.status = "running" if job.status == "queued" else job.status
                    if payload.get("kind") == "loading":
                        self.loaded_model = payload.get("model")
                    job.add_event(payload)
                elif kind == "result":
                    job.finish("done", result_json=payload)
                else:
                    job.finish(kind, error=payload)
        except RequestCancelledError:
            job.finish("cancelled", error="Cancelled; the half-done image was discarded.")
        except Exception as exc:
            job.finish("failed", error=f"The engine replica stopped while generating ({type(exc).__name__}: {exc}).")
        finally:
            self.streams.pop(job.id, None)

    def get(self, job_id: str) -> JobRecord | None:
        return self.jobs.get(job_id)

    def cancel(self, job: JobRecord) -> None:
        stream = self.streams.get(job.id)
        if stream is not None:
            stream.cancel()
        if job.status == "queued":
            job.finish("cancelled", error="Cancelled before it started.")

    def interrupt(self, job: JobRecord) -> None:
        """A replica cannot be told to finish early: a running job is cancelled (docs/remote-engines.md)."""
        if job.status == "running":
            self.cancel(job)

    def waiting(self) -> int:
        return sum(job.status == "queued" for job in list(self.jobs.values()))

    def unload(self) -> bool:
        """Replicas unload by themselves when idle (see the module's docstring)."""
        return True

    def health(self) -> dict[str, Any]:
        jobs = list(self.jobs.values())
        return {
            "status": "ok",
            "service": "dreamtray",
            "backend": "ray",
            "api": VERSION,
            "pid": os.getpid(),
            "worker_pid": None,
            "replicas": self.pool_size,
            "loaded_model": self.loaded_model,
            "running": [job.id for job in jobs if job.status == "running"],
            "queued": self.waiting(),
        }


@serve.deployment(max_ongoing_requests=1000, ray_actor_options={"num_cpus": 0.1}, logging_config=QUIET_LOGS)
@serve.ingress()
class EngineIngress:
    """The engine's HTTP API in front of the replicas."""

    def __init__(
        self,
        replicas: DeploymentHandle,
        pool_size: int,
        token: str,
        limits: dict[str, Any],
        styles: Styles | None = None,
    ):
        self.manager = RayJobManager(replicas, pool_size)
        self.token, self.limits, self.styles = token, limits, styles

    def __serve_build_asgi_app__(self):
        from dreamtray.engine.server.guard import guarded

        app = create_app(
            self.manager,
            self.token,
            health=self.manager.health,
            max_body_bytes=self.limits["max_body_bytes"],
            log_prompts=self.limits["log_prompts"],
            styles=self.styles,
        )
        return guarded(app, self.token, self.limits["rate_per_minute"], self.limits["max_body_bytes"])


def engine_app(
    settings: WorkerSettings,
    token: str,
    pool: PoolOptions = PoolOptions(),
    *,
    rate_per_minute: int = 0,
    max_body_bytes: int = MAX_BODY_BYTES,
    log_prompts: bool = False,
    styles: Styles | None = None,
):
    """The Serve application: the ingress bound to a pool of engine replicas, each with these worker settings;
    `styles` (the style registry, sent to the ingress by value) applies the styles requests name."""
    replicas = EngineReplica.options(
        num_replicas=pool.replicas,
        ray_actor_options={"num_cpus": pool.cpus, "num_gpus": pool.gpus},
    ).bind(asdict(settings))
    limits = {"rate_per_minute": rate_per_minute, "max_body_bytes": max_body_bytes, "log_prompts": log_prompts}
    return EngineIngress.bind(replicas, pool.replicas, token, limits, styles)


def build_app(args: dict[str, Any]):
    """Builder for a Serve config file (`import_path: dreamtray.engine.server.ray_deployment:build_app`)."""
    from dreamtray import paths
    from dreamtray.engine.token import load_or_create_token

    token_file = args.get("token_file")
    if not token_file:
        raise ValueError("token_file: name the file holding the token that clients send")
    pool = PoolOptions(
        replicas=int(args.get("replicas", 1)),
        gpus=float(args.get("replica_gpus", 1)),
        cpus=float(args.get("replica_cpus", 1)),
    )
    settings = WorkerSettings(
        cache_dir=str(args.get("cache_dir") or paths.cache_dir() / "models"),
        default_model=str(args.get("model", "auto")),
        idle_unload_seconds=float(args.get("idle_unload_seconds", 300)),
    )
    return engine_app(
        settings,
        load_or_create_token(Path(token_file)),
        pool,
        rate_per_minute=int(args.get("rate_limit", 120)),
        log_prompts=bool(args.get("log_prompts", False)),
    )


def start(host: str, port: int, app, ssl: dict[str, str] | None = None) -> None:
    """Start Serve's HTTP proxy on `host:port` and run `app` there (Ray must already be running)."""
    from dreamtray.engine.server.ray_start import serve_http_options

    serve.start(http_options=serve_http_options(host, port, ssl))
    serve.run(app, name=APP_NAME, route_prefix="/")


def run_ray_serve(
    settings: WorkerSettings,
    token: str,
    host: str,
    port: int,
    pool: PoolOptions,
    ssl: dict[str, str] | None = None,
    **limits: Any,
) -> None:
    """`dreamtray serve --ray`: start a local Ray, serve the pool until interrupted, then stop it all."""
    import signal

    from dreamtray.engine.server.ray_start import local_ray

    stop = threading.Event()
    with local_ray(num_cpus=max(2, math.ceil(pool.replicas * pool.cpus + 1))):
        signal.signal(signal.SIGTERM, lambda *_: stop.set())  # after ray.init, which sets its own
        start(host, port, engine_app(settings, token, pool, **limits), ssl)
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
        finally:
            serve.shutdown()
