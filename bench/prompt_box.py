"""Benchmark: the prompt box. Prints figures only (no assertions), in a private virtual desktop (Xvfb, D-Bus,
dunst, trayer) with `dreamtray run`.

1. Opening: per round, the milliseconds from starting `xdotool key` to the box's window being viewable (pynput
   seeing the keys, reading the empty selection, building the box on GTK's loop, mapping it), and the same for
   `dreamtray trigger prompt` (which adds starting a Python CLI); then the medians.
2. The live preview (`--live`): a sentence typed at `--typing-ms` a key (xdotool's --delay is twice that: it
   waits half of it after each press and half after each release); from the last key to the preview of the whole
   sentence in the box (the tray has it and hands it to the toolkit's loop), median and 90th percentile, also
   less the debounce; the preview jobs cancelled per sentence (a job counts when the engine had it cancelled, not
   when it was done before the next key); and the engine worker's CPU seconds per sentence against one preview of
   the sentence pasted at once (the difference: CPU spent on stale previews). The model is `tiny`, or `--shape
   sd-turbo` (random weights in SD-Turbo's shape, bench/architectures.py) at quality fast on the engine's own
   plan; its OpenVINO conversion is kept under the bench's cache (`--rounds 0` only converts, for a first run
   under its own memory limit).
3. Prompt expansion (`--expansion`): 40 new tokens from a random-weight GPT-2 in MagicPrompt's shape (124 M
   parameters, tests/tiny_text_model.py) with `--threads` (2) on each of `--backends` (torch fp32 and bf16,
   OpenVINO fp32, int8 and int4 weights at f32 or bf16 precision), taking turns, the same seeds: median wall and
   process CPU seconds and how many texts equal the first backend's; then the engine's one-off conversion.

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
TURBO_STYLE = '[pack]\nname = "Bench"\n\n[[style]]\nname = "Turbo"\nprompt = "{prompt}"\nsteps = 1\nguidance = 0.0\n'


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
    # xdotool sleeps half its --delay after a key's press and half after its release: twice the gap wanted
    session.run(["xdotool", "type", "--delay", str(2 * delay_ms), SENTENCE], check=True, timeout=120)
    typed = time.perf_counter() - delay_ms / 1000  # xdotool returns half its delay after the last key's release

    def preview() -> dict | None:
        state = tray.status()["live_preview"]
        return state if state and state["shown"] and state["shown"]["prompt"] == SENTENCE else None

    state = wait_until(preview, 600, "the preview of the sentence", interval=0.01)
    seconds = time.perf_counter() - typed
    cancelled = sum(job["state"] == "cancelled" for job in state["jobs"])
    used = worker_cpu(tray) - cpu
    print(f"  round: {seconds:.2f} s to the preview, {cancelled} cancelled, worker CPU {used:.2f} s", flush=True)
    press(session, "Escape")
    wait_until(lambda: not shown_window(session, TITLE), 30, "the prompt box to close", interval=0.005)
    return seconds, cancelled, used


def live_preview(args: argparse.Namespace, root: Path) -> None:
    config = ""
    model = "tiny"
    extra = {}
    if args.shape == "sd-turbo":
        from architectures import ensure_folder
        from measure import DEFAULT_CACHE

        model = str(ensure_folder("sd-turbo", DEFAULT_CACHE))
        # the engine's OpenVINO conversion of the shape (minutes, ~12 GB at its peak) is kept for the next run
        extra["XDG_CACHE_HOME"] = str(DEFAULT_CACHE / "live-preview-engine-cache")
    if args.model:  # a model folder as it is: the SD-Turbo shape exported in optimum-intel's layout, say
        model = args.model
        extra["XDG_CACHE_HOME"] = str(Path(args.model).parent / "live-preview-engine-cache")
    if args.shape == "sd-turbo" or args.model:
        # SD-Turbo's own settings (its preset's), which a model folder does not bring: a style gives them
        config += 'style = "Turbo"\n'
        styles = root / "data" / "dreamtray" / "styles"
        styles.mkdir(parents=True)
        (styles / "bench.toml").write_text(TURBO_STYLE)
    with XSession() as session:
        session.start_tray()
        home = tray_home(root, session, config=config, **extra)
        settings = home.root / "config" / "dreamtray" / "config.toml"
        settings.write_text(f'model = "{model}"\n' + settings.read_text().split("\n", 1)[1])
        tray = TrayProcess(home)
        try:
            tray.wait_docked()
            tray.wait_started()
            live_round(session, tray, 1)  # the model loaded (converted the first time) and warm
            if args.rounds == 0:
                return
            pasted = [live_round(session, tray, 1) for _ in range(max(2, args.rounds // 3))]
            typed = [live_round(session, tray, args.typing_ms) for _ in range(args.rounds)]
        finally:
            tray.quit()
            home.stop_engine()
    latency = [row[0] for row in typed]
    clean_cpu = statistics.median(row[2] for row in pasted)
    print(f"\nlive preview, model {args.model or args.shape}, quality fast, 256 px, typing {args.typing_ms} ms a key:")
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


EXPANSION_BACKENDS = (
    "torch-fp32",
    "torch-bf16",
    "openvino-f32",
    "openvino-bf16",
    "openvino-int8-f32",
    "openvino-int8-bf16",
    "openvino-int4-bf16",
)
"""torch as the engine ran it before (fp32, KV cache), torch with bf16 weights; the OpenVINO decode step
(engine/server/expansion_openvino.py) with fp32 weights, NNCF int8 weights (the engine's choice) and int4 weights
(group 128), each at OpenVINO's f32 or bf16 inference precision."""


def expansion(repeats: int, threads: int, backends: list[str]) -> None:
    """40 new tokens from MagicPrompt's shape on each backend, the same seeds, each backend in a process of its own
    (OpenVINO's and torch's worker threads keep spinning a while after each call: in one process they slow each
    other down several times over): wall and CPU seconds, and whether the text is the same as the first backend's
    (the sampling is the same code; only the logits differ). Then the engine's one-off conversion."""
    import subprocess

    rows = {}
    for name in backends:
        command = [sys.executable, "-X", "utf8", __file__, "--skip-open", "--expansion-row", name]
        command += ["--rounds", str(repeats), "--threads", str(threads)]
        answer = subprocess.run(command, capture_output=True, text=True, check=True)
        rows[name] = json.loads(answer.stdout.strip().splitlines()[-1])
    print(
        f"\nprompt expansion, GPT-2 124 M (MagicPrompt's shape, random weights), {threads} threads, 40 new tokens, "
        f"seeds 1-{repeats}, one process per backend:"
    )
    first = backends[0]
    print(f"{'backend':<19} {'wall median s':>13} {'p90 s':>7} {'CPU median s':>12} {'same text as ' + first:>24}")
    for name, row in rows.items():
        same = sum(text == other for text, other in zip(row["texts"], rows[first]["texts"]))
        print(
            f"{name:<19} {statistics.median(row['wall']):>13.3f} {percentile(row['wall'], 0.9):>7.3f} "
            f"{statistics.median(row['cpu']):>12.2f} {f'{same}/{repeats}':>24}"
        )
    subprocess.run([sys.executable, "-X", "utf8", __file__, "--skip-open", "--expansion-row", "one-off"], check=True)


def expansion_row(backend: str, repeats: int, threads: int) -> None:
    """One backend's runs (seed 0 warms up), printed as a JSON line; `one-off` measures the conversion instead."""
    import torch
    from measure import DEFAULT_CACHE
    from tiny_text_model import build_text_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from dreamtray.engine.server.expansion import expand_text

    torch.set_num_threads(threads)
    folder = DEFAULT_CACHE / "magicprompt-shaped"
    if not (folder / "model.safetensors").exists():
        build_text_model(folder, real_shape=True)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, use_safetensors=True).eval()
    if backend == "one-off":
        one_off(model)
        return
    step = expansion_step(backend, model, DEFAULT_CACHE / "expansion-openvino", threads)
    row: dict[str, list] = {"wall": [], "cpu": [], "texts": []}
    for seed in range(repeats + 1):
        cpu, start = time.process_time(), time.perf_counter()
        text = expand_text(step, tokenizer, "a fox in snow", seed, 40)
        if seed:
            row["wall"].append(time.perf_counter() - start)
            row["cpu"].append(time.process_time() - cpu)
            row["texts"].append(text)
    print(json.dumps(row))


