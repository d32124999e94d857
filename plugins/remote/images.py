"""Image bytes from remote APIs: base64 decoding with a clear error, and PNG whatever format came."""

from __future__ import annotations

import base64
import binascii
import io

from dreamtray.api import EngineError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_from_b64(data: str, where: str) -> bytes:
    """Decode one base64 image; other formats (JPEG, WebP) are converted to PNG."""
    if "," in data[:100] and data.startswith("data:"):
        data = data.split(",", 1)[1]  # a data: URL, as some servers send
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise EngineError(f"{where} sent an image that is not valid base64 (cut short?).") from None
    if raw.startswith(PNG_SIGNATURE):
        return raw
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(raw))
        image.load()
    except (UnidentifiedImageError, OSError):
        raise EngineError(f"{where} sent {len(raw)} bytes that are not a readable image.") from None
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
