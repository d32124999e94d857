"""Benchmark: a real key press with nothing selected, to the prompt box on screen.

Runs in a private virtual desktop (Xvfb, D-Bus, dunst, trayer) with `dreamtray run`, and prints figures only
(no assertions): per round, the milliseconds from starting `xdotool key` to the box's window being viewable
(pynput seeing the keys, reading the empty selection, building the box on GTK's loop, mapping it), and the
same for `dreamtray trigger prompt` (which adds starting a Python CLI); then the medians. Escape closes the
box after each round.

    python bench/prompt_box.py [--rounds 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import psutil  # noqa: E402
from tray_process import TrayProcess, press, serve_primary, shown_window, tray_home  # noqa: E402
from xsession import XSession, wait_until  # noqa: E402

from dreamtray.desktop.prompt_box import TITLE  # noqa: E402


def until_shown(session: XSession, start: float) -> float:
    wait_until(lambda: shown_window(session, TITLE), 30, "the prompt box", interval=0.001)
    elapsed = time.perf_counter() - start
    press(session, "Escape")
    wait_until(lambda: not shown_window(session, TITLE), 30, "the prompt box to close", interval=0.005)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()

    with XSession() as session, tempfile.TemporaryDirectory(prefix="dreamtray-bench-") as root:
        session.start_tray()
        tray = TrayProcess(tray_home(Path(root), session))
        try:
            tray.wait_docked()
            tray.wait_started()
            serve_primary(session, "   ")  # a blank selection: nothing selected
            print(f"{'round':>5} {'hotkey->box ms':>15} {'trigger prompt->box ms':>23}")
            rows = []
            for number in range(args.rounds):
                start = time.perf_counter()
                press(session, "ctrl+alt+i")
                hotkey = until_shown(session, start)
                start = time.perf_counter()
                tray.trigger("prompt", timeout=30)
                triggered = until_shown(session, start)
                rows.append((hotkey, triggered))
                print(f"{number + 1:>5} {hotkey * 1000:>15.0f} {triggered * 1000:>23.0f}")
            print(
                f"{'median':>6} {statistics.median(r[0] for r in rows) * 1000:>14.0f} "
                f"{statistics.median(r[1] for r in rows) * 1000:>23.0f}"
            )
            print("\nhotkey->box counts from starting `xdotool key` (a few ms of it are xdotool itself).")
            load = psutil.getloadavg()
            print(f"{psutil.cpu_count()} CPUs, load average {load[0]:.1f} during the run")
        finally:
            tray.quit()


if __name__ == "__main__":
    main()
