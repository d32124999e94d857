"""The one way dreamtray starts Ray: local, in this process, with nothing sent off the machine.

A plain `ray.init()` asks cloud metadata addresses on the network which cloud it runs in, at every start,
even with usage statistics off. Ray skips that when `$HOME/ray_bootstrap_config.yaml` exists, so Ray gets
its own short-lived HOME holding that (empty) file, plus usage statistics and token authentication off,
no dashboard, a small object store and a short temporary folder (long paths break Ray's AF_UNIX sockets).
Every Ray start (the `serve --ray` command, tests, benchmarks) goes through `local_ray`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

OBJECT_STORE_BYTES = 256 * 2**20
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}


@contextmanager
def local_ray(num_cpus: int = 2, num_gpus: int | None = None) -> Iterator[Path]:
    """Ray running in this process for the duration of the block; yields its temporary root folder."""
    import ray

    root = Path(tempfile.mkdtemp(prefix="dtray-"))
    (root / "ray_bootstrap_config.yaml").touch()
    saved = {name: os.environ.get(name) for name in ("HOME", *RAY_ENV)}
    os.environ.update({"HOME": str(root), **RAY_ENV})
    try:
        ray.init(
            address="local",
            num_cpus=num_cpus,
            num_gpus=num_gpus,
            include_dashboard=False,
            log_to_driver=False,
            object_store_memory=OBJECT_STORE_BYTES,
            _temp_dir=str(root / "t"),
            configure_logging=False,
        )
        yield root
    finally:
        ray.shutdown()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(root, ignore_errors=True)


def serve_http_options(host: str, port: int, ssl: dict[str, str] | None = None) -> dict[str, object]:
    """Ray Serve's HTTP proxy options: on the given address (loopback unless asked), with TLS when given."""
    return {"host": host, "port": port, **(ssl or {})}
