"""The one interface every front end and plugin uses to generate: submit, follow progress, get, cancel.

Importing this module imports neither torch nor diffusers. `ServiceEngine` speaks to a dreamtray engine
service over HTTP (local or remote); `LocalEngine` also starts this machine's service when it is not running.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol, TypeVar

import httpx
import psutil

from dreamtray import paths
from dreamtray.engine.job_record import FINISHED
from dreamtray.engine.settings import WorkerSettings
from dreamtray.request import Request, Result

START_TIMEOUT = 30.0
HEALTH_TIMEOUT = 5.0
"""A service that does not answer /health within this is not taken as running (it may be stopped or hung)."""
STOP_GRACE = 20.0
"""Seconds a service asked to shut down gets (it cancels its job, the worker has 10 s to stop) before SIGTERM."""
SIGNAL_GRACE = 5.0
SILENCE_FACTOR = 4
"""The local service ends a silent job after its stall time (three of them while the job starts): the client
waits a little longer than that before it gives up on the service itself."""
SERVICE_MODULE = "dreamtray.engine.server.service"
SILENCE_LIMIT = 600.0
"""Seconds a running job may go without an event before the client gives up on the engine."""
EVENT_LINE_BYTES = 64 * 1024 * 1024
"""The longest line of a job's event stream read (an event with a preview image is well under 1 MB)."""
EXPAND_TIMEOUT = 960.0
"""Seconds to wait for a prompt expansion: its first one may download the text model."""
T = TypeVar("T")


class EngineError(RuntimeError):
    """A job or engine problem, worded for the user."""


class EngineUnavailable(EngineError):
    """The engine cannot be reached or started."""


class JobFailed(EngineError):
    """The engine ran the job and it failed (the message says why)."""


class JobCancelled(EngineError):
    """The job was cancelled; no image was kept."""


class Job(Protocol):
    id: str

    def events(self) -> Iterator[dict[str, Any]]:
        """Progress events until the job ends: {"kind": "step", "step": i, "total": n}, "loading", "download"..."""

    def result(self) -> Result:
        """Wait for the job and return its images, or raise JobFailed / JobCancelled."""

    def cancel(self) -> None:
        """Stop the job; a half-done image is discarded."""


class Engine(Protocol):
    name: str

    def submit(self, request: Request) -> Job: ...

    def health(self) -> dict[str, Any]: ...

    def models(self) -> list[dict[str, Any]]: ...

    def unload(self) -> None: ...

    def close(self) -> None: ...


class EngineFactory(Protocol):
    """What `register_engines` registers: `factory(settings)` makes the engine from its config table."""

    def __call__(self, settings: dict[str, Any]) -> Engine: ...


def transport_problem(exc: httpx.TransportError) -> str:
    """Why a connection failed, in words (the certificate's complaint kept: it says what to mend)."""
    text = str(exc)
    if "CERTIFICATE" in text or "SSL" in text:
        return f"its TLS certificate was refused: {text}"
    if isinstance(exc, httpx.ConnectError):
        return "nothing answers there"
    if isinstance(exc, httpx.TimeoutException):
        return "it did not answer in time"
    if isinstance(exc, httpx.UnsupportedProtocol):
        return "the address does not start with http:// or https://"
    if isinstance(exc, httpx.ProxyError):
        return "the proxy refused the connection"
    return "the connection closed before the answer came"


def bounded_lines(chunks: Iterator[bytes], limit: int, url: str) -> Iterator[str]:
    """The lines of an event stream (LF or CRLF ends), each read within `limit` bytes: an engine that sends a
    line without end is refused instead of filling memory."""
    pending, searched = bytearray(), 0
    for chunk in chunks:
        pending += chunk
        while (end := pending.find(b"\n", searched)) >= 0:
            yield bytes(pending[:end]).rstrip(b"\r").decode("utf-8", "replace")
            del pending[: end + 1]
            searched = 0
        searched = len(pending)
        if searched > limit:
            raise EngineError(
                f"The engine at {url} sent an event longer than {limit // (1024 * 1024)} MiB; it was not read "
                "further. Check that the url points at a dreamtray engine."
            )
    if pending:
        yield bytes(pending).rstrip(b"\r").decode("utf-8", "replace")


