"""PNG bytes for a saved image: the fast encoder, its text chunk, the Pillow fallback.

Guarantees (``tests/library/test_png.py``): :func:`encode_png` returns a complete PNG that
Pillow decodes to exactly the given pixels, with ``infotext`` in a ``parameters`` text chunk
before the image data; levels 0-3 on L, LA, RGB and RGBA use the fast encoder (libpng +
zlib-ng), anything else or the light install uses Pillow; encoding releases the GIL and
touches no file (details: docs/ARCHITECTURE.md "Guarantees").
"""

from __future__ import annotations

import io
import logging
import os
import struct
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from sdxl_mcp.library.infotext import PARAMETERS_CHUNK

log = logging.getLogger(__name__)

__all__ = ["FAST_MAX_LEVEL", "PNG_SIGNATURE", "encode_png", "fast_encoder_available",
           "text_chunk"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Above this level the caller asked for small files: Pillow's adaptive filter wins there.
FAST_MAX_LEVEL = 3
_FAST_MODES = frozenset({"L", "LA", "RGB", "RGBA"})
# Deflate parts: one per core, at most four, none under 256 KiB (a 1024² RGB
# image is 3 MiB of rows). The split costs nothing measurable in size: RLE only
# looks one byte back.
_MAX_PARTS = 4
_MIN_PART_BYTES = 256 * 1024
# Rows that RLE packs below a fifth of their size are flat art, not a photo
# (photos: 0.3-0.6; a screenshot: 0.05).
_FLAT_RATIO = 0.2
# A zlib header (deflate, 32 KiB window, no dictionary) that passes its check.
_ZLIB_HEADER = b"\x78\x01"
_codecs: Any = None  # (imagecodecs, zlib_ng) once imported, False when either cannot be
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _fast_codecs() -> tuple[Any, Any] | None:
    global _codecs
    if _codecs is None:
        try:
            # numpy with them: the engine extra, not the light install.
            import imagecodecs
            from zlib_ng import zlib_ng

            imagecodecs.png_encode  # noqa: B018 - a build without libpng is no use
            _codecs = (imagecodecs, zlib_ng)
        except (ImportError, AttributeError) as exc:
            log.info("imagecodecs or zlib-ng unavailable (%s): PNGs are encoded by Pillow", exc)
            _codecs = False
    return _codecs or None


def fast_encoder_available() -> bool:
    """Whether the fast encoder (imagecodecs and zlib-ng) can be used in this install."""
    return _fast_codecs() is not None


def encode_png(image: Image.Image, infotext: str | None, compress_level: int) -> bytes:
    """The PNG of ``image`` with ``infotext`` in its ``parameters`` chunk."""
    if not 0 <= compress_level <= 9:
        raise ValueError(f"compress_level must be 0-9, got {compress_level}")
    codecs = _fast_codecs()
    if codecs is None or compress_level > FAST_MAX_LEVEL or image.mode not in _FAST_MODES:
        return _pillow_png(image, infotext, compress_level)
    imagecodecs, zlib_ng = codecs
    import numpy as np

    pixels = np.asarray(image)
    # Stored (level 0): the rows come back out of libpng's IDAT at memcpy cost.
    row_filter = imagecodecs.PNG.FILTER.PAETH if compress_level else imagecodecs.PNG.FILTER.NONE
    stored = imagecodecs.png_encode(pixels, level=0, filter=row_filter)
    head, stream, tail = _split_at_image_data(stored)
    if compress_level:
        stream = _deflate_in_parts(zlib_ng, zlib.decompress(stream), compress_level)
    text = b"" if infotext is None else text_chunk(PARAMETERS_CHUNK, infotext)
    return b"".join((head, text, *_chunk_parts(b"IDAT", stream, zlib_ng.crc32), tail))


def _split_at_image_data(png: bytes) -> tuple[memoryview, bytes, memoryview]:
    """The bytes before the first IDAT, the zlib stream of all IDATs, those after the last."""
    if not png.startswith(PNG_SIGNATURE):
        raise ValueError("not a PNG: the signature is missing")
    whole = memoryview(png)
    offset, first, last, parts = len(PNG_SIGNATURE), -1, -1, []
    while offset + 8 <= len(png):
        (length,) = struct.unpack_from(">I", png, offset)
        if png[offset + 4:offset + 8] == b"IDAT":
            first = offset if first < 0 else first
            parts.append(whole[offset + 8:offset + 8 + length])
            last = offset + 12 + length
        offset += 12 + length  # length, type, data, CRC
    if first < 0:
        raise ValueError("not a PNG: no IDAT chunk")
    return whole[:first], b"".join(parts), whole[last:]


def _deflate_in_parts(zlib_ng: Any, rows: bytes, level: int) -> bytes:
    """One zlib stream of ``rows``: RLE deflate, its parts compressed at once."""
    count = max(1, min(_MAX_PARTS, _cpus(), len(rows) // _MIN_PART_BYTES))
    cuts = [len(rows) * i // count for i in range(count + 1)]
    view = memoryview(rows)

    def deflate(rows_part: memoryview, last: bool, strategy: int, effort: int) -> bytes:
        # Raw deflate (no header of its own); a sync flush ends a part on a byte
        # boundary with no final block, so the next part's blocks follow it.
        deflater = zlib_ng.compressobj(effort, zlib_ng.DEFLATED, -15, 9, strategy)
        end = zlib_ng.Z_FINISH if last else zlib_ng.Z_SYNC_FLUSH
        return deflater.compress(rows_part) + deflater.flush(end)

    def part(i: int) -> bytes:
        rows_part, last = view[cuts[i]:cuts[i + 1]], i == count - 1
        packed = deflate(rows_part, last, zlib_ng.Z_RLE, level)
        if len(packed) < _FLAT_RATIO * len(rows_part):
            # Flat art (logos, flat illustrations, screenshots): the default
            # strategy's longer matches are about 10 % smaller there, and fast.
            # Level 3: zlib-ng's levels 1-2 use quicker match finders that lose it.
            matched = deflate(rows_part, last, zlib_ng.Z_DEFAULT_STRATEGY, 3)
            packed = min(packed, matched, key=len)
        return packed

    others = [_deflate_pool().submit(part, i) for i in range(1, count)]
    first = part(0)  # this thread takes a part too
    checksum = zlib_ng.adler32(rows)
    return b"".join((_ZLIB_HEADER, first, *(f.result() for f in others),
                     struct.pack(">I", checksum)))


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the cores this process may use
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _deflate_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=_MAX_PARTS - 1,
                                       thread_name_prefix="png-deflate")
        return _pool


def _chunk_parts(kind: bytes, body: bytes, crc32: Any = zlib.crc32) -> tuple[bytes, ...]:
    """A chunk as pieces to join (the body is not copied here)."""
    return (struct.pack(">I", len(body)), kind, body,
            struct.pack(">I", crc32(body, crc32(kind))))


def _pillow_png(image: Image.Image, infotext: str | None, compress_level: int) -> bytes:
    buffer = io.BytesIO()
    pnginfo = PngInfo()
    if infotext is not None:
        pnginfo.add_text(PARAMETERS_CHUNK, infotext)
    image.save(buffer, format="PNG", pnginfo=pnginfo, compress_level=compress_level)
    return buffer.getvalue()


def text_chunk(keyword: str, text: str) -> bytes:
    """A whole ``tEXt`` chunk (``iTXt``, uncompressed UTF-8, when not Latin-1)."""
    key = keyword.encode("latin-1")
    if not 1 <= len(key) <= 79 or b"\0" in key:
        raise ValueError(f"a PNG text keyword is 1-79 Latin-1 characters, got {keyword!r}")
    try:
        kind, body = b"tEXt", key + b"\0" + text.encode("latin-1")
    except UnicodeEncodeError:
        # keyword, NUL, compression flag 0 and method 0, empty language, NUL, empty
        # translated keyword, NUL, the text.
        kind, body = b"iTXt", key + b"\0\0\0" + b"\0" + b"\0" + text.encode("utf-8")
    return b"".join(_chunk_parts(kind, body))
