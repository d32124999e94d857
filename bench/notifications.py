"""Benchmark: images and `trigger` answers while the notification daemon hangs, against a working one (dunst).

Runs in a private virtual desktop (Xvfb, D-Bus, trayer) with `dreamtray run` on the tiny model, once with dunst
and once with tests/silent_notifier.py owning org.freedesktop.Notifications and never answering; prints one
Markdown table (no assertions): per round, the wall seconds of `trigger clipboard --prompt ... --wait` (the image,
from the command to its answer), and of a plain `trigger clipboard` sent while that image is being made (its
answer only: "#2 waits ...").

    python bench/notifications.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from tray_process import TrayProcess, tray_home  # noqa: E402
from xsession import XSession  # noqa: E402

SILENT_NOTIFIER = Path(__file__).resolve().parent.parent / "tests" / "silent_notifier.py"


def timed(tray: TrayProcess, *args: str) -> tuple[float, str]:
    started = time.monotonic()
    result = tray.trigger(*args, timeout=600)
    return time.monotonic() - started, (result.stdout + result.stderr).strip().splitlines()[-1]


def run(daemon: str, rounds: int, root: Path) -> list[tuple[float, float, str]]:
    session = XSession().start(dunst=daemon == "dunst")
    try:
        if daemon != "dunst":
            notifier = session.spawn(
                [sys.executable, str(SILENT_NOTIFIER), "silent", str(root / "calls.log")], stdout=subprocess.PIPE
            )
            notifier.stdout.readline()
        trayer = session.start_tray()
        tray = TrayProcess(tray_home(root / daemon, session))
        try:
            tray.wait_docked()
            tray.wait_started()
            tray.trigger("clipboard", "--prompt", "warm up", "--wait", timeout=600)
            rows = []
            for number in range(rounds):
                waited: list[tuple[float, str]] = []
                image = threading.Thread(
                    target=lambda: waited.append(timed(tray, "clipboard", "--prompt", f"a lantern {number}", "--wait"))
                )
                image.start()
                time.sleep(0.3)  # the image has started: the next one queues behind it
                queued, answer = timed(tray, "clipboard", "--prompt", f"a boat {number}")
                image.join()
                tray.wait_idle(600)
                rows.append((waited[0][0], queued, answer))
        finally:
            tray.stop()
            tray.home.stop_engine()
            session.stop_tray(trayer)
    finally:
        session.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dreamtray-bench-") as folder:
        results = {daemon: run(daemon, args.rounds, Path(folder)) for daemon in ("dunst", "hung")}
    print("| notification daemon | round | image with --wait (s) | trigger while it runs (s) | its answer |")
    print("| --- | --- | --- | --- | --- |")
    for daemon, rows in results.items():
        for number, (image, queued, answer) in enumerate(rows, 1):
            print(f"| {daemon} | {number} | {image:.1f} | {queued:.2f} | {answer[:60]} |")
        print(
            f"| {daemon} | median | {statistics.median(r[0] for r in rows):.1f} | "
            f"{statistics.median(r[1] for r in rows):.2f} | |"
        )


if __name__ == "__main__":
    main()