def parse_event(data: str, url: str, job_id: str) -> dict[str, Any]:
    """One event's JSON object, or an EngineError that says the engine sent something else."""
    try:
        event = json.loads(data)
    except (ValueError, RecursionError):
        event = None
    if not isinstance(event, dict):
        raise EngineError(
            f"The engine at {url} sent a malformed event for job {job_id} ({len(data)} characters that are not "
            "a JSON object). Check that the url points at a dreamtray engine of this version."
        )
    return event


class ServiceJob:
    """A job on a dreamtray engine service."""

    def __init__(self, engine: ServiceEngine, job_id: str):
        self.engine, self.id = engine, job_id
        self._final: dict[str, Any] | None = None

    def events(self) -> Iterator[dict[str, Any]]:
        """The job's events. Keep-alive comments prove the connection, not progress: a running job that
        sends no event for the engine's `silence_limit` ends here with EngineUnavailable (`: queued`
        comments, sent while the job waits its turn, count as progress)."""
        heard = time.monotonic()
        try:
            with self.engine.http.stream(
                "GET", f"/v1/jobs/{self.id}/events", timeout=httpx.Timeout(10, read=60)
            ) as response:
                self.engine.check(response)
                for line in bounded_lines(response.iter_bytes(), EVENT_LINE_BYTES, self.engine.url):
                    if line.startswith("data: ") or line == ": queued":
                        heard = time.monotonic()
                    elif time.monotonic() - heard > self.engine.silence_limit:
                        raise EngineUnavailable(
                            f"The engine at {self.engine.url} sent no progress on job {self.id} for "
                            f"{self.engine.silence_limit:.0f} s; it may be stuck. `dreamtray engine stop` "
                            "stops a local one."
                        )
                    if line.startswith("data: "):
                        event = parse_event(line[6:], self.engine.url, self.id)
                        if event.get("kind") in FINISHED:
                            self._final = event
                        yield event
        except httpx.TransportError as exc:
            if self._final is None:
                raise EngineUnavailable(
                    f"The engine at {self.engine.url} went away before job {self.id} ended "
                    f"({transport_problem(exc)}): it was stopped (`dreamtray engine stop`) or it exited."
                ) from None

    def interrupt(self) -> None:
        """Finish now, keeping the image as far as it got (a queued job is left to run)."""
        self.engine.call("POST", f"/v1/jobs/{self.id}/interrupt")

    def result(self) -> Result:
        if self._final is None:
            for _ in self.events():
                pass
        try:
            body = self.engine.call("GET", f"/v1/jobs/{self.id}")
        except EngineUnavailable:
            final = self._final or {}  # a job that ended as the engine stopped: its last event says how
            if final.get("kind") == "cancelled":
                raise JobCancelled(final.get("message") or "Cancelled.") from None
            if final.get("kind") == "failed":
                raise JobFailed(final.get("message") or "The job failed.") from None
            raise
        if body["status"] == "done":
            return Result.model_validate(body["result"])
        if body["status"] == "cancelled":
            raise JobCancelled(body.get("error") or "Cancelled.")
        if body["status"] in ("queued", "running"):
            raise EngineUnavailable("The engine stopped sending progress before the job ended.")
        raise JobFailed(body.get("error") or "The job failed.")

    def cancel(self) -> None:
        self.engine.call("POST", f"/v1/jobs/{self.id}/cancel")


