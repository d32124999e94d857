"""Benchmark: the prompt box. Prints figures only (no assertions), in a private virtual desktop (Xvfb, D-Bus,
dunst, trayer) with `dreamtray run`.

1. Opening: per round, the milliseconds from starting `xdotool key` to the box's window being viewable (pynput
   seeing the keys, reading the empty selection, building the box on GTK's loop, mapping it), and the same for
   `dreamtray trigger prompt` (which adds starting a Python CLI); then the medians.
2. The live preview (`--live`): a sentence typed at `--typing-ms` a key; from the last key to the preview of
   the whole sentence in the box (the tray has it and hands it to GTK's loop), median and 90th percentile, also
   less the debounce; the preview jobs cancelled per sentence; and the engine worker's CPU seconds per sentence
   against one preview of the sentence pasted at once (the difference: CPU spent on stale previews). The model
   is `tiny`, or `--shape sd-turbo` (random weights in SD-Turbo's shape, bench/architectures.py), at quality fast.
3. Prompt expansion (`--expansion`): 40 new tokens from a random-weight GPT-2 in MagicPrompt's shape (124 M
   parameters, tests/tiny_text_model.py) on torch with `--threads` (2), median wall and process CPU seconds.

    python bench/prompt_box.py [--rounds 10] [--live [--shape tiny|sd-turbo]] [--expansion]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import psutil  # noqa: E402
from tray_process import TrayProcess, press, serve_primary, shown_window, tray_home  # noqa: E402
from xsession import XSession, wait_until  # noqa: E402

from dreamtray.desktop.live_preview import DEBOUNCE_SECONDS  # noqa: E402
from dreamtray.desktop.prompt_box import TITLE  # noqa: E402

SENTENCE = "a red fox sleeping in deep snow under pine trees"


def until_shown(session: XSession, start: float) -> float:
    wait_until(lambda: shown_window(session, TITLE), 30, "the prompt box", interval=0.001)
    elapsed = time.perf_counter() - start
    press(session, "Escape")
    wait_until(lambda: not shown_window(session, TITLE), 30, "the prompt box to close", interval=0.005)
    return elapsed


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def worker_cpu(tray: TrayProcess) -> float:
    """CPU seconds of the engine's worker so far (user and system)."""
    answer = tray.home.run("engine", "status").stdout
    health = json.loads(answer) if answer.startswith("{") else {}
    pid = health.get("worker_pid")
    if not pid:
        return 0.0
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def live_round(session: XSession, tray: TrayProcess, delay_ms: int) -> tuple[float, int, float]:
    """One sentence typed in a fresh box: seconds from the last key to its preview, cancelled jobs, worker CPU."""
    tray.trigger("prompt", timeout=30)
    wait_until(lambda: shown_window(session, TITLE), 30, "the prompt box", interval=0.005)
    cpu = worker_cpu(tray)
    session.run(["xdotool", "type", "--delay", str(delay_ms), SENTENCE], check=True)
    typed = time.perf_counter()

    def preview() -> dict | None:
        state = tray.status()["live_preview"]
        return state if state and state["shown"] and state["shown"]["prompt"] == SENTENCE else None

    state = wait_until(preview, 600, "the preview of the sentence", interval=0.01)
    seconds = time.perf_counter() - typed
    cancelled = sum(job["state"] == "cancelled" for job in state["jobs"])
    used = worker_cpu(tray) - cpu
    press(session, "Escape")
    wait_until(lambda: not shown_window(session, TITLE), 30, "the prompt box to close", interval=0.005)
    return seconds, cancelled, used


