"""The one interface every front end and plugin uses to generate: submit, follow progress, get, cancel.

Importing this module imports neither torch nor diffusers. `ServiceEngine` speaks to a dreamtray engine
service over HTTP (local or remote); `LocalEngine` also starts this machine's service when it is not running.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol, TypeVar

import httpx

from dreamtray.engine.settings import WorkerSettings
from dreamtray.request import Request, Result

START_TIMEOUT = 30.0
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


class ServiceJob:
    """A job on a dreamtray engine service."""

    def __init__(self, engine: ServiceEngine, job_id: str):
        self.engine, self.id = engine, job_id
        self._final: dict[str, Any] | None = None

    def events(self) -> Iterator[dict[str, Any]]:
        try:
            with self.engine.http.stream(
                "GET", f"/v1/jobs/{self.id}/events", timeout=httpx.Timeout(10, read=60)
            ) as response:
                self.engine.check(response)
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        event = json.loads(line[6:])
                        if event.get("kind") in ("done", "failed", "cancelled"):
                            self._final = event
                        yield event
        except httpx.TransportError as exc:
            raise self.engine.unavailable(exc) from None

    def result(self) -> Result:
        if self._final is None:
            for _ in self.events():
                pass
        body = self.engine.call("GET", f"/v1/jobs/{self.id}")
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

    def __init__(self, url: str, token: str, verify: str | bool = True, timeout: float = 30.0):
        self.url = url
        self.http = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, verify=verify, timeout=timeout
        )

    def unavailable(self, exc: Exception) -> EngineUnavailable:
        return EngineUnavailable(f"The engine at {self.url} cannot be reached ({type(exc).__name__}: {exc}).")

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

    def unload(self) -> None:
        self.call("POST", "/v1/unload", timeout=120)

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

        self.state_dir.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.state_dir / "engine.lock")):
            client = self.running() or self._start()
        self._client = client
        return client

    def _token(self) -> str:
        from dreamtray.engine.token import load_or_create_token

        return load_or_create_token(self.token_file)

    def _alive(self, client: ServiceEngine) -> bool:
        try:
            client.health()
            return True
        except EngineError:
            return False

    def running(self) -> ServiceEngine | None:
        """A client of the service if one is running and answers; None otherwise (nothing is started)."""
        try:
            state = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return None
        client = ServiceEngine(state["url"], self._token())
        if self._alive(client):
            return client
        client.close()
        return None

    def _start(self) -> ServiceEngine:
        self.state_file.unlink(missing_ok=True)
        command = [
            sys.executable,
            "-m",
            "dreamtray.engine.server.service",
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

    def unload(self) -> None:
        self._retrying(lambda client: client.unload())

    def _retrying(self, call: Callable[[ServiceEngine], T]) -> T:
        """`call` on the service; when it went away since we last spoke, find or start it again, once."""
        try:
            return call(self.client())
        except EngineUnavailable:
            self._client = None
            return call(self.client())

    def stop(self) -> None:
        """Stop the service (and its worker) if it is running."""
        client = self.running()
        if client is None:
            return
        pid = client.health()["pid"]
        client.shutdown()
        client.close()
        if self.started is not None and self.started.pid == pid:
            self.started.wait(timeout=15)  # our own child: reap it
        else:
            _wait_gone(pid)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _wait_gone(pid: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
