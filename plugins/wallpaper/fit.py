"""Scale an image to cover a screen: keep the aspect ratio, fill every pixel, crop the overflow evenly."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL.Image import Image


def cover(image: Image, width: int, height: int) -> Image:
    """`image` resized with Lanczos to cover width x height, centred, as opaque RGB."""
    from PIL import ImageOps
    from PIL.Image import Resampling

    return ImageOps.fit(image.convert("RGB"), (width, height), method=Resampling.LANCZOS, centering=(0.5, 0.5))
