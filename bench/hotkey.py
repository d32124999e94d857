"""Benchmark: a real key press to the PNG on the clipboard, against the engine's own time for the same request.

Runs in a private virtual desktop (Xvfb, D-Bus, dunst, trayer) with `dreamtray run` on the tiny model, and
prints figures only (no assertions):
- seconds from launching `dreamtray run` until its icon is docked in the tray;
- the host's resident memory (RSS) once it is up, before the first image;
- per round: hotkey -> clipboard (ms), the engine alone for the same request (ms, and its own compute time),
  the overhead (ms) and the ratio; and, from the host's log, where the hotkey's time went: key press to job
  (xdotool, pynput, reading the selection), the engine's part, the host's own steps; then the medians.

    python bench/hotkey.py [--rounds 5]

The tiny model makes 512x512 images in 2 steps: the overhead is what matters, not the picture.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import psutil  # noqa: E402
from tray_process import TrayProcess, newest, press, read_clipboard_png, serve_primary, tray_home  # noqa: E402
from xsession import XSession, wait_until  # noqa: E402

PREVIEW_EVERY = 1
"""The tray's default `preview_every`: the engine-alone round asks for the same previews as the hotkey's job."""
PROMPTS = [
    "a lighthouse at dusk",
    "a bowl of cherries",
    "a paper boat",
    "a misty forest",
    "a red fox in snow",
    "an old tram",
    "a field of sunflowers",
    "a snowy cabin",
]


def clipboard_owner(display: str) -> int:
    from Xlib import display as xdisplay

    conn = xdisplay.Display(display)
    try:
        owner = conn.get_selection_owner(conn.intern_atom("CLIPBOARD"))
        return owner.id if owner else 0
    finally:
        conn.close()


def take_clipboard(session: XSession) -> int:
    """Put some text on the clipboard, so that the next owner is the image's."""
    keeper = session.spawn(["xclip", "-quiet", "-selection", "clipboard"], stdin=subprocess.PIPE)
    keeper.stdin.write(b"placeholder")
    keeper.stdin.close()
    return wait_until(lambda: clipboard_owner(session.display), 10, "the clipboard")


def hotkey_round(session: XSession, tray: TrayProcess, prompt: str) -> tuple[float, Path]:
    serve_primary(session, prompt)
    before = take_clipboard(session)
    start = time.perf_counter()
    press(session, "ctrl+alt+i")
    wait_until(lambda: clipboard_owner(session.display) not in (0, before), 300, "the image on the clipboard", 0.002)
    elapsed = time.perf_counter() - start
    image = newest(tray.home.gallery)[-1]
    # The keeper owns the clipboard a moment before it answers: read until the bytes are there (not timed).
    wait_until(
        lambda: read_clipboard_png(session) == image.read_bytes(), 10, "the newest gallery image on the clipboard"
    )
    tray.wait_idle()
    return elapsed, image


JOB_LINE = re.compile(
    r"job \(hotkey\) done: (\d+) ms in all: wait (\d+) ms, to engine (\d+) ms, "
    r"engine (\d+) ms, save, action (\d+) ms"
)


def job_steps_ms(tray: TrayProcess, round_number: int) -> tuple[int, int, int]:
    """From the host's log, for a hotkey job: its whole time (from the text being read to the action's end),
    the engine's part of it (submit to the last progress event), and the host's own steps (queue, submit,
    save, clipboard action)."""
    jobs = wait_until(
        lambda: (found := JOB_LINE.findall(tray.log_text())) and len(found) > round_number and found,
        10,
        "the job in the log",
    )
    total, wait, to_engine, engine, save_action = (int(value) for value in jobs[round_number])
    return total, engine, wait + to_engine + save_action


def engine_round(tray: TrayProcess, image: Path) -> tuple[float, float]:
    """The same request (prompt, seed, size, steps) straight to the tray's engine: wall time and compute time."""
    from dreamtray.engine.client import ServiceEngine
    from dreamtray.images.metadata import read_metadata

    request = read_metadata(image).request.model_copy(update={"preview_every": PREVIEW_EVERY})
    state = json.loads((tray.home.root / "state/dreamtray/engine.json").read_text())
    token = (tray.home.root / "data/dreamtray/engine-token").read_text().strip()
    engine = ServiceEngine(state["url"], token)
    try:
        start = time.perf_counter()
        result = engine.submit(request).result()
        return time.perf_counter() - start, result.seconds
    finally:
        engine.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    with XSession() as session, tempfile.TemporaryDirectory(prefix="dreamtray-bench-") as root:
        session.start_tray()
        home = tray_home(Path(root), session)
        tray = TrayProcess(home)
        try:
            _, visible = tray.wait_docked()
            wait_until(lambda: (Path(root) / "state/dreamtray/engine.json").is_file(), 60, "the engine service")
            status = tray.status()
            rss = psutil.Process(tray.pid).memory_info().rss
            print(f"tray icon docked after launch: {visible:.2f} s")
            print(
                f"host RSS before the first image: {rss / 2**20:.1f} MiB (torch imported: {status['torch_imported']})"
            )
            warm = tray.trigger("clipboard", "--prompt", "warm up", "--wait", timeout=600)
            if warm.returncode:
                raise SystemExit(f"warm-up failed: {warm.stderr}")
            print(f"host RSS after the first image: {psutil.Process(tray.pid).memory_info().rss / 2**20:.1f} MiB")
            print()
            print(
                f"{'round':>5} {'hotkey->clipboard ms':>21} {'engine alone ms':>16} {'engine compute ms':>18} "
                f"{'overhead ms':>12} {'ratio':>6} | {'key->job ms':>11} {'job engine ms':>13} {'host steps ms':>13}"
            )
            rows = []
            for number in range(args.rounds):
                hotkey, image = hotkey_round(session, tray, PROMPTS[number % len(PROMPTS)])
                alone, compute = engine_round(tray, image)
                total, in_engine, host = job_steps_ms(tray, number)
                before_job = hotkey * 1000 - total
                rows.append((hotkey, alone, compute, before_job, in_engine, host))
                print(
                    f"{number + 1:>5} {hotkey * 1000:>21.0f} {alone * 1000:>16.0f} {compute * 1000:>18.0f} "
                    f"{(hotkey - alone) * 1000:>12.0f} {hotkey / alone:>6.2f} | {before_job:>11.0f} "
                    f"{in_engine:>13.0f} {host:>13.0f}"
                )
            hotkey_m = statistics.median(r[0] for r in rows)
            alone_m = statistics.median(r[1] for r in rows)
            compute_m = statistics.median(r[2] for r in rows)
            before_m, engine_m, host_m = (statistics.median(r[i] for r in rows) for i in (3, 4, 5))
            print(
                f"{'median':>6} {hotkey_m * 1000:>20.0f} {alone_m * 1000:>16.0f} {compute_m * 1000:>18.0f} "
                f"{(hotkey_m - alone_m) * 1000:>12.0f} {hotkey_m / alone_m:>6.2f} | {before_m:>11.0f} "
                f"{engine_m:>13.0f} {host_m:>13.0f}"
            )
            print("\nkey->job: xdotool, pynput, reading PRIMARY; job engine: the engine's part as the host saw it;")
            print("host steps: the job thread's queue, submitting, saving in the gallery and the clipboard action.")
            load = psutil.getloadavg()
            print(f"\n{psutil.cpu_count()} CPUs, load average {load[0]:.1f} during the run")
        finally:
            tray.quit()


if __name__ == "__main__":
    main()
