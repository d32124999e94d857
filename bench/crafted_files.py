"""How long crafted `parameters` texts take to read: A1111's settings pattern (what dreamtray used before) against
`dreamtray.images.settings_line`, and `read_metadata` on whole 5 MB PNGs.

    python bench/crafted_files.py [--reference-up-to 50000]

A1111's pattern is timed only up to `--reference-up-to` characters: it is quadratic, and 5 MB never ends."""

from __future__ import annotations

import argparse
import io
import re
import time

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from dreamtray.images.metadata import read_metadata
from dreamtray.images.settings_line import settings_pairs

A1111_PATTERN = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
LINES = {
    "words 'a '": "a ",
    "pairs 'Steps: 4, '": "Steps: 4, ",
    "open quotes 'Model: \"a, '": 'Model: "a, ',
    "commas ', '": ", ",
}


def seconds(call, *args) -> float:
    start = time.perf_counter()
    call(*args)
    return time.perf_counter() - start


def png_with(text: str) -> bytes:
    info = PngInfo()
    info.add_text("parameters", text)
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "PNG", pnginfo=info)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reference-up-to", type=int, default=50_000)
    limit = parser.parse_args().reference_up_to
    print(f"{'line':28} {'chars':>9} {'A1111 pattern s':>16} {'settings_pairs s':>17}")
    for name, unit in LINES.items():
        for chars in (10_000, 50_000, 5 * 2**20):
            line = unit * (chars // len(unit))
            reference = f"{seconds(A1111_PATTERN.findall, line):16.3f}" if chars <= limit else f"{'(not run)':>16}"
            print(f"{name:28} {len(line):9,} {reference} {seconds(settings_pairs, line):17.3f}")
    for name, unit in LINES.items():
        png = png_with("a fox\n" + unit * (5 * 2**20 // len(unit)))
        print(f"read_metadata, 5 MB of {name}: {seconds(read_metadata, png):.3f} s")


if __name__ == "__main__":
    main()
