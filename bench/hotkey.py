"""Benchmark: a real key press to the PNG on the clipboard, against the engine's own time for the same request.

Runs in a private virtual desktop (Xvfb, D-Bus, dunst, trayer) with `dreamtray run` on the tiny model, and
prints figures only (no assertions):
- seconds from launching `dreamtray run` until its icon is docked in the tray;
- the host's resident memory (RSS) once it is up, before the first image;
- per round: hotkey -> clipboard (ms), the engine alone for the same request (ms), the overhead (ms), the ratio,
  and the overhead net of the engine's own compute time in both (which other work on a shared CPU moves by more
  than the overhead); from the host's log, where the hotkey's time went: key press to job (xdotool, pynput,
  reading the selection), the queue and submitting, the engine's part, fetching the result, saving it in the
  gallery, the clipboard action, and the host's steps together; the tray's CPU time in the round; the medians;
- the load average before and during the run.

The bench learns of the new clipboard owner from the X server (XFixes events): it waits without polling, so it
takes no CPU from the engine or the tray during a round.

    python bench/hotkey.py [--rounds 5]

The tiny model makes 512x512 images in 2 steps: the overhead is what matters, not the picture.
"""

from __future__ import annotations

import argparse
import json
import re
import select
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


class ClipboardWatch:
    """Who owns CLIPBOARD, told by the X server (XFixes) as it changes: the bench waits for the image's owner
    without polling, so it takes no CPU from the engine and the tray while they work."""

    def __init__(self, display: str) -> None:
        from Xlib import display as xdisplay
        from Xlib.ext import xfixes

        self.conn = xdisplay.Display(display)
        self.conn.xfixes_query_version()
        self.atom = self.conn.intern_atom("CLIPBOARD")
        self.conn.xfixes_select_selection_input(
            self.conn.screen().root, self.atom, xfixes.XFixesSetSelectionOwnerNotifyMask
        )
        self.conn.sync()

    def owner(self) -> int:
        owner = self.conn.get_selection_owner(self.atom)
        return owner.id if owner else 0

    def drain(self) -> None:
        """Forget the changes seen so far."""
        self.conn.sync()
        while self.conn.pending_events():
            self.conn.next_event()

    def wait_new_owner(self, other_than: int, timeout: float) -> float:
        """perf_counter() when an owner other than `other_than` (and not none) took CLIPBOARD."""
        deadline = time.monotonic() + timeout
        while True:
            while self.conn.pending_events():
                event = self.conn.next_event()
                owner = getattr(event, "owner", None)
                if owner is not None and getattr(owner, "id", owner) not in (0, other_than):
                    return time.perf_counter()
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"gave up after {timeout:.0f} s waiting for the image on the clipboard")
            select.select([self.conn], [], [], left)

    def close(self) -> None:
        self.conn.close()


def take_clipboard(session: XSession, watch: ClipboardWatch) -> int:
    """Put some text on the clipboard, so that the next owner is the image's; returns the text's owner."""
    earlier = watch.owner()
    keeper = session.spawn(["xclip", "-quiet", "-selection", "clipboard"], stdin=subprocess.PIPE)
    keeper.stdin.write(b"placeholder")
    keeper.stdin.close()
    return wait_until(lambda: watch.owner() not in (0, earlier) and watch.owner(), 10, "the text on the clipboard")


def hotkey_round(session: XSession, tray: TrayProcess, watch: ClipboardWatch, prompt: str) -> tuple[float, float, Path]:
    """Seconds from the key press to the image's owner on the clipboard, the CPU seconds the tray process
    spent meanwhile (its own, not the engine's), and the image."""
    serve_primary(session, prompt)
    before = take_clipboard(session, watch)
    images = set(newest(tray.home.gallery))
    process = psutil.Process(tray.pid)
    watch.drain()
    cpu = sum(process.cpu_times()[:2])
    start = time.perf_counter()
    press(session, "ctrl+alt+i")
    elapsed = watch.wait_new_owner(before, 300) - start
    cpu = sum(process.cpu_times()[:2]) - cpu
    [image] = wait_until(
        lambda: [path for path in newest(tray.home.gallery) if path not in images], 10, "the image in the gallery"
    )
    # The keeper owns the clipboard a moment before it answers: read until the bytes are there (not timed).
    wait_until(
        lambda: read_clipboard_png(session) == image.read_bytes(), 10, "the newest gallery image on the clipboard"
    )
    tray.wait_idle()
    return elapsed, cpu, image