class ServiceEngine:
    """Client of a dreamtray engine service at `url`, authenticated with `token`."""

    name = "dreamtray"

    def __init__(
        self,
        url: str,
        token: str,
        verify: str | bool = True,
        timeout: float = 30.0,
        silence_limit: float = SILENCE_LIMIT,
    ):
        self.url, self.silence_limit = url, silence_limit
        self.http = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, verify=verify, timeout=timeout
        )

    def unavailable(self, exc: httpx.TransportError) -> EngineUnavailable:
        return EngineUnavailable(f"The engine at {self.url} cannot be reached ({transport_problem(exc)}).")

    def check(self, response: httpx.Response) -> None:
        if response.is_success:
            return
        response.read()
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:500]
        if response.status_code == 401:
            raise EngineUnavailable(f"The engine at {self.url} refused the token: {message}")
        raise EngineError(message)

    def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise self.unavailable(exc) from None
        self.check(response)
        return response.json()

    def submit(self, request: Request) -> ServiceJob:
        body = self.call(
            "POST", "/v1/jobs", content=request.model_dump_json(), headers={"content-type": "application/json"}
        )
        return ServiceJob(self, body["id"])

    def health(self) -> dict[str, Any]:
        return self.call("GET", "/health")

    def models(self) -> list[dict[str, Any]]:
        return self.call("GET", "/v1/models")["data"]

    def unload(self) -> bool:
        """Free the model's memory: True when done now, False when it happens after the running job."""
        return self.call("POST", "/v1/unload")["status"] == "unloaded"

    def expand(self, prompt: str, seed: int, **options: Any) -> dict[str, Any]:
        """The prompt grown by the engine's text model with `seed` (options: model, max_new_tokens); see
        engine/server/expansion.py for the answer's fields."""
        body = {"prompt": prompt, "seed": seed, **options}
        return self.call("POST", "/v1/expand", json=body, timeout=httpx.Timeout(30, read=EXPAND_TIMEOUT))

    def shutdown(self) -> None:
        self.call("POST", "/v1/shutdown")

    def close(self) -> None:
        self.http.close()


