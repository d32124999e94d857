"""The worker process: the only process that imports torch, and only for the jobs that need it (a `fast` job on a
model exported to OpenVINO runs without: torchfree.py). It runs one job at a time for the service.

It talks to the service over a multiprocessing connection and exits by itself after an idle time, which is
how an idle model's memory really goes back to the system and the GPU; the service may then start a ready one
that holds no model.

Messages in:  ("generate", job_id, request_json) | ("unload",) | ("quit",)
Messages out: ("event", job_id, dict) | ("result", job_id, result_json) | ("error", job_id, kind, message)
              | ("unloaded",)
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from dreamtray.engine.settings import WorkerSettings


def serve_jobs(conn: Connection, settings: WorkerSettings, cancel: Any, finish: Any, ready: str | None = None) -> None:
    """The worker's loop: answer messages until told to quit, or idle for too long with a model loaded.

    A request that the torch-free side takes (torchfree.py: `fast` on a model exported to OpenVINO) runs there,
    and torch and diffusers are imported only for the first request that needs them. A `ready` worker (started
    after an unload) imports what the next job will need first (`"torch"`: the torch runner's imports too;
    `"torch-free"`: OpenVINO and the tokenizer only), then waits for one with no time limit, holding no model.
    """
    from dreamtray.engine.server.download import DownloadCancelled
    from dreamtray.engine.server.models import ModelError
    from dreamtray.engine.server.runner import GenerationCancelled, GenerationError
    from dreamtray.engine.server.torchfree import TorchFreeRunner
    from dreamtray.request import Request

    light = TorchFreeRunner(Path(settings.cache_dir), settings.default_model, settings.to_overrides())
    runner = None
    if ready == "torch-free" and not light.usable():  # a GPU or a Mac: the torch side serves every job
        ready = "torch"
    if ready:
        _import_ahead()
    if ready == "torch":
        runner = torch_runner(settings)
        runner.import_ahead()
    while conn.poll((settings.idle_unload_seconds or None) if light.loaded or runner and runner.loaded else None):
        message = conn.recv()
        if message[0] == "quit":
            return
        if message[0] == "unload":
            light.unload()
            if runner is not None:
                runner.unload()
            conn.send(("unloaded",))
            continue
        _, job_id, request_json = message  # cancel and finish: the service clears them as it sends a job
        emit = lambda event: conn.send(("event", job_id, event))  # noqa: E731
        try:
            request = Request.model_validate_json(request_json)
            if light.takes(request, emit, cancel.is_set):
                if runner is not None:
                    runner.unload()  # one model at a time
                result = light.generate(request, emit=emit, cancelled=cancel.is_set, finish_early=finish.is_set)
            else:
                light.unload()  # one model at a time
                runner = runner or torch_runner(settings)
                result = runner.generate(request, emit=emit, cancelled=cancel.is_set, finish_early=finish.is_set)
            conn.send(("result", job_id, result.model_dump_json()))
        except GenerationCancelled:
            conn.send(("error", job_id, "cancelled", "Cancelled; the half-done image was discarded."))
        except DownloadCancelled as exc:
            conn.send(("error", job_id, "cancelled", str(exc)))
        except (ModelError, GenerationError, ValueError) as exc:
            conn.send(("error", job_id, "failed", str(exc)))
        except Exception as exc:  # anything else is reported, and the worker stays up for the next job
            conn.send(("error", job_id, "failed", f"{type(exc).__name__}: {exc}"))


def torch_runner(settings: WorkerSettings):
    """The torch runner (runner.py): imports torch and diffusers on its first job."""
    from diffusers.utils import logging as diffusers_logging

    from dreamtray.engine.server.runner import Runner

    diffusers_logging.disable_progress_bar()
    return Runner(
        cache_dir=Path(settings.cache_dir),
        default_model=settings.default_model,
        overrides=settings.to_overrides(),
        allow_pickle=settings.allow_pickle,
        single_file_config=settings.single_file_config,
    )


def _import_ahead() -> None:
    """What the torch-free side's job needs (OpenVINO, the tokenizer, PNG writing); a failure is the job's to say."""
    try:
        import PIL.PngImagePlugin  # noqa: F401
        import tokenizers  # noqa: F401

        import dreamtray.engine.server.ov_pipeline  # noqa: F401
    except Exception:
        pass


def _exit_with_parent(parent: int) -> None:
    """End this worker when the service that started it is gone (killed, say), even in the middle of a job."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def _main(conn: Connection, settings: dict[str, Any], cancel: Any, finish: Any, parent: int, ready: str | None) -> None:
    threading.Thread(target=_exit_with_parent, args=(parent,), name="dreamtray-parent-watch", daemon=True).start()
    try:
        serve_jobs(conn, WorkerSettings(**settings), cancel, finish, ready)
    except (EOFError, KeyboardInterrupt, BrokenPipeError):
        pass  # the service went away: nothing to report to
    finally:
        conn.close()
    os._exit(0)  # at once: the interpreter's own teardown with torch loaded takes seconds and frees nothing more


class WorkerProcess:
    """The service's handle on a running worker process (`ready`: one that imports ahead, see serve_jobs)."""

    def __init__(self, settings: WorkerSettings, ready: str | None = None):
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.cancel = context.Event()
        self.finish = context.Event()
        """Set: the running job ends its image now, as far as it got, and keeps it (A1111's Interrupt)."""
        self.process = context.Process(
            target=_main,
            args=(child, asdict(settings), self.cancel, self.finish, os.getpid(), ready),
            daemon=True,
            name="dreamtray-worker",
        )
        self.process.start()
        child.close()
        # Reap the process as soon as it exits (idle retirement, crash), so that it leaves no zombie behind.
        # Only this thread waits for the process: two waiters race for its exit status.
        self.exit_callbacks: list[Callable[[WorkerProcess], None]] = []
        self.reaper = threading.Thread(target=self._reap, name="dreamtray-worker-reaper", daemon=True)
        self.reaper.start()

    def _reap(self) -> None:
        self.process.join()
        for callback in list(self.exit_callbacks):  # on a thread of their own: `alive()` is already False there
            threading.Thread(target=callback, args=(self,), name="dreamtray-worker-exit", daemon=True).start()

    def on_exit(self, callback: Callable[[WorkerProcess], None]) -> None:
        """Call `callback(self)` once the process has ended and been reaped."""
        self.exit_callbacks.append(callback)

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def alive(self) -> bool:
        return self.reaper.is_alive()

    def exit_reason(self) -> str:
        self.reaper.join(timeout=2)
        code = self.process.exitcode
        if code is None:
            return "it stopped answering"
        if code < 0:
            import signal

            return f"it was killed by {signal.Signals(-code).name}"
        return f"it exited with code {code}"

    def stop(self) -> None:
        """Ask the worker to quit; kill it when it has not within a few seconds (busy, or stopped)."""
        try:
            self.conn.send(("quit",))
        except (OSError, BrokenPipeError):
            pass
        self.reaper.join(timeout=5)
        self.kill()

    def kill(self) -> None:
        """End the worker now (SIGKILL also ends a stopped process) and wait until it is reaped."""
        if self.reaper.is_alive():
            self.process.kill()
            self.reaper.join(timeout=10)
        self.conn.close()
