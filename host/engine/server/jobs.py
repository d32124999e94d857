"""The service's job queue: a bounded queue in front of one worker process, one job on the device at a time.

A dispatcher thread feeds the worker and records each job's events; readers wait on a job's condition.
A worker that dies fails the job it was running with a clear message, and the next job starts a new one.
A watchdog bounds every wait on the worker: a job that sends no event for `stall_seconds` (a multiple of it
until the job starts, since starting a worker and loading a model send none) ends with a message saying so,
the worker is killed, and the queue moves on with a new one. A cancelled or stopping job gets a short grace.
A worker the kernel kills for memory (SIGKILL while the OOM-kill count rises: memory.py) is reported as out of
memory, with what to do; the one-off step it was in (converting, quantizing) is recorded, and the next request of
that model skips it rather than walk into the same wall.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from dreamtray.engine.job_record import FINISHED, JobRecord
from dreamtray.engine.server import memory
from dreamtray.engine.server.worker import WorkerProcess
from dreamtray.engine.settings import QUEUE_LENGTH, WorkerSettings
from dreamtray.request import Request

STOPPING = "Cancelled: the engine was stopped (`dreamtray engine stop`, or the session ended); nothing was made."
"""What every job ended by the engine's stop hears, queued or running."""
KEEP_FINISHED = 64
"""Jobs that may wait behind the running one, unless the service is started with another number."""
LOAD_FACTOR = 3
"""Until a job's first `start` event (worker start, model load), the watchdog waits this many stall times."""
CANCEL_GRACE = 10.0
"""Seconds a cancelled job's worker gets to stop by itself before it is killed."""
UNLOAD_WAIT = 1.0
"""An unload waits this long for the device; when a job holds it longer, the unload follows that job."""
POLL_SLICE = 1.0
"""The dispatcher looks at cancel requests at least this often while it waits on the worker."""


class QueueFull(RuntimeError):
    """More jobs are waiting than the queue holds."""


