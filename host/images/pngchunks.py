"""PNG chunk framing: split a PNG into its chunks (checking every CRC), insert text chunks, encode text.

Only the container is handled here, never the pixels: metadata is added to the engine's PNG bytes as they
are, with no re-encoding, and reading a file's text needs no image decoder.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_TEXT_BYTES = 16 * 1024 * 1024
"""The text a file's chunks may hold in all, once inflated: more is a decompression bomb, not metadata."""
_TEXT_LIMIT = f"{MAX_TEXT_BYTES // 2**20} MB in all"
COMPRESS_ABOVE = 2048
"""Our own iTXt chunks are compressed from this size on."""


class CorruptPNGError(ValueError):
    """The bytes are not a well-formed PNG: wrong signature, truncated, or a chunk with a bad checksum."""


@dataclass(frozen=True)
class Chunk:
    type: bytes
    data: bytes
    offset: int
    """Where the chunk starts in the file (its length field), for error messages."""

    @property
    def name(self) -> str:
        return self.type.decode("latin-1")


def split_chunks(png: bytes) -> list[Chunk]:
    """All chunks of a PNG, in order, after checking the signature, every CRC and that IEND ends it."""
    if not png.startswith(SIGNATURE):
        raise CorruptPNGError("not a PNG file (its first bytes are not the PNG signature)")
    chunks: list[Chunk] = []
    position = len(SIGNATURE)
    while position < len(png):
        if position + 8 > len(png):
            raise CorruptPNGError(f"the file is truncated inside a chunk header at byte {position}")
        length, kind = struct.unpack(">I4s", png[position : position + 8])
        end = position + 12 + length
        if end > len(png):
            raise CorruptPNGError(
                f"the file is truncated: chunk {kind!r} at byte {position} needs {length} bytes of data"
            )
        data = png[position + 8 : position + 8 + length]
        (crc,) = struct.unpack(">I", png[end - 4 : end])
        if zlib.crc32(kind + data) != crc:
            name = kind.decode("latin-1")
            raise CorruptPNGError(f"chunk {name!r} at byte {position} is damaged (its CRC checksum does not match)")
        chunks.append(Chunk(kind, data, position))
        position = end
        if kind == b"IEND":
            break
    if not chunks or chunks[0].type != b"IHDR":
        raise CorruptPNGError("the PNG does not start with an IHDR chunk")
    if chunks[-1].type != b"IEND":
        raise CorruptPNGError("the file is truncated: the PNG has no IEND chunk")
    return chunks


def image_size(chunks: list[Chunk]) -> tuple[int, int]:
    """Width and height from the IHDR chunk."""
    width, height = struct.unpack(">II", chunks[0].data[:8])
    return width, height


def join_chunks(chunks: list[Chunk]) -> bytes:
    parts = [SIGNATURE]
    for chunk in chunks:
        parts.append(struct.pack(">I", len(chunk.data)) + chunk.type + chunk.data)
        parts.append(struct.pack(">I", zlib.crc32(chunk.type + chunk.data)))
    return b"".join(parts)


def text_chunk(key: str, text: str, *, compress: bool = False) -> Chunk:
    """tEXt when the text is Latin-1 and compression is not wanted (what most readers expect), else iTXt."""
    keyword = key.encode("latin-1")
    if not 1 <= len(keyword) <= 79:
        raise ValueError(f"a PNG text keyword has 1 to 79 characters, not {len(keyword)}")
    if not compress:
        try:
            return Chunk(b"tEXt", keyword + b"\0" + text.encode("latin-1"), 0)
        except UnicodeEncodeError:
            pass
    payload = text.encode("utf-8")
    flag = b"\x01\x00" if compress else b"\x00\x00"
    if compress:
        payload = zlib.compress(payload, 9)
    return Chunk(b"iTXt", keyword + b"\0" + flag + b"\0\0" + payload, 0)


def _inflate(data: bytes, where: str, limit: int) -> bytes:
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, limit + 1)  # never 0: zlib reads that as "no limit"
    except zlib.error as exc:
        raise CorruptPNGError(f"{where}: its compressed text cannot be decompressed ({exc})") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise CorruptPNGError(f"{where}: its text inflates beyond {_TEXT_LIMIT} (a decompression bomb)")
    return out


def read_texts(chunks: list[Chunk]) -> dict[str, str]:
    """Every text chunk's text by keyword (the first of each), at most MAX_TEXT_BYTES of text in all."""
    texts: dict[str, str] = {}
    left = MAX_TEXT_BYTES
    for chunk in chunks:
        found = read_text(chunk, limit=left)
        if found:
            left -= len(found[1])
            texts.setdefault(*found)
    return texts


def read_text(chunk: Chunk, *, limit: int = MAX_TEXT_BYTES) -> tuple[str, str] | None:
    """(keyword, text) of a tEXt, zTXt or iTXt chunk; None for other chunk types.

    Text beyond `limit` bytes (or characters, once inflated) is refused with CorruptPNGError.
    """
    if chunk.type not in (b"tEXt", b"zTXt", b"iTXt"):
        return None
    where = f"text chunk {chunk.name!r} at byte {chunk.offset}"
    keyword, sep, rest = chunk.data.partition(b"\0")
    if not sep or not keyword:
        raise CorruptPNGError(f"{where} has no keyword")
    key = keyword.decode("latin-1")
    if chunk.type == b"tEXt":
        if len(rest) > limit:
            raise CorruptPNGError(f"{where}: the file's text is beyond {_TEXT_LIMIT}")
        return key, rest.decode("latin-1")
    if chunk.type == b"zTXt":
        return key, _inflate(rest[1:], where, limit).decode("latin-1")
    if len(rest) < 2:
        raise CorruptPNGError(f"{where} is too short")
    compressed = rest[0] == 1
    _language, _, rest = rest[2:].partition(b"\0")
    _translated, _, text = rest.partition(b"\0")
    if compressed:
        text = _inflate(text, where, limit)
    elif len(text) > limit:
        raise CorruptPNGError(f"{where}: the file's text is beyond {_TEXT_LIMIT}")
    try:
        return key, text.decode("utf-8")
    except UnicodeDecodeError:
        raise CorruptPNGError(f"{where} is not valid UTF-8") from None