def one_off(model) -> None:
    """The engine's one-off step into an empty cache: convert the decode step and compress it to int8."""
    from measure import peak_rss_during

    from dreamtray.engine.server.expansion_openvino import stepper

    with tempfile.TemporaryDirectory(prefix="dreamtray-bench-") as root:
        before = psutil.Process().memory_info().rss / 2**20
        with peak_rss_during(every=0.01) as peak:
            start = time.perf_counter()
            stepper(model, Path(root), "expansion model", lambda event: None)
            seconds = time.perf_counter() - start
        size = sum(path.stat().st_size for path in Path(root).rglob("*") if path.is_file())
    print(
        f"one-off convert + int8 + compile into an empty cache: {seconds:.1f} s, process RSS +"
        f"{peak['peak_mb'] - before:.0f} MiB at the peak (over {before:.0f} MiB with the torch model), "
        f"cache {size / 2**20:.0f} MiB"
    )


def expansion_step(backend: str, model, cache: Path, threads: int):
    """The next-token function for `backend` (OpenVINO's conversions cached under `cache`)."""
    import copy

    import torch

    from dreamtray.engine.server.expansion import TorchStepper

    if backend == "torch-fp32":
        return TorchStepper(model)
    if backend == "torch-bf16":
        return TorchStepper(copy.deepcopy(model).to(torch.bfloat16))
    import nncf
    import openvino as ov

    from dreamtray.engine.server.expansion_openvino import DecodeStep, OpenVinoStepper, ensure_int8_step
    from dreamtray.engine.server.openvino_backend import ensure_converted

    empty = tuple(DecodeStep(model).empty_past().shape)
    weights, precision = backend.split("-")[1:] if backend.count("-") == 2 else ("f32", backend.split("-")[1])
    if weights == "int8":
        xml = ensure_int8_step(model, cache, "expansion model", lambda event: None)
        return OpenVinoStepper(xml, cache / "compiled", empty, precision, threads)
    step = DecodeStep(model).eval()
    example = (torch.tensor([[0, 1]]), torch.zeros(*empty[:4], 3, empty[5]))
    converted = ensure_converted(cache / "decode-step", step, example, "expansion model", lambda event: None)
    xml = converted.folder / "model.xml"
    if weights == "int4":
        xml = cache / "decode-step-int4" / "model.xml"
        if not xml.is_file():
            xml.parent.mkdir(parents=True, exist_ok=True)
            mode = nncf.CompressWeightsMode.INT4_SYM
            ov.save_model(nncf.compress_weights(converted.model, mode=mode, group_size=128, ratio=1.0), xml)
    return OpenVinoStepper(xml, cache / "compiled", empty, precision, threads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--live", action="store_true", help="measure the live preview")
    parser.add_argument("--shape", choices=["tiny", "sd-turbo"], default="tiny")
    parser.add_argument("--model", help="a model folder for the live preview instead of --shape's")
    parser.add_argument("--typing-ms", type=int, default=120, help="milliseconds between two typed keys")
    parser.add_argument("--expansion", action="store_true", help="measure prompt expansion")
    parser.add_argument("--threads", type=int, default=2, help="threads for the expansion")
    parser.add_argument(
        "--backends", default=",".join(EXPANSION_BACKENDS), help=f"expansion backends, of {EXPANSION_BACKENDS}"
    )
    parser.add_argument("--skip-open", action="store_true", help="leave out the box-opening figures")
    parser.add_argument("--expansion-row", help=argparse.SUPPRESS)  # one backend, in a process of its own
    args = parser.parse_args()
    if args.expansion_row:
        expansion_row(args.expansion_row, args.rounds, args.threads)
        return
    if not args.skip_open:
        box_opening(args)
    if args.live:
        with tempfile.TemporaryDirectory(prefix="dreamtray-bench-") as root:
            live_preview(args, Path(root))
    if args.expansion:
        expansion(args.rounds, args.threads, args.backends.split(","))
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