class LocalEngine:
    """This machine's engine service: found through its state file, started on demand when it is not running."""

    name = "local"

    def __init__(
        self,
        settings: WorkerSettings,
        state_dir: Path,
        token_file: Path,
        exit_after_idle: float = 1800.0,
        max_queue: int | None = None,
    ):
        """`max_queue`: how many jobs a service started here lets wait (None: the service's default)."""
        self.settings, self.state_dir, self.token_file = settings, state_dir, token_file
        self.exit_after_idle, self.max_queue = exit_after_idle, max_queue
        self.state_file = state_dir / "engine.json"
        self.started: subprocess.Popen | None = None
        self._client: ServiceEngine | None = None

    def client(self) -> ServiceEngine:
        """A client of the running service, starting the service first if needed."""
        if self._client is not None:
            return self._client
        from filelock import FileLock

        try:
            self._token()  # the service reads the same file: one that cannot be made is told here, in words
        except OSError as exc:
            raise EngineUnavailable(paths.cannot_write(exc, self.token_file)) from None
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            with FileLock(str(self.state_dir / "engine.lock")):
                client = self.running() or self._start()
        except OSError as exc:  # a read-only or full folder for the token, the lock, the state file or the log
            raise EngineUnavailable(paths.cannot_write(exc, self.state_dir)) from None
        self._client = client
        return client

    def _token(self) -> str:
        from dreamtray.engine.token import load_or_create_token

        return load_or_create_token(self.token_file)

    def _alive(self, client: ServiceEngine) -> bool:
        try:
            client.call("GET", "/health", timeout=HEALTH_TIMEOUT)
            return True
        except EngineError:
            return False

    def running(self) -> ServiceEngine | None:
        """A client of the service if one is running and answers; None otherwise (nothing is started)."""
        try:
            state = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return None
        client = ServiceEngine(state["url"], self._token(), silence_limit=self.settings.stall_seconds * SILENCE_FACTOR)
        if self._alive(client):
            return client
        client.close()
        return None

    def _start(self) -> ServiceEngine:
        self.state_file.unlink(missing_ok=True)
        command = [
            sys.executable,
            "-m",
            SERVICE_MODULE,
            "--settings",
            json.dumps(asdict(self.settings)),
            "--token-file",
            str(self.token_file),
            "--state-file",
            str(self.state_file),
            "--exit-after-idle",
            str(self.exit_after_idle),
            *(["--max-queue", str(self.max_queue)] if self.max_queue else []),
        ]
        log = open(self.state_dir / "engine.log", "ab")
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                log_file = self.state_dir / "engine.log"
                raise EngineUnavailable(
                    f"The engine service exited at start (code {process.returncode}); see {log_file}."
                )
            client = self.running()
            if client is not None:
                self.started = process
                return client
            time.sleep(0.05)
        process.kill()
        raise EngineUnavailable(f"The engine service did not start within {START_TIMEOUT:.0f} s.")

    def submit(self, request: Request) -> ServiceJob:
        return self._retrying(lambda client: client.submit(request))

    def health(self) -> dict[str, Any]:
        return self._retrying(lambda client: client.health())

    def models(self) -> list[dict[str, Any]]:
        return self._retrying(lambda client: client.models())

    def unload(self) -> bool:
        return self._retrying(lambda client: client.unload())

    def expand(self, prompt: str, seed: int, **options: Any) -> dict[str, Any]:
        return self._retrying(lambda client: client.expand(prompt, seed, **options))

    def _retrying(self, call: Callable[[ServiceEngine], T]) -> T:
        """`call` on the service; when it went away since we last spoke, find or start it again, once."""
        try:
            return call(self.client())
        except EngineUnavailable:
            self._client = None
            return call(self.client())

    def stop(self) -> bool:
        """Stop the service and its worker: ask it, then SIGTERM, then SIGKILL, waiting after each step.

        Returns False when no engine was running. Raises EngineError, naming the processes, when they are
        still there after all that (another user's, say): nothing is reported stopped that is not.
        """
        processes = self._processes()
        client = self.running()
        asked = False
        if client is not None:
            try:
                client.shutdown()
                asked = True
            except EngineError:
                pass  # it is going anyway, or stuck: the signals below see to it
            client.close()
        self.close()
        if not processes:
            return client is not None
        left = _end_processes(processes, STOP_GRACE if asked else 0.0)
        if left:
            names = ", ".join(f"{process.pid}" for process in left)
            raise EngineError(
                f"The engine could not be stopped: process {names} is still running and refused SIGKILL "
                "(does it belong to another user?)."
            )
        self._forget_state(processes[0].pid)
        return True

    def _processes(self) -> list[psutil.Process]:
        """The service named in the state file, if it runs and is a dreamtray engine, then its children."""
        try:
            pid = int(json.loads(self.state_file.read_text())["pid"])
            service = psutil.Process(pid)
            if SERVICE_MODULE not in service.cmdline():
                return []
            return [service, *service.children(recursive=True)]
        except (OSError, ValueError, KeyError, TypeError, psutil.Error):
            return []

    def _forget_state(self, pid: int) -> None:
        """Remove the state file if it still names `pid` (a killed service could not remove its own)."""
        try:
            if json.loads(self.state_file.read_text()).get("pid") == pid:
                self.state_file.unlink(missing_ok=True)
        except (OSError, ValueError, AttributeError):
            pass

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _end_processes(processes: list[psutil.Process], grace: float) -> list[psutil.Process]:
    """Give `processes` `grace` seconds to exit, then SIGTERM, then SIGKILL, waiting after each; returns those left."""
    alive = _wait_exit(processes, grace)
    for signal_name in ("terminate", "kill"):
        if not alive:
            break
        for process in alive:
            try:
                getattr(process, signal_name)()
                process.resume()  # a stopped (SIGSTOP) process acts on SIGTERM only once it runs again
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        alive = _wait_exit(alive, SIGNAL_GRACE)
    return alive


def _wait_exit(processes: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Those of `processes` still running after up to `timeout` seconds (zombies count as gone)."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [process for process in processes if _running(process)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.05)


def _running(process: psutil.Process) -> bool:
    try:
        if process.status() != psutil.STATUS_ZOMBIE:
            return True
        process.wait(timeout=0)  # our own child (the engine this process started): reap it
    except (psutil.NoSuchProcess, psutil.TimeoutExpired):
        pass
    return False
