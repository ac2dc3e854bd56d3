"""PNG bytes for a saved image: the fast encoder, its text chunk, the Pillow fallback.

Guarantees (``tests/test_png.py``):

* :func:`encode_png` returns a complete PNG that Pillow decodes to exactly the
  pixels it was given, with ``infotext`` (when given) in a ``parameters`` text
  chunk placed before the image data, so ``Image.open(p).info["parameters"]``
  finds it without decoding: ``tEXt`` when the text is Latin-1, else ``iTXt``
  (UTF-8), as Pillow's ``PngInfo.add_text`` would write it;
* levels 0-3 on L, LA, RGB and RGBA images use imagecodecs (libpng with
  zlib-ng): level 0 stores, 1-3 use the Paeth filter and the RLE strategy
  (OpenCV's fast setting with the Paeth filter, which compresses photos better
  than Sub); 2-3x faster than Pillow's level 1 and about 10 % smaller on
  photos (docs/PERFORMANCE.md, hot path). Levels 4-9, other modes, or no
  imagecodecs (the light install): Pillow, exactly as before;
* encoding releases the GIL in both encoders and touches no file.

The chunk is framed here (length, type, data, CRC-32: PNG spec section 5.3);
neither imagecodecs nor Pillow writes text chunks into bytes they did not encode.
"""

from __future__ import annotations

import io
import logging
import struct
import zlib
from typing import Any

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from sdxl_mcp.library.infotext import PARAMETERS_CHUNK

log = logging.getLogger(__name__)

__all__ = ["FAST_MAX_LEVEL", "PNG_SIGNATURE", "encode_png", "fast_encoder_available",
           "insert_text_chunk", "text_chunk"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Above this level the caller asked for small files: Pillow's adaptive filter wins there.
FAST_MAX_LEVEL = 3
_FAST_MODES = frozenset({"L", "LA", "RGB", "RGBA"})
_codecs: Any = None  # imagecodecs once imported, False when it cannot be


def _imagecodecs() -> Any:
    global _codecs
    if _codecs is None:
        try:
            import imagecodecs  # numpy with it: the engine extra, not the light install

            imagecodecs.png_encode  # noqa: B018 - a build without libpng is no use
            _codecs = imagecodecs
        except (ImportError, AttributeError) as exc:
            log.info("imagecodecs unavailable (%s): PNGs are encoded by Pillow", exc)
            _codecs = False
    return _codecs or None


def fast_encoder_available() -> bool:
    """Whether imagecodecs' PNG encoder can be used in this install."""
    return _imagecodecs() is not None


def encode_png(image: Image.Image, infotext: str | None, compress_level: int) -> bytes:
    """The PNG of ``image`` with ``infotext`` in its ``parameters`` chunk."""
    if not 0 <= compress_level <= 9:
        raise ValueError(f"compress_level must be 0-9, got {compress_level}")
    codecs = _imagecodecs()
    if codecs is None or compress_level > FAST_MAX_LEVEL or image.mode not in _FAST_MODES:
        return _pillow_png(image, infotext, compress_level)
    import numpy as np

    pixels = np.asarray(image)
    if compress_level == 0:
        data = codecs.png_encode(pixels, level=0, filter=codecs.PNG.FILTER.NONE)
    else:
        data = codecs.png_encode(pixels, level=compress_level, filter=codecs.PNG.FILTER.PAETH,
                                 strategy=codecs.PNG.STRATEGY.RLE)
    if infotext is None:
        return bytes(data)
    return insert_text_chunk(data, PARAMETERS_CHUNK, infotext)


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
    return struct.pack(">I", len(body)) + kind + body + struct.pack(
        ">I", zlib.crc32(kind + body))


def insert_text_chunk(png: bytes, keyword: str, text: str) -> bytes:
    """``png`` with a text chunk inserted just before its first ``IDAT`` chunk."""
    if not png.startswith(PNG_SIGNATURE):
        raise ValueError("not a PNG: the signature is missing")
    offset = len(PNG_SIGNATURE)
    while offset + 8 <= len(png):
        (length,) = struct.unpack_from(">I", png, offset)
        if png[offset + 4:offset + 8] == b"IDAT":
            whole = memoryview(png)  # one copy of the image data, not two
            return b"".join((whole[:offset], text_chunk(keyword, text), whole[offset:]))
        offset += 12 + length  # length, type, data, CRC
    raise ValueError("not a PNG: no IDAT chunk")
