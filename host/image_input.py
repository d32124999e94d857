"""Images handed in by the user or a client (refine's original, an init image, a series image on a contact
sheet, a plugin's input), opened one careful way.

What cannot be used gets a clear message naming it: no image at all, a truncated or damaged file, an image that
declares more pixels than Pillow reads (a decompression bomb: a few kilobytes that would decode to gigabytes).
What can be used gets the right pixels, with a note where something was left aside: 16-bit grey scaled down to
8 bits (Pillow's own conversion clips it to white), CMYK and palette images in RGB, transparency laid on white,
the EXIF orientation applied, the first frame of an animation.
"""

from __future__ import annotations

import io
import re
import stat
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from dreamtray.paths import file_problem

if TYPE_CHECKING:
    from PIL.Image import Image

_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_TRANSPARENT = ("RGBA", "LA", "PA", "La", "RGBa")


MAX_FILE_BYTES = 512 * 2**20
"""The largest image file read (a 16-bit RGBA 8192x8192 PNG stored uncompressed is 512 MB)."""


class ImageInputError(ValueError):
    """An image that cannot be used; the message names it and says why, in words."""


def _named(name: str, problem: str) -> str:
    return f"{name}: {problem}" if name else problem


def read_image_file(path: Path, name: str) -> bytes:
    """The bytes of the image file at `path`, refusing one larger than MAX_FILE_BYTES unread."""
    try:
        if not stat.S_ISREG(Path(path).stat().st_mode):  # a FIFO would block the read, a device never end it
            raise ImageInputError(_named(name, "not a regular file, so not an image"))
        with Path(path).open("rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        if isinstance(exc, ImageInputError):
            raise
        raise ImageInputError(_named(name, f"cannot be read ({file_problem(exc)})")) from None
    if len(data) > MAX_FILE_BYTES:
        raise ImageInputError(_named(name, f"larger than {MAX_FILE_BYTES // 2**20} MB, too large for an image"))
    return data


def open_rgb(source: bytes | Path, name: str) -> tuple[Image, list[str]]:
    """The image as 8-bit RGB pixels, and a note for each thing left aside; ImageInputError when it cannot be used.

    `name` is how messages call the image (a file name, "the init image"; "" when the caller names it).
    """
    from PIL import Image, UnidentifiedImageError

    data = source if isinstance(source, bytes) else read_image_file(source, name)
    notes: list[str] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                frames = getattr(image, "n_frames", 1)
                if frames > 1:
                    notes.append(_named(name, f"it has {frames} frames: the first is used"))
                image.load()
                picture = _rgb(_upright(image, name, notes))
    except Image.DecompressionBombError as exc:
        declared = re.search(r"\((\d+) pixels\)", str(exc))
        pixels = f"{int(declared[1]) / 1e6:,.0f} megapixels" if declared else "more pixels than that"
        limit = 2 * (Image.MAX_IMAGE_PIXELS or 0) / 1e6
        raise ImageInputError(
            _named(
                name,
                f"it declares {pixels}, more than the {limit:,.0f} megapixels an image may have here "
                "(a decompression bomb, or a picture far too large)",
            )
        ) from None
    except UnidentifiedImageError:
        raise ImageInputError(
            _named(name, f"not an image ({len(data):,} bytes); give a PNG, JPEG or WebP file")
        ) from None
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError) as exc:  # what Pillow's decoders raise
        raise ImageInputError(
            _named(name, f"the image is truncated or damaged and cannot be decoded ({exc})")
        ) from None
    return picture, notes


def _upright(image: Image, name: str, notes: list[str]) -> Image:
    """The image turned as its EXIF orientation says (a photo from a phone), or as stored when that is unreadable."""
    from PIL import ImageOps

    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # noqa: BLE001 - any damage in an EXIF block: the pixels as stored
        notes.append(_named(name, "its EXIF orientation is unreadable; the image is used as stored"))
        return image


def _rgb(image: Image) -> Image:
    from PIL import Image

    if image.mode in _SIXTEEN_BIT:
        top = 65535 if image.mode != "I" or (image.getextrema()[1] or 0) > 255 else 255
        return image.convert("I").point(lambda value: value * (255 / top)).convert("L").convert("RGB")
    if image.mode in _TRANSPARENT or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")
