"""The icon set: one source regenerates the committed files, in the sizes and formats each platform wants."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest
from PIL import IcnsImagePlugin, Image

from dreamtray.desktop import icon_files

MAKE_ICONS = Path(__file__).resolve().parent.parent / "icons" / "make_icons.py"


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("icons")
    runpy.run_path(str(MAKE_ICONS))["write_all"](out)
    return out


def _frames(path: Path) -> dict[tuple[int, int], bytes]:
    """Every picture a file holds, by size, as decoded RGBA pixels (independent of compression)."""
    with Image.open(path) as image:
        if image.format == "ICO":
            return {s: image.ico.getimage(s).convert("RGBA").tobytes() for s in image.info["sizes"]}
        if image.format == "ICNS":
            return {s: image.icns.getimage(s).convert("RGBA").tobytes() for s in image.info["sizes"]}
        return {image.size: image.convert("RGBA").tobytes()}


def test_regenerating_gives_the_committed_pictures(regenerated: Path) -> None:
    committed = sorted(p.name for p in icon_files.ICON_DIR.iterdir())
    assert sorted(p.name for p in regenerated.iterdir()) == committed
    for name in committed:
        assert _frames(regenerated / name) == _frames(icon_files.ICON_DIR / name), name


@pytest.mark.parametrize("size", icon_files.APP_SIZES)
def test_app_png_sizes(size: int) -> None:
    with Image.open(icon_files.app_png(size)) as image:
        assert (image.format, image.mode, image.size) == ("PNG", "RGBA", (size, size))
        # The rounded tile leaves the corner transparent and the centre opaque.
        assert image.getpixel((0, 0))[3] < 16
        assert image.getpixel((size // 2, size // 2))[3] == 255


def test_ico_holds_the_windows_sizes() -> None:
    with Image.open(icon_files.app_ico()) as image:
        assert image.format == "ICO"
        assert sorted(image.info["sizes"]) == [(s, s) for s in (16, 24, 32, 48, 64, 128, 256)]


def test_icns_holds_the_macos_sizes() -> None:
    data = icon_files.app_icns().read_bytes()
    assert data[:4] == b"icns"
    with Image.open(icon_files.app_icns()) as image:
        assert isinstance(image, IcnsImagePlugin.IcnsImageFile)
        assert {(w, h, s) for w, h, s in image.info["sizes"]} >= {(16, 16, 2), (128, 128, 1), (512, 512, 2)}
        assert image.size == (1024, 1024)


def _share(image: Image.Image, colour_test) -> float:
    """The share of the lower right quarter (where the badge sits) whose pixels pass `colour_test`."""
    half = image.width // 2
    pixels = [image.getpixel((x, y)) for x in range(half, image.width) for y in range(half, image.height)]
    return sum(1 for p in pixels if colour_test(*p[:3])) / len(pixels)


def _red(r: int, g: int, b: int) -> bool:
    return r > 180 and g < 90 and b < 90


def _amber(r: int, g: int, b: int) -> bool:
    return r > 200 and 120 < g < 200 and b < 60


@pytest.mark.parametrize("size", icon_files.TRAY_SIZES)
def test_tray_states_show_their_badge(size: int) -> None:
    images = {s: Image.open(icon_files.tray_png(s, size)).convert("RGBA") for s in icon_files.TRAY_STATES}
    assert all(image.size == (size, size) for image in images.values())
    assert images["idle"].tobytes() == Image.open(icon_files.app_png(size)).convert("RGBA").tobytes()
    assert _share(images["idle"], _red) == 0 and _share(images["idle"], _amber) == 0
    assert _share(images["error"], _red) > 0.25
    assert _share(images["busy"], _amber) > 0.25


def test_unknown_icon_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="known: idle, busy, error"):
        icon_files.tray_png("sleepy")
    with pytest.raises(ValueError, match="sizes drawn"):
        icon_files.app_png(20)
