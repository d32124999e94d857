"""The service's job queue: a bounded queue in front of one worker process, one job on the device at a time.

A dispatcher thread feeds the worker and records each job's events; readers wait on a job's condition.
A worker that dies fails the job it was running with a clear message, and the next job starts a new one.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import OrderedDict
from typing import Any

from dreamtray.engine.job_record import FINISHED, JobRecord
from dreamtray.engine.server.worker import WorkerProcess
from dreamtray.engine.settings import WorkerSettings
from dreamtray.request import Request

KEEP_FINISHED = 64
DEFAULT_MAX_QUEUE = 8
"""Jobs that may wait behind the running one, unless the service is started with another number."""


class QueueFull(RuntimeError):
    """More jobs are waiting than the queue holds."""


class JobManager:
    """Accepts jobs, runs them one by one on the worker, and keeps recent ones for their results."""

    def __init__(self, settings: WorkerSettings, max_queue: int = DEFAULT_MAX_QUEUE):
        self.settings = settings
        self.pending: queue.Queue[JobRecord | None] = queue.Queue(maxsize=max_queue)
        self.jobs: OrderedDict[str, JobRecord] = OrderedDict()
        self.worker: WorkerProcess | None = None
        self.loaded_model: str | None = None
        self.running: JobRecord | None = None
        self.last_activity = time.monotonic()
        self.device_lock = threading.Lock()
        self.thread = threading.Thread(target=self._dispatch, name="dreamtray-dispatch", daemon=True)
        self.thread.start()

    def submit(self, request: Request) -> JobRecord:
        job = JobRecord(request)
        try:
            self.pending.put_nowait(job)
        except queue.Full:
            raise QueueFull(f"{self.pending.maxsize} jobs are already waiting; try again when one is done") from None
        self.jobs[job.id] = job
        while len(self.jobs) > KEEP_FINISHED + self.pending.maxsize:
            oldest = next(iter(self.jobs.values()))
            if oldest.status not in FINISHED:
                break
            self.jobs.popitem(last=False)
        self.last_activity = time.monotonic()
        return job

    def get(self, job_id: str) -> JobRecord | None:
        return self.jobs.get(job_id)

    def cancel(self, job: JobRecord) -> None:
        if job.status == "queued":
            job.finish("cancelled", error="Cancelled before it started.")
        elif job.status == "running" and self.worker is not None:
            self.worker.cancel.set()

    def waiting(self) -> int:
        return self.pending.qsize()

    def unload(self) -> None:
        """Stop the worker (after the running job), which returns all of the model's memory."""
        with self.device_lock:
            self._stop_worker()

    def shutdown(self) -> None:
        self.pending.put(None)
        self.unload()

    def busy(self) -> bool:
        return self.running is not None or self.pending.qsize() > 0

    def _stop_worker(self) -> None:
        if self.worker is not None:
            self.worker.stop()
        self.worker, self.loaded_model = None, None

    def _dispatch(self) -> None:
        while (job := self.pending.get()) is not None:
            if job.status != "queued":
                continue
            with self.device_lock:
                self.running = job
                job.status = "running"
                try:
                    self._run(job, retry_on_idle_exit=True)
                finally:
                    self.running = None
                    self.last_activity = time.monotonic()

    def _run(self, job: JobRecord, retry_on_idle_exit: bool) -> None:
        if self.worker is None or not self.worker.alive():
            self.worker, self.loaded_model = WorkerProcess(self.settings), None
        worker = self.worker
        try:
            worker.conn.send(("generate", job.id, job.request.model_dump_json()))
            while True:
                message = worker.conn.recv()
                kind, _, *payload = message
                if kind == "event":
                    self._note(payload[0])
                    job.add_event(payload[0])
                elif kind == "result":
                    job.finish("done", result_json=payload[0])
                    return
                elif kind == "error":
                    job.finish(payload[0], error=payload[1])
                    return
        except (EOFError, OSError):
            reason = worker.exit_reason()
            self.worker, self.loaded_model = None, None
            if retry_on_idle_exit and not job.events and reason.endswith("code 0"):
                self._run(job, retry_on_idle_exit=False)  # it had just retired for being idle
                return
            job.finish(
                "failed",
                error=f"The engine's worker process stopped while generating ({reason}). "
                "Nothing else is lost; the next request starts a new worker.",
            )

    def _note(self, event: dict[str, Any]) -> None:
        if event.get("kind") == "loading":
            self.loaded_model = event.get("model")
