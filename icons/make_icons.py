"""Draw the dreamtray icon and write every file the platforms want, from this one source.

The mark: a night-blue rounded tile holding a small picture, a warm crescent moon over a line of hills.
Each size is drawn on its own (eight times over-sampled, then reduced), with fewer details at the smallest
sizes, so that it stays readable at 16-22 px in a tray. The tray variants add a state badge in the corner:
amber with three dots while busy, red with an exclamation mark on error.

    python icons/make_icons.py [OUTPUT_DIR]     (default: host/icons, shipped inside the package)

File names and sizes come from `dreamtray.desktop.icon_files`, which the app uses to find them.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image, ImageChops, ImageDraw

from dreamtray.desktop.icon_files import APP_SIZES, ICON_DIR, TRAY_SIZES, TRAY_STATES, app_icns, app_ico, app_png, tray_png

ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)
ICNS_SIZES = (16, 32, 64, 128, 256, 512, 1024)
OVERSAMPLE = 8

SKY_TOP = (38, 44, 110)
SKY_BOTTOM = (88, 62, 150)
MOON = (255, 205, 96)
HILLS = (120, 214, 200)
STAR = (235, 235, 255)
BUSY = (255, 166, 0)
ERROR = (224, 49, 49)
WHITE = (255, 255, 255)
BADGE_RIM = (20, 20, 40)


def _mask(canvas: int) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    mask = Image.new("L", (canvas, canvas), 0)
    return mask, ImageDraw.Draw(mask)


def _sky(canvas: int) -> Image.Image:
    """A vertical gradient from SKY_TOP to SKY_BOTTOM."""
    column = Image.new("RGB", (1, canvas))
    for y in range(canvas):
        t = y / max(canvas - 1, 1)
        column.putpixel((0, y), tuple(round(a + (b - a) * t) for a, b in zip(SKY_TOP, SKY_BOTTOM)))
    return column.resize((canvas, canvas), Image.Resampling.NEAREST)


def draw_mark(size: int) -> Image.Image:
    """The app mark at `size` px: tile, moon, hills (and stars from 48 px up)."""
    canvas = size * OVERSAMPLE
    u = canvas / 100  # drawing units: the tile spans 0..100
    image = Image.new("RGBA", (canvas, canvas), (0, 0, 0, 0))

    # Small icons fill their box; large ones keep the margin platforms expect around a tile.
    inset = 0 if size <= 32 else 4
    tile, draw = _mask(canvas)
    draw.rounded_rectangle(
        (inset * u, inset * u, (100 - inset) * u - 1, (100 - inset) * u - 1), radius=20 * u, fill=255
    )
    image.paste(_sky(canvas), (0, 0), tile)

    if size >= 48:
        stars, draw = _mask(canvas)
        for x, y, r in ((22, 24, 2.2), (40, 14, 1.6), (14, 46, 1.5), (48, 34, 1.3)):
            draw.ellipse(((x - r) * u, (y - r) * u, (x + r) * u, (y + r) * u), fill=255)
        image.paste(STAR, (0, 0), stars)

    # The crescent: a disc with an offset disc taken away; larger and bolder at small sizes.
    cx, cy, r = (58, 36, 25) if size <= 24 else (64, 34, 19)
    moon, draw = _mask(canvas)
    draw.ellipse(((cx - r) * u, (cy - r) * u, (cx + r) * u, (cy + r) * u), fill=255)
    bite = r * 0.82
    bx, by = cx - r * 0.55, cy - r * 0.38
    draw.ellipse(((bx - bite) * u, (by - bite) * u, (bx + bite) * u, (by + bite) * u), fill=0)
    image.paste(MOON, (0, 0), moon)

    hills, draw = _mask(canvas)
    top = 62 if size <= 24 else 66
    draw.polygon(
        [
            (0, 100 * u),
            (0, (top + 10) * u),
            (30 * u, top * u),
            (55 * u, (top + 14) * u),
            (78 * u, (top + 4) * u),
            (100 * u, (top + 12) * u),
            (100 * u, 100 * u),
        ],
        fill=255,
    )
    image.paste(HILLS, (0, 0), ImageChops.multiply(hills, tile))

    return image.resize((size, size), Image.Resampling.LANCZOS)


def draw_tray(state: str, size: int) -> Image.Image:
    """The mark with the badge for `state` ("idle" has none) in the lower right corner."""
    image = draw_mark(size)
    if state == "idle":
        return image
    colour = {"busy": BUSY, "error": ERROR}[state]
    canvas = size * OVERSAMPLE
    u = canvas / 100
    badge = Image.new("RGBA", (canvas, canvas), (0, 0, 0, 0))
    draw = ImageDraw.Draw(badge)
    cx, cy, r, rim = 74, 74, 24, 5
    draw.ellipse(((cx - r - rim) * u, (cy - r - rim) * u, (cx + r + rim) * u, (cy + r + rim) * u), fill=BADGE_RIM)
    draw.ellipse(((cx - r) * u, (cy - r) * u, (cx + r) * u, (cy + r) * u), fill=colour)
    if state == "busy":
        for dx in (-13, 0, 13):
            d = 5.5
            draw.ellipse(((cx + dx - d) * u, (cy - d) * u, (cx + dx + d) * u, (cy + d) * u), fill=WHITE)
    else:
        w = 5.5
        draw.rounded_rectangle(((cx - w) * u, (cy - 18) * u, (cx + w) * u, (cy + 4) * u), radius=w * u, fill=WHITE)
        draw.ellipse(((cx - w) * u, (cy + 9) * u, (cx + w) * u, (cy + 20) * u), fill=WHITE)
    image.alpha_composite(badge.resize((size, size), Image.Resampling.LANCZOS))
    return image


def write_all(output: Path) -> list[Path]:
    """Write the PNG set, the ICO, the ICNS and the tray variants into `output`; return the paths."""
    output.mkdir(parents=True, exist_ok=True)
    marks = {size: draw_mark(size) for size in sorted({*APP_SIZES, *ICO_SIZES, *ICNS_SIZES})}
    written = []
    for size in APP_SIZES:
        written.append(output / app_png(size).name)
        marks[size].save(written[-1])
    written.append(output / app_ico().name)
    marks[256].save(written[-1], sizes=[(s, s) for s in ICO_SIZES], append_images=[marks[s] for s in ICO_SIZES])
    written.append(output / app_icns().name)
    marks[1024].save(written[-1], append_images=[marks[s] for s in ICNS_SIZES])
    for state in TRAY_STATES:
        for size in TRAY_SIZES:
            written.append(output / tray_png(state, size).name)
            draw_tray(state, size).save(written[-1])
    return written


if __name__ == "__main__":
    for path in write_all(Path(sys.argv[1]) if len(sys.argv) > 1 else ICON_DIR):
        print(path)
