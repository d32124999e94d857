"""Benchmark: a wallpaper for three monitors (each its own image) against one image, three times.

Runs `dreamtray generate --action wallpaper` on the tiny model in a private Xvfb whose one screen is cut into
three RandR monitors (800x600, 640x360, 400x700), and prints figures only (no assertions):
- per round, the wall time of one three-monitor wallpaper in each mode (`per-monitor` makes three images,
  `span` and `same` one);
- the wall time of one single-monitor wallpaper (an 800x600 Xvfb), and of one plain image (no action);
- the medians, and the three-monitor wallpaper against three single-monitor ones.

    python bench/wallpaper_monitors.py [--rounds 3]

The engine is started and warmed up first, so the rounds measure the command, the engine's work and the
wallpaper plugin, not the model's first load.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from cli_env import DreamtrayHome  # noqa: E402
from xsession import XSession  # noqa: E402

MONITORS = [("left", 800, 600, 0), ("middle", 640, 360, 800), ("right", 400, 700, 1440)]


def home_for(session: XSession, root: Path) -> DreamtrayHome:
    runtime = root / "runtime"
    runtime.mkdir(mode=0o700, parents=True)
    return DreamtrayHome.create(
        root, plugins="wallpaper", DISPLAY=session.display, XDG_RUNTIME_DIR=str(runtime), XDG_SESSION_TYPE="x11"
    )


def timed(home: DreamtrayHome, *args: str) -> float:
    started = time.perf_counter()
    home.run(*args, check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds
    root = Path(tempfile.mkdtemp(prefix="dreamtray-bench-monitors-"))
    with XSession(screens=((1840, 700),)).start(dunst=False) as three, XSession().start(dunst=False) as one:
        for index, (name, width, height, x) in enumerate(MONITORS):
            geometry = f"{width}/{width // 4}x{height}/{height // 4}+{x}+0"
            three.run(["xrandr", "--setmonitor", name, geometry, "screen" if index == 0 else "none"], check=True)
        homes = {"three": home_for(three, root / "three"), "one": home_for(one, root / "one")}
        for home in homes.values():
            home.run("generate", "--seed", "1", "warm up", check=True)
        times: dict[str, list[float]] = {}
        for round_number in range(rounds):
            row = {}
            for mode in ("per-monitor", "span", "same"):
                homes["three"].run("config", "set", "wallpaper_mode", mode, check=True)
                row[f"3 monitors {mode}"] = timed(homes["three"], "generate", "--action", "wallpaper", "a quiet bay")
            row["1 monitor"] = timed(homes["one"], "generate", "--action", "wallpaper", "a quiet bay")
            row["1 image, no action"] = timed(homes["one"], "generate", "a quiet bay")
            for key, value in row.items():
                times.setdefault(key, []).append(value)
            print(f"round {round_number + 1}: " + ", ".join(f"{k} {v:.2f} s" for k, v in row.items()), flush=True)
        for home in homes.values():
            home.stop_engine()
    medians = {key: statistics.median(values) for key, values in times.items()}
    print("\nmedian wall time per command:")
    for key, value in medians.items():
        print(f"  {key:<26} {value:6.2f} s")
    three_each, single = medians["3 monitors per-monitor"], medians["1 monitor"]
    print(
        f"\nthree-monitor wallpaper (per-monitor) {three_each:.2f} s against one image x3 {3 * single:.2f} s "
        f"(ratio {three_each / (3 * single):.2f}); span {medians['3 monitors span']:.2f} s, "
        f"same {medians['3 monitors same']:.2f} s"
    )


if __name__ == "__main__":
    main()
