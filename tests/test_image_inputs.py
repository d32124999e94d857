"""Images handed in by the user or a client: a clear message for what cannot be used (a decompression bomb, a
truncated file, no image at all), the right pixels for what can (animated, 16-bit, CMYK, palette, transparent),
from the library function and from `refine` and an init image on the real route, with nothing lost."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from cli_env import DreamtrayHome
from PIL import Image

from dreamtray.image_input import ImageInputError, open_rgb
from dreamtray.request import Request


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def declared_png(width: int, height: int) -> bytes:
    """A 100-byte PNG that declares `width` x `height` pixels (a decompression bomb's header)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b""))
        + png_chunk(b"IEND", b"")
    )


def encoded(image: Image.Image, kind: str = "PNG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, kind, **options)
    return buffer.getvalue()


def good_png() -> bytes:
    return encoded(Image.new("RGB", (64, 64), (10, 200, 30)))


UNUSABLE = {
    "bomb": (declared_png(100_000, 100_000), "declares 10,000 megapixels, more than the 179 megapixels"),
    "truncated": (good_png()[:70], "truncated or damaged"),
    "text": (b"just some words", "not an image (15 bytes); give a PNG, JPEG or WebP file"),
    "empty": (b"", "not an image (0 bytes)"),
}


@pytest.mark.parametrize("kind", UNUSABLE)
def test_an_image_that_cannot_be_used_gets_a_message_saying_why(kind):
    data, message = UNUSABLE[kind]
    with pytest.raises(ImageInputError, match=rf"^photo\.png: .*{message.replace('(', '.').replace(')', '.')}"):
        open_rgb(data, "photo.png")


def sixteen_bit_grey() -> bytes:
    image = Image.new("I;16", (4, 4))
    image.putdata([65535] * 8 + [32896] * 8)
    return encoded(image)


def animated() -> bytes:
    frames = [Image.new("RGB", (4, 4), colour) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    return encoded(frames[0], "GIF", save_all=True, append_images=frames[1:])


def palette() -> bytes:
    image = Image.new("P", (4, 4))
    image.putpalette([200, 10, 10] * 256)
    return encoded(image)


@pytest.mark.parametrize(
    ("data", "top_left", "note"),
    [
        (sixteen_bit_grey(), (255, 255, 255), None),
        (encoded(Image.new("CMYK", (4, 4), (0, 255, 255, 0)), "JPEG"), (254, 0, 0), None),
        (palette(), (200, 10, 10), None),
        (encoded(Image.new("RGBA", (4, 4), (0, 0, 0, 0))), (255, 255, 255), None),
        (animated(), (254, 0, 0), "has 3 frames: the first is used"),
    ],
    ids=["16-bit", "CMYK", "palette", "transparent", "animated"],
)
def test_unusual_images_give_the_right_rgb_pixels(data, top_left, note):
    image, notes = open_rgb(data, "photo")
    assert image.mode == "RGB" and image.size == (4, 4)
    assert image.getpixel((0, 0)) == pytest.approx(top_left, abs=2)
    assert notes == ([f"photo: it {note}"] if note else [])
    if data == sixteen_bit_grey():
        assert image.getpixel((0, 3)) == (128, 128, 128), "16-bit grey scaled down, not clipped to white"


@pytest.mark.parametrize("kind", ["bomb", "truncated", "text"])
def test_refine_says_why_an_image_cannot_be_refined_and_leaves_it_alone(tmp_path, kind):
    home = DreamtrayHome.create(tmp_path)
    original = tmp_path / f"{kind}.png"
    original.write_bytes(UNUSABLE[kind][0])
    result = home.run("refine", str(original), "at night", timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith(f"Error: {original}: ") and UNUSABLE[kind][1].split(" (")[0] in result.stderr
    assert original.read_bytes() == UNUSABLE[kind][0] and sorted(tmp_path.glob("*.png")) == [original]


def test_an_init_image_bomb_fails_the_job_with_its_reason(engine):
    from dreamtray.engine.client import JobFailed

    job = engine.submit(Request(prompt="x", init_image=declared_png(100_000, 100_000), width=64, height=64, steps=1))
    with pytest.raises(JobFailed, match="The init image: it declares 10,000 megapixels"):
        job.result()
