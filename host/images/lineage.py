"""Lineage of refined images, and atomic writes for images kept outside the gallery (series folders).

A refined image carries, besides the usual `parameters` and `dreamtray` chunks (see `dreamtray.images.metadata`), a
`dreamtray-lineage` text chunk: a JSON list of its ancestors, parent first. Each entry has the ancestor's file
name, its SHA-256 and its own `parameters` text; the parent's own lineage follows, so the whole chain travels
with the file (up to MAX_ANCESTORS).
"""

from __future__ import annotations

import hashlib
import json

from dreamtray.images.metadata import PARAMETERS_KEY, MetadataError, read_metadata
from dreamtray.images.pngchunks import COMPRESS_ABOVE, join_chunks, read_text, split_chunks, text_chunk

LINEAGE_KEY = "dreamtray-lineage"
MAX_ANCESTORS = 32


def image_texts(image: bytes) -> dict[str, str]:
    """The text chunks of a PNG; empty for a PNG without them or for another format (JPEG, WebP...)."""
    try:
        return read_metadata(image).texts
    except MetadataError:
        return {}


def lineage_of(parent: bytes, parent_name: str) -> list[dict[str, str]]:
    """The ancestors a child of `parent` (image bytes) records: the parent first, then the parent's own."""
    texts = image_texts(parent)
    try:
        earlier = json.loads(texts.get(LINEAGE_KEY, "[]"))
    except (ValueError, RecursionError):  # not JSON, or nested too deep to read
        earlier = []
    entry = {
        "file": parent_name,
        "sha256": hashlib.sha256(parent).hexdigest(),
        "parameters": texts.get(PARAMETERS_KEY, ""),
    }
    return [entry, *(earlier if isinstance(earlier, list) else [])][:MAX_ANCESTORS]


def with_lineage(png: bytes, lineage: list[dict[str, str]]) -> bytes:
    """The PNG with a `dreamtray-lineage` chunk (replacing any earlier one); pixels untouched."""
    chunks = split_chunks(png)
    text = json.dumps(lineage, ensure_ascii=False)
    ours = text_chunk(LINEAGE_KEY, text, compress=len(text) > COMPRESS_ABOVE)
    kept = [chunk for chunk in chunks[1:] if (read_text(chunk) or ("",))[0] != LINEAGE_KEY]
    return join_chunks([chunks[0], ours, *kept])
