"""The process that converts a model to OpenVINO in the background (background_conversion.py starts it).

`python -m dreamtray.engine.server.conversion_process SETTINGS_JSON REQUEST_JSON` lowers its own CPU and disk
priority, watches the worker that started it (and ends with it), then makes the request on the fast path with a
runner of those settings (a worker's, as JSON): converting, quantizing and compiling the model into the shared
cache. Its lines go to the log the worker gave it; it exits 0 once the model runs on OpenVINO, 1 otherwise.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any

from dreamtray.engine.settings import WorkerSettings
from dreamtray.request import Request

PRIORITY = 19
"""The niceness of the process (the lowest priority on Linux and macOS)."""


def main(argv: list[str]) -> int:
    settings_json, request_json = argv
    _lower_priority()
    _end_with_parent(os.getppid())
    from dreamtray.engine.server.worker import torch_runner  # after the watch: imports take seconds

    runner = torch_runner(WorkerSettings(**json.loads(settings_json)))
    print(f"Converting {runner.default_model} at niceness {os.nice(0) if hasattr(os, 'nice') else '-'}", flush=True)

    def emit(event: dict[str, Any]) -> None:
        if event.get("message"):
            print(event["message"], flush=True)

    result = runner.generate(Request.model_validate_json(request_json), emit)
    if runner.loaded is not None and runner.loaded.extras.get("openvino") is not None:
        print("Done.", flush=True)
        return 0
    print("Not converted:", *result.warnings, sep="\n", flush=True)
    return 1


def _lower_priority() -> None:
    """The lowest CPU priority, and the idle disk class where the system has one (Linux)."""
    import psutil

    process = psutil.Process()
    if hasattr(os, "nice"):
        os.nice(PRIORITY)
    else:  # Windows
        process.nice(psutil.IDLE_PRIORITY_CLASS)
    if hasattr(psutil, "IOPRIO_CLASS_IDLE"):
        try:
            process.ionice(psutil.IOPRIO_CLASS_IDLE)
        except (psutil.Error, OSError):
            pass


def _end_with_parent(parent: int) -> None:
    """End this process when the worker that started it ends (a stopped engine leaves no conversion behind)."""
    import psutil

    def watch() -> None:
        while True:
            try:
                gone = not psutil.Process(parent).is_running()
            except psutil.NoSuchProcess:
                gone = True
            if gone or os.getppid() != parent:
                os._exit(1)
            time.sleep(1.0)

    threading.Thread(target=watch, name="dreamtray: parent watch", daemon=True).start()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
