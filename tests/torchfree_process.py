"""Run `quality = fast` jobs through the engine's worker loop (worker.serve_jobs) in a fresh process, and report
what that process imported.

Usage: python torchfree_process.py CACHE_DIR MODEL OUT.json
The worker loop runs on a thread of this process, fed over a pipe as the service feeds it; a hub MODEL comes from
the hub HF_ENDPOINT names. OUT.json gets, per job, its events' kinds and messages, the image and its warnings, and
then the top-level modules imported.
"""

from __future__ import annotations

import json
import multiprocessing
import sys
import threading
from pathlib import Path

from dreamtray.engine.server.worker import serve_jobs
from dreamtray.engine.settings import WorkerSettings
from dreamtray.request import Request

WAIT = 300
"""Seconds the worker loop may stay silent before the run gives up."""
JOBS = [
    Request(prompt="a red fox", seed=5, steps=2, guidance=0.0, width=64, height=64, quality="fast", preview_every=1),
    Request(
        prompt="a red fox",
        negative_prompt="blur",
        seed=7,
        steps=3,
        guidance=5.0,
        width=64,
        height=64,
        quality="fast",
        sampler="Euler a",
    ),
]


def main() -> None:
    cache, model, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    conn, child = multiprocessing.Pipe()
    settings = WorkerSettings(cache_dir=cache, default_model=model, overrides={"runtime": "openvino"})
    thread = threading.Thread(
        target=serve_jobs, args=(child, settings, threading.Event(), threading.Event()), daemon=True
    )
    thread.start()
    jobs = []
    for index, request in enumerate(JOBS):
        conn.send(("generate", str(index), request.model_dump_json()))
        events = []
        while True:
            if not conn.poll(WAIT):
                raise SystemExit(f"the worker loop sent nothing for {WAIT} s (it may have died: see above)")
            if (message := conn.recv())[0] != "event":
                break
            events.append(message[2])
        jobs.append({"events": events, "answer": list(message)})
    conn.send(("quit",))
    thread.join(timeout=60)
    modules = sorted({name.split(".")[0] for name in sys.modules})
    out.write_text(json.dumps({"jobs": jobs, "modules": modules}))


if __name__ == "__main__":
    main()
