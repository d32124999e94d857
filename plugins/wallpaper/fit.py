"""Scale an image to cover a screen: keep the aspect ratio, fill every pixel, crop the overflow evenly."""

from __future__ import annotations

from PIL import Image, ImageOps


def cover(image: Image.Image, width: int, height: int) -> Image.Image:
    """`image` resized with Lanczos to cover width x height, centred, as opaque RGB."""
    return ImageOps.fit(image.convert("RGB"), (width, height), method=Image.Resampling.LANCZOS, centering=(0.5, 0.5))
