"""Run one `quality = fast` job of the tiny model on OpenVINO in a fresh process, as a user's engine would.

Usage: python openvino_process.py CACHE_DIR OUT.json AUDIT.log
Every attempt to resolve or reach a host that is not this machine is written to AUDIT.log and refused, in this
process and in any process forked from it (audit hooks are inherited by a fork).
"""

from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path

LOOPBACK = ("127.", "::1", "localhost")
QUIET_SWITCHES = ("CI", "NNCF_CI", "NNCF_DEV")
"""Environment variables that silence OpenVINO's and NNCF's telemetry by themselves: a test must not lean on them."""


def run_refusing_the_network(script: Path, first: Path, tmp: Path, name: str) -> dict:
    """Run `script FIRST OUT.json AUDIT.log` in a new process with a home of its own and the network refused;
    check that nothing tried to reach it and that no telemetry client ran; return what it wrote to OUT.json."""
    import subprocess

    home = tmp / f"home-{name}"
    home.mkdir()
    audit, out = tmp / f"audit-{name}.log", tmp / f"{name}.json"
    env = {**os.environ, "HOME": str(home), "HF_HUB_OFFLINE": "1"}
    for quiet in QUIET_SWITCHES:
        env.pop(quiet, None)
    done = subprocess.run(
        [sys.executable, str(script), str(first), str(out), str(audit)],
        env=env,
        capture_output=True,
        encoding="utf-8",  # NNCF draws its progress bars with box-drawing characters, whatever the locale
        errors="replace",
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert not audit.exists(), f"something tried to reach the network: {audit.read_text()}"
    assert not (home / "intel").exists(), "OpenVINO's telemetry wrote its client id: it was running"
    return json.loads(out.read_text())


def refuse_the_network(log: Path) -> None:
    def hook(event: str, args: tuple) -> None:
        if event in ("socket.getaddrinfo", "socket.connect", "socket.sendto"):
            host = args[0] if event == "socket.getaddrinfo" else args[1]
            host = host[0] if isinstance(host, tuple) else host
            if isinstance(host, (str, bytes)) and str(host).startswith(LOOPBACK):
                return
            if isinstance(host, (str, bytes)) and "/" in str(host):  # a Unix socket path
                return
            with open(log, "a") as out:
                out.write(f"{os.getpid()} {event} {args!r}\n")
            raise PermissionError(f"no network in this test: {event} {args!r}")

    sys.addaudithook(hook)


def main() -> None:
    cache, out, audit = (Path(arg) for arg in sys.argv[1:4])
    refuse_the_network(audit)
    from dreamtray.engine.server.hardware import Machine
    from dreamtray.engine.server.runner import Runner
    from dreamtray.request import Request

    runner = Runner(cache_dir=cache, default_model="tiny", machine=Machine(cpu_cores=2, ram_gb=24, openvino=True))
    events: list[dict] = []
    request = Request(prompt="a red fox", seed=5, steps=2, width=64, height=64, quality="fast", preview_every=1)
    result = runner.generate(request, events.append)
    answer = {
        "messages": [e.get("message", "") for e in events if e["kind"] in ("loading", "warning")],
        "previews": [e["step"] for e in events if e["kind"] == "preview"],
        "warnings": result.warnings,
        "light": runner.loaded.light,
        "int8": runner.loaded.extras["openvino"].int8 and runner.loaded.extras["openvino"].int8_decoder,
        "png": base64.b64encode(result.images[0]).decode(),
    }
    out.write_text(json.dumps(answer))


if __name__ == "__main__":
    main()
