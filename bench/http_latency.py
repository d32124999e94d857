"""HTTP round trips to the engine service with its listening socket made as TCP, and without (proto 0).

Run:  python bench/http_latency.py [--requests 20]

asyncio sets TCP_NODELAY on accepted connections only when the listening socket's `proto == IPPROTO_TCP`.
With `socket.socket(family, SOCK_STREAM)` (proto 0) the service's answers go out under Nagle's algorithm, and
a small answer written in two pieces (headers, then body) waits for the client's delayed ACK (~40 ms on Linux).
`service.bind()` therefore passes IPPROTO_TCP. This starts the service twice, once as it is and once with a
proto-0 `bind`, and times GET /health and a POST /v1/jobs that is refused (400) on each.
No worker is started: only the HTTP layer is measured.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from measure import median, seconds, table

CHILD = """
import socket, sys
import dreamtray.engine.server.service as service

def bind_proto0(host, port):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock

if sys.argv[1] == "proto0":
    service.bind = bind_proto0
service.main(sys.argv[2:])
"""


def round_trips(variant: str, requests: int) -> tuple[float, float]:
    from dreamtray.engine.client import ServiceEngine
    from dreamtray.engine.server.worker import WorkerSettings
    from dreamtray.engine.token import load_or_create_token

    with tempfile.TemporaryDirectory(prefix="dreamtray-http-") as scratch:
        root = Path(scratch)
        token = load_or_create_token(root / "token")
        settings = json.dumps(asdict(WorkerSettings(cache_dir=str(root))))
        state = root / "state.json"
        child = subprocess.Popen(
            [
                sys.executable,
                "-c",
                CHILD,
                variant,
                "--settings",
                settings,
                "--token-file",
                str(root / "token"),
                "--state-file",
                str(state),
            ]
        )
        try:
            while not state.exists():
                time.sleep(0.05)
            client = ServiceEngine(json.loads(state.read_text())["url"], token)
            client.health()
            health = median(seconds(client.health)[0] for _ in range(requests))
            refused = median(
                seconds(
                    lambda: client.http.post(
                        "/v1/jobs", content=b'{"prompt": " "}', headers={"content-type": "application/json"}
                    )
                )[0]
                for _ in range(requests)
            )
            client.shutdown()
            client.close()
        finally:
            child.wait(timeout=15)
    return 1000 * health, 1000 * refused


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20)
    args = parser.parse_args()
    rows = []
    variants = (("proto0", "proto 0 (Nagle on)"), ("as-is", "service.bind: IPPROTO_TCP (TCP_NODELAY set by asyncio)"))
    for variant, label in variants:
        health, refused = round_trips(variant, args.requests)
        rows.append((label, health, refused))
    table(
        f"Service round trips, median of {args.requests} (ms)",
        ("listening socket", "GET /health", "POST /v1/jobs (400)"),
        rows,
    )


if __name__ == "__main__":
    main()
