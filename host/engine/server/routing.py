"""How the served image APIs make images: along the route that `dreamtray serve` hands in, or straight to the engine.

`dreamtray serve` gives `create_app` a `RouteFactory`: the core's one route (plugins' `prepare_request`, styles,
this service's engine, the gallery as `serve --gallery` says, `image_generated`), so OpenAI and A1111 clients get
what the tray gets, with A1111 `parameters` text in every PNG. The server may not import the core (the layers
contract), so it knows the route by these protocols alone. Without one (the Ray ingress, the local engine
service), `DirectRoute` sends a request to the engine with the serving machine's styles, no plugins and no
metadata. `/v1/jobs` never takes the route: its clients (the tray, `generate`) ran it already.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from dreamtray.engine.client import Engine, Job, JobCancelled, JobFailed
from dreamtray.engine.job_record import JobRecord
from dreamtray.engine.server import api_fields
from dreamtray.request import Request, Result

log = logging.getLogger("dreamtray.serve")


@dataclass(frozen=True)
class Routed:
    """What a request came back as: the engine's result, its images as PNG files to send (with their metadata
    when the route writes it) and the warnings for the client."""

    result: Result
    pngs: list[bytes]
    warnings: list[str]


class Route(Protocol):
    """The core's route, as the served APIs call it."""

    def generate(self, request: Request, *, save: bool, on_job: Callable[[Job], None]) -> Routed:
        """Make `request` (the client's, before plugins and styles); `save` keeps the images in the gallery."""

    def read_parameters(self, png: bytes) -> tuple[str, dict[str, str]] | None:
        """The A1111 `parameters` text of a PNG and its fields (A1111's names), or None when it has none."""


RouteFactory = Callable[[Engine], Route]
"""What `serve` is given: the route, made once for this service's engine."""


class Manager(Protocol):
    """What the routes need of a job manager (`jobs.JobManager`, the Ray ingress's)."""

    def submit(self, request: Request) -> JobRecord: ...

    def cancel(self, job: JobRecord) -> None: ...

    def interrupt(self, job: JobRecord) -> None: ...

    def unload(self) -> bool: ...


class ManagerJob:
    """A job of this service's manager, as the `Job` protocol that the core's route follows."""

    def __init__(self, manager: Manager, record: JobRecord):
        self.manager, self.record, self.id = manager, record, record.id

    def events(self) -> Iterator[dict[str, Any]]:
        return self.record.follow()

    def result(self) -> Result:
        for _ in self.record.follow():
            pass
        if self.record.status == "done" and self.record.result_json is not None:
            return Result.model_validate_json(self.record.result_json)
        if self.record.status == "cancelled":
            raise JobCancelled(self.record.error or "Cancelled.")
        raise JobFailed(self.record.error or "The job failed.")

    def cancel(self) -> None:
        self.manager.cancel(self.record)

    def interrupt(self) -> None:
        self.manager.interrupt(self.record)


class ManagerEngine:
    """This service's own job manager as the `Engine` the core's route submits to (no HTTP in between)."""

    name = "served"

    def __init__(self, manager: Manager, describe: Callable[[Request], str] = lambda request: ""):
        self.manager, self.describe = manager, describe

    def submit(self, request: Request) -> ManagerJob:
        api_fields.check_model(request.model)
        record = self.manager.submit(request)  # QueueFull when the queue is full: the API answers 429
        log.info("job %s queued: %s", record.id, self.describe(request))
        return ManagerJob(self.manager, record)

    def health(self) -> dict[str, Any]:
        return {"status": "ok", "service": "dreamtray"}

    def models(self) -> list[dict[str, Any]]:
        return []

    def unload(self) -> None:
        self.manager.unload()

    def close(self) -> None:
        """The service owns the manager: nothing to close here."""


class DirectRoute:
    """The engine alone, with the serving machine's styles: no plugins, no gallery, no metadata in the PNGs."""

    def __init__(self, engine: Engine, styles: api_fields.Styles | None):
        self.engine, self.styles = engine, styles

    def generate(self, request: Request, *, save: bool, on_job: Callable[[Job], None]) -> Routed:
        job = self.engine.submit(api_fields.apply_styles(request, self.styles))
        on_job(job)
        result = job.result()
        return Routed(result, list(result.images), list(result.warnings))

    def read_parameters(self, png: bytes) -> tuple[str, dict[str, str]] | None:
        return None
