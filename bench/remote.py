"""Remote engine through loopback against the local engine, same request: overhead per image and throughput.

    python bench/remote.py [--size 512] [--steps 4] [--repeat 5] [--jobs-per-client 3] [--plain]

The remote engine is `dreamtray serve` (TLS with a self-signed certificate unless --plain, token, rate limit)
used through the `remote` engine plugin; the local engine is this machine's engine service as the tray uses
it (LocalEngine). Each engine reports how long its worker spent generating, so the overhead of each path
(wall time minus generation) is measured apart from the generation itself, which other load on the machine
makes noisy. Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from remote_helpers import ServeProcess, self_signed_certificate  # noqa: E402

from dreamtray.engine.client import LocalEngine  # noqa: E402
from dreamtray.engine.server.worker import WorkerSettings  # noqa: E402
from dreamtray.request import Request  # noqa: E402
from dreamtray_plugins.remote.service import RemoteService  # noqa: E402
from dreamtray_plugins.remote.transport import tls_verify  # noqa: E402


def timed(engine, request: Request) -> tuple[float, float, int]:
    """Wall time seen by the client, the part spent generating (reported by the engine), the PNG's size."""
    started = time.perf_counter()
    result = engine.submit(request).result()
    return time.perf_counter() - started, result.seconds, len(result.images[0])


def throughput(make_client, request: Request, clients: int, jobs_each: int) -> tuple[float, float]:
    """With `clients` clients each sending `jobs_each` requests one after another: images a second, and the
    share of the time the worker spent generating (how well the clients keep one worker busy)."""
    engines = [make_client() for _ in range(clients)]
    barrier = threading.Barrier(clients + 1)
    generating: list[float] = []

    def work(engine) -> None:
        barrier.wait()
        for index in range(jobs_each):
            generating.append(engine.submit(request.model_copy(update={"seed": index})).result().seconds)

    threads = [threading.Thread(target=work, args=(engine,)) for engine in engines]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    for engine in engines:
        engine.close()
    return clients * jobs_each / elapsed, sum(generating) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=6)
    parser.add_argument("--jobs-per-client", type=int, default=2)
    parser.add_argument("--plain", action="store_true", help="plain HTTP instead of TLS for the remote engine")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="dreamtray-bench-"))
    cache = root / "cache" / "dreamtray" / "models"  # the models folder `dreamtray serve` uses under XDG_CACHE_HOME
    request = Request(
        prompt="a lighthouse on a cliff at dusk", seed=1, steps=args.steps, width=args.size, height=args.size
    )
    local_engine = LocalEngine(
        WorkerSettings(cache_dir=str(cache), default_model="tiny"), root / "state", root / "token", 600
    )
    tls: list[str] = []
    verify: object = True
    if not args.plain:
        cert, key = self_signed_certificate(root)
        tls, verify = ["--tls-cert", str(cert), "--tls-key", str(key)], tls_verify(str(cert))
    server = ServeProcess(root, *tls, "--rate-limit", "100000", scheme="http" if args.plain else "https")
    try:
        server.wait_ready(verify=verify, timeout=60)

        def remote_client() -> RemoteService:
            return RemoteService(server.url, server.token, verify=verify, timeout=300)

        remote = remote_client()
        for engine in (local_engine, remote):
            timed(engine, request)  # warm: worker started, model loaded
        local, remote_runs = [], []
        for _ in range(args.repeat):  # interleaved, so that load from elsewhere hits both alike
            local.append(timed(local_engine, request))
            remote_runs.append(timed(remote, request))
        png_bytes = local[0][2]

        def overhead(runs) -> float:
            """Median of (wall - generation): transport, queueing and the hop to the worker, without the noise of generation."""
            return statistics.median(wall - generating for wall, generating, _ in runs)

        generating = statistics.median(run[1] for run in local + remote_runs)
        local_wall, remote_wall = (statistics.median(run[0] for run in runs) for runs in (local, remote_runs))
        scheme = "HTTP" if args.plain else "HTTPS"
        print(
            f"request: tiny model, {args.size}x{args.size}, {args.steps} steps, PNG of {png_bytes / 1024:.0f} KiB; "
            f"medians of {args.repeat}, interleaved"
        )
        print(f"  generation inside the worker:              {generating * 1000:8.1f} ms")
        print(
            f"  local engine (LocalEngine, loopback HTTP): {local_wall * 1000:8.1f} ms wall, overhead {overhead(local) * 1000:6.1f} ms"
        )
        print(
            f"  remote engine (dreamtray serve, {scheme}): {remote_wall * 1000:8.1f} ms wall, overhead {overhead(remote_runs) * 1000:6.1f} ms"
        )
        extra = overhead(remote_runs) - overhead(local)
        print(
            f"  remote vs local: {extra * 1000:+.1f} ms per image; ratio from overheads "
            f"{(generating + overhead(remote_runs)) / (generating + overhead(local)):.3f}, "
            f"ratio of wall medians {remote_wall / local_wall:.3f} (target <= 1.10)"
        )
        print(f"throughput of the remote engine ({args.jobs_per_client} requests per client, one worker):")
        for clients in (1, 2, 4):
            rate, busy = throughput(remote_client, request, clients, args.jobs_per_client)
            print(f"  {clients} concurrent client(s): {rate:.2f} images/s, worker generating {busy:.1%} of the time")
        remote.close()
    finally:
        server.stop()
        local_engine.stop()
        local_engine.close()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