JOB_LINE = re.compile(
    r"job \(hotkey\) done: (\d+) ms in all: wait (\d+) ms, to engine (\d+) ms, engine (\d+) ms \(compute (\d+) ms\), "
    r"result (\d+) ms, save (\d+) ms, action (\d+) ms, after (\d+) ms"
)
COLUMNS = (
    ("hotkey->clipboard", 17),
    ("engine alone", 12),
    ("overhead", 8),
    ("ratio", 5),
    ("net overhead", 12),
    ("key->job", 8),
    ("queue+submit", 12),
    ("engine", 6),
    ("result", 6),
    ("save", 4),
    ("clipboard", 9),
    ("host steps", 10),
    ("tray cpu", 8),
)
LEGEND = """
All in ms. hotkey->clipboard: xdotool's key press until the image's owner takes CLIPBOARD; engine alone: the same
request straight to the engine (submit, progress events, result); overhead: their difference; net overhead: the
same without the engine's own compute time in either (Result.seconds), which other work on the CPU moves by more
than the overhead itself. From the tray's log: key->job: xdotool, pynput, reading PRIMARY; queue+submit: the job
thread's queue and submitting; engine: the engine's part as the host saw it (submit to its last event); result:
fetching it; save: in the gallery; clipboard: the clipboard action; host steps: queue+submit, result, save and
clipboard; tray cpu: the CPU time of the tray process from the key press to the clipboard (on a 2-core machine,
taken from the engine's threads)."""


def job_steps_ms(tray: TrayProcess, round_number: int) -> dict[str, int]:
    """From the host's log, for a hotkey job: its time from the text being read to the clipboard action's end
    ('to clipboard'), the engine's own compute time, and the steps of that time: the queue and submitting, the
    engine's part (submit to the last progress event), fetching the result, saving in the gallery, the clipboard
    action."""
    jobs = wait_until(
        lambda: (found := JOB_LINE.findall(tray.log_text())) and len(found) > round_number and found,
        10,
        "the job in the log",
    )
    total, wait, to_engine, engine, compute, result, save, action, after = map(int, jobs[round_number])
    return {
        "to clipboard": total - after,
        "compute": compute,
        "queue+submit": wait + to_engine,
        "engine": engine,
        "result": result,
        "save": save,
        "clipboard": action,
    }


def round_row(hotkey: float, cpu: float, alone: float, alone_compute: float, job: dict[str, int]) -> list[float]:
    """One row of COLUMNS, in ms, from one round's seconds and the job's log line."""
    hotkey, alone = hotkey * 1000, alone * 1000
    net = (hotkey - job["compute"]) - (alone - alone_compute * 1000)
    host = sum(job[step] for step in ("queue+submit", "result", "save", "clipboard"))
    steps = [job[step] for step in ("queue+submit", "engine", "result", "save", "clipboard")]
    return [hotkey, alone, hotkey - alone, hotkey / alone, net, hotkey - job["to clipboard"], *steps, host, cpu * 1000]


def format_row(name: str, row: list[float]) -> str:
    cells = [
        f"{value:>{width}.2f}" if title == "ratio" else f"{value:>{width}.0f}"
        for (title, width), value in zip(COLUMNS, row, strict=True)
    ]
    return f"{name:>6} " + " ".join(cells)


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
        print(f"{psutil.cpu_count()} CPUs, load average {psutil.getloadavg()[0]:.1f} before the run")
        session.start_tray()
        watch = ClipboardWatch(session.display)
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
            print(f"{'round':>6} " + " ".join(f"{title:>{width}}" for title, width in COLUMNS))
            rows = []
            for number in range(args.rounds):
                hotkey, cpu, image = hotkey_round(session, tray, watch, PROMPTS[number % len(PROMPTS)])
                alone, alone_compute = engine_round(tray, image)
                rows.append(round_row(hotkey, cpu, alone, alone_compute, job_steps_ms(tray, number)))
                print(format_row(str(number + 1), rows[-1]))
            print(format_row("median", [statistics.median(column) for column in zip(*rows, strict=True)]))
            print(LEGEND)
            load = psutil.getloadavg()
            print(f"\n{psutil.cpu_count()} CPUs, load average {load[0]:.1f} during the run")
        finally:
            watch.close()
            tray.quit()


if __name__ == "__main__":
    main()