class JobManager:
    """Accepts jobs, runs them one by one on the worker, and keeps recent ones for their results."""

    def __init__(self, settings: WorkerSettings, max_queue: int = QUEUE_LENGTH):
        self.settings = settings
        self.pending: queue.Queue[JobRecord | None] = queue.Queue(maxsize=max_queue)
        self.jobs: OrderedDict[str, JobRecord] = OrderedDict()
        self.worker: WorkerProcess | None = None
        self.ready: WorkerProcess | None = None
        """A worker with its imports done and no model, started after an unload (settings.ready_worker)."""
        self.loaded_model: str | None = None
        self.torch_free = False
        """The last model the worker loaded ran on its torch-free side: a ready worker then imports no torch."""
        self.running: JobRecord | None = None
        self.last_activity = time.monotonic()
        self.cancel_asked: float | None = None
        self.asked: set[str] = set()
        """What was asked of the running job ("cancel", "finish"): signalled to its worker as the job is sent,
        so that a wish made before the worker has the job is not lost."""
        self.stopping = False
        self.unload_after_job = False
        self.one_off: dict[str, Any] | None = None
        """The one-off step the running job's worker is in (fast.py `_one_off`), for an out-of-memory report."""
        self.device_lock = threading.Lock()
        self.thread = threading.Thread(target=self._dispatch, name="dreamtray-dispatch", daemon=True)
        self.thread.start()
        self._start_ready(torch_free=True)  # a request is on its way: the worker starts while it comes

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
            self._leave_queue(job)
        elif job.status == "running":
            self.cancel_asked = time.monotonic()
            self._ask(job, "cancel")

    def interrupt(self, job: JobRecord) -> None:
        """A running job ends its image now, as far as it got, and keeps it; a queued one is left to run."""
        if job.status == "running":
            self._ask(job, "finish")

    def _ask(self, job: JobRecord, signal: str) -> None:
        if job is self.running:
            self.asked.add(signal)
            if self.worker is not None:
                getattr(self.worker, signal).set()

    def _leave_queue(self, job: JobRecord) -> None:
        """A job cancelled while it waits gives its place back at once (the prompt box's previews cancel often)."""
        with self.pending.mutex:
            try:
                self.pending.queue.remove(job)
            except ValueError:
                return
            self.pending.not_full.notify()

    def stop_jobs(self, reason: str) -> None:
        """End every job: queued ones at once, the running one by cancelling it (killed after a short grace)."""
        self.stopping = True
        for job in list(self.jobs.values()):
            if job.status == "queued":
                job.finish("cancelled", error=reason)
        if self.running is not None:
            self.cancel(self.running)

    def waiting(self) -> int:
        return self.pending.qsize()

    def unload(self) -> bool:
        """Stop the worker, which returns all of the model's memory. While a job runs, that happens right
        after it (and False is returned): an unload never waits on a job."""
        if not self.device_lock.acquire(timeout=UNLOAD_WAIT):
            self.unload_after_job = True
            return False
        try:
            self._stop_worker()
        finally:
            self.device_lock.release()
        return True

    def shutdown(self) -> None:
        """Stop: end every job (the running one within the cancel grace), then the worker and the dispatcher."""
        self.stop_jobs(STOPPING)
        with self.device_lock:
            self._stop_worker(then_ready=False)
            if self.ready is not None:
                self.ready.stop()
        try:
            self.pending.put_nowait(None)
        except queue.Full:
            pass  # the dispatcher sees `stopping` and ends with the jobs it takes

    def busy(self) -> bool:
        return self.running is not None or self.pending.qsize() > 0

    def _stop_worker(self, then_ready: bool = True) -> None:
        """Stop the worker (all of its memory goes back); a ready one takes its place unless `then_ready` is off."""
        had = self.worker is not None
        if had:
            self.worker.stop()
        self.worker, self.loaded_model = None, None
        if then_ready and had:
            self._start_ready()

    def _start_ready(self, torch_free: bool | None = None) -> None:
        """A ready worker, importing ahead for the torch-free side (`torch_free`, by default where the last model
        ran) or for torch."""
        torch_free = self.torch_free if torch_free is None else torch_free
        if self.settings.ready_worker and not self.stopping and not (self.ready and self.ready.alive()):
            self.ready = WorkerProcess(self.settings, ready="torch-free" if torch_free else "torch")

    def _idle_exit(self, worker: WorkerProcess) -> None:
        """A worker ended by itself: after an idle unload (exit code 0), a ready one takes its place."""
        if not self.device_lock.acquire(blocking=False):
            return  # a job or an unload holds the device, and takes care of the worker
        try:
            if worker is self.worker and worker.process.exitcode == 0:
                self.worker, self.loaded_model = None, None
                self._start_ready()
        finally:
            self.device_lock.release()

    def _new_worker(self) -> WorkerProcess:
        """The ready worker when there is one, else a new one; either way watched for an idle exit."""
        worker, self.ready = self.ready, None
        if worker is None or not worker.alive():
            worker = WorkerProcess(self.settings)
        worker.on_exit(self._idle_exit)
        return worker

    def _dispatch(self) -> None:
        while (job := self.pending.get()) is not None:
            if job.status != "queued":
                continue
            if self.stopping:
                job.finish("cancelled", error=STOPPING)
                continue
            with self.device_lock:
                self.asked, self.cancel_asked = set(), None
                self.running = job
                job.status = "running"
                try:
                    self._run(job, retry_on_idle_exit=True)
                finally:
                    self.running = None
                    self.last_activity = time.monotonic()
                if self.unload_after_job and self.pending.empty():
                    self.unload_after_job = False
                    self._stop_worker()

    def _run(self, job: JobRecord, retry_on_idle_exit: bool) -> None:
        if self.worker is None or not self.worker.alive():
            self.worker, self.loaded_model = self._new_worker(), None
        worker = self.worker
        self.one_off = None
        cgroups = memory.cgroup_folders(worker.pid) if worker.pid else []
        oom_kills = memory.oom_kills(cgroups)
        started = False
        worker.cancel.clear()  # the last job's signals go; this one's, asked so far, are given
        worker.finish.clear()
        for signal in list(self.asked):
            getattr(worker, signal).set()
        try:
            worker.conn.send(("generate", job.id, job.request.model_dump_json()))
            heard = time.monotonic()
            while True:
                bound = self._bound(started, heard)
                if not worker.conn.poll(min(POLL_SLICE, max(0.0, heard + bound - time.monotonic()))):
                    if time.monotonic() >= heard + bound:
                        self._stalled(job, worker, time.monotonic() - heard, started)
                        return
                    continue
                heard = time.monotonic()
                message = worker.conn.recv()
                kind, _, *payload = message
                if kind == "event":
                    started = started or payload[0].get("kind") == "start"
                    if "one_off" in payload[0] or payload[0].get("kind") == "start":
                        self.one_off = payload[0].get("one_off")
                    self._note(payload[0])
                    job.add_event(payload[0])
                elif kind == "result":
                    job.finish("done", result_json=payload[0])
                    return
                elif kind == "error":
                    stopped = payload[0] == "cancelled" and self.stopping  # the cancel came from the stop
                    job.finish(payload[0], error=STOPPING if stopped else payload[1])
                    return
        except (EOFError, OSError):
            reason = worker.exit_reason()
            self.worker, self.loaded_model = None, None
            if self.stopping:
                job.finish("cancelled", error=STOPPING)
                return
            if retry_on_idle_exit and not job.events and reason.endswith("code 0"):
                self._run(job, retry_on_idle_exit=False)  # it had just retired for being idle
                return
            if worker.process.exitcode == -9 and memory.oom_kills(cgroups) > oom_kills:
                job.finish("failed", error=self._out_of_memory(worker.pid))
                return
            job.finish(
                "failed",
                error=f"The engine's worker process stopped while generating ({reason}). "
                "Nothing else is lost; the next request starts a new worker.",
            )

    def _out_of_memory(self, pid: int | None) -> str:
        """The message for a worker the kernel killed for memory; the step it was in is recorded (memory.py)."""
        budget = memory.budget()
        ceiling = f"limit {memory.gib(budget.limit)}, {budget.where}" if budget.limit else memory.gib(budget.total)
        said = f"The engine ran out of memory: the system ended its worker (process {pid}; {ceiling})"
        step = self.one_off
        if not step:
            return (
                f"{said} while generating. Close other programs, or ask for a smaller size, fewer images or a "
                "smaller model; the next request starts a new worker."
            )
        memory.record_wall(Path(self.settings.cache_dir), step["model"], step["step"], step["room"])
        if step["step"] == "convert":
            instead, setting = "quality fast runs on torch", "engine.runtime = torch"
        else:
            instead, setting = "quality fast runs on OpenVINO without int8", "engine.openvino_int8 = false"
        return (
            f"{said} while {memory.STEP_LABELS[step['step']]} ({step['model']}). The next request skips that step "
            f"({instead}) until the engine has more memory: close other programs or raise the engine's memory "
            f"limit; or set {setting} in the config."
        )

    def _bound(self, started: bool, heard: float) -> float:
        """Seconds after `heard` (the worker's last message) before the job counts as stalled."""
        stall = self.settings.stall_seconds
        bound = stall if started else stall * LOAD_FACTOR
        if self.cancel_asked is not None:
            bound = min(bound, max(0.0, self.cancel_asked + CANCEL_GRACE - heard))
        return bound

    def _stalled(self, job: JobRecord, worker: WorkerProcess, bound: float, started: bool) -> None:
        """The watchdog fired: kill the worker (a new one starts for the next job) and say what happened."""
        pid = worker.pid
        worker.kill()
        self.worker, self.loaded_model = None, None
        if self.cancel_asked is not None and self.stopping:
            job.finish("cancelled", error=STOPPING)
            return
        if self.cancel_asked is not None:
            job.finish(
                "cancelled",
                error=f"Cancelled; the engine's worker (process {pid}) did not stop by itself, so it was ended.",
            )
            return
        phase = "after its last progress" if started else "while starting (worker start and model load)"
        job.finish(
            "failed",
            error=f"The engine made no progress for {bound:.0f} s {phase}, so its worker (process {pid}) was ended "
            "and a new one starts for the next image. If this model really needs longer per step, raise "
            "engine.stall_seconds.",
        )

    def _note(self, event: dict[str, Any]) -> None:
        if event.get("kind") == "loading" and "model" in event:  # (not a step of the load: "Converting ...")
            self.loaded_model = event["model"]
            self.torch_free = bool(event.get("torch_free"))