def live_preview(args: argparse.Namespace, root: Path) -> None:
    config = ""
    model = "tiny"
    if args.shape == "sd-turbo":
        from architectures import ensure_folder
        from measure import DEFAULT_CACHE

        model = str(ensure_folder("sd-turbo", DEFAULT_CACHE))
    with XSession() as session:
        session.start_tray()
        home = tray_home(root, session, config=config)
        settings = home.root / "config" / "dreamtray" / "config.toml"
        settings.write_text(f'model = "{model}"\n' + settings.read_text().split("\n", 1)[1])
        tray = TrayProcess(home)
        try:
            tray.wait_docked()
            tray.wait_started()
            live_round(session, tray, 1)  # the model loaded and warm
            pasted = [live_round(session, tray, 1) for _ in range(max(2, args.rounds // 3))]
            typed = [live_round(session, tray, args.typing_ms) for _ in range(args.rounds)]
        finally:
            tray.quit()
            home.stop_engine()
    latency = [row[0] for row in typed]
    clean_cpu = statistics.median(row[2] for row in pasted)
    print(f"\nlive preview, model {args.shape}, quality fast, 256 px, typing {args.typing_ms} ms a key:")
    print(f"  last key -> preview: median {statistics.median(latency):.2f} s, p90 {percentile(latency, 0.9):.2f} s")
    print(
        f"  after the {DEBOUNCE_SECONDS:.1f} s debounce: median {statistics.median(latency) - DEBOUNCE_SECONDS:.2f} s,"
        f" p90 {percentile(latency, 0.9) - DEBOUNCE_SECONDS:.2f} s"
    )
    print(f"  cancelled preview jobs per sentence: median {statistics.median(row[1] for row in typed):.0f}")
    wasted = [row[2] - clean_cpu for row in typed]
    print(
        f"  engine worker CPU per sentence: {statistics.median(row[2] for row in typed):.2f} s typed, "
        f"{clean_cpu:.2f} s pasted at once; on stale previews: median {statistics.median(wasted):.2f} s"
    )


def expansion(repeats: int, threads: int) -> None:
    import torch
    from measure import DEFAULT_CACHE
    from tiny_text_model import build_text_model

    from dreamtray.engine.server.expansion import _model, expand_text

    torch.set_num_threads(threads)
    folder = DEFAULT_CACHE / "magicprompt-shaped"
    if not (folder / "model.safetensors").exists():
        build_text_model(folder, real_shape=True)
    model, tokenizer = _model(str(folder), DEFAULT_CACHE, [])

    def once(seed: int) -> tuple[float, float]:
        cpu, start = time.process_time(), time.perf_counter()
        expand_text(model, tokenizer, "a fox in snow", seed, 40)
        return time.perf_counter() - start, time.process_time() - cpu

    once(0)
    runs = [once(seed) for seed in range(1, repeats + 1)]
    wall, cpu = [run[0] for run in runs], [run[1] for run in runs]
    print(
        f"\nprompt expansion, GPT-2 124 M (random weights), torch {torch.__version__}, {threads} threads, "
        "40 new tokens: "
        f"wall median {statistics.median(wall):.2f} s (p90 {percentile(wall, 0.9):.2f}), "
        f"process CPU median {statistics.median(cpu):.2f} s, over {repeats}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--live", action="store_true", help="measure the live preview")
    parser.add_argument("--shape", choices=["tiny", "sd-turbo"], default="tiny")
    parser.add_argument("--typing-ms", type=int, default=120, help="milliseconds between two typed keys")
    parser.add_argument("--expansion", action="store_true", help="measure prompt expansion")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for the expansion")
    parser.add_argument("--skip-open", action="store_true", help="leave out the box-opening figures")
    args = parser.parse_args()
    if not args.skip_open:
        box_opening(args)
    if args.live:
        with tempfile.TemporaryDirectory(prefix="dreamtray-bench-") as root:
            live_preview(args, Path(root))
    if args.expansion:
        expansion(args.rounds, args.threads)
    load = psutil.getloadavg()
    print(f"\n{psutil.cpu_count()} CPUs, load average {load[0]:.1f} at the end")


def box_opening(args: argparse.Namespace) -> None:
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
        finally:
            tray.quit()


if __name__ == "__main__":
    main()
