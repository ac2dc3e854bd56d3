"""The saved PNG's bytes (sdxl_mcp.library.png): pixels, the parameters chunk, the encoders.

Every check decodes with Pillow, the reader the gallery, the exports and A1111
use; file sizes are compared, never times (those are `sdxl-mcp bench --hotpath`).
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from sdxl_mcp.bench.hotpath import _photo_like
from sdxl_mcp.library import png
from sdxl_mcp.library.png import encode_png

INFOTEXT = 'a lighthouse, "storm": dusk\nNegative prompt: blurry\nSteps: 20, Seed: 7'
UNICODE_INFOTEXT = "ein Leuchtturm im Sturm, 灯台, ☂\nSteps: 20, Seed: 7"


def _noise(mode: str, size: tuple[int, int] = (37, 23)) -> Image.Image:
    bands = len(mode)
    shape = (size[1], size[0]) if bands == 1 else (size[1], size[0], bands)
    pixels = np.random.default_rng(3).integers(0, 256, shape, dtype=np.uint8)
    return Image.fromarray(pixels, mode=mode)


def _chunks(data: bytes) -> list[tuple[bytes, bytes, int]]:
    """(type, data, stored CRC) of every chunk, in order."""
    assert data[:8] == png.PNG_SIGNATURE
    out, offset = [], 8
    while offset < len(data):
        (length,) = struct.unpack_from(">I", data, offset)
        kind = data[offset + 4:offset + 8]
        body = data[offset + 8:offset + 8 + length]
        (crc,) = struct.unpack_from(">I", data, offset + 8 + length)
        out.append((kind, body, crc))
        offset += 12 + length
    return out


@pytest.fixture
def pillow_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """As in the light install: imagecodecs and zlib-ng cannot be imported."""
    monkeypatch.setattr(png, "_codecs", False)


@pytest.fixture
def no_pillow_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object) -> bytes:
        raise AssertionError("Pillow encoded a PNG the fast encoder should have")

    monkeypatch.setattr(png, "_pillow_png", refuse)


def test_the_dev_install_has_the_fast_encoder() -> None:
    assert png.fast_encoder_available()


@pytest.mark.parametrize("level", [0, 1, 3])
@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA"])
def test_fast_encoder_round_trips_pixels_and_infotext(
    mode: str, level: int, no_pillow_encoder: None
) -> None:
    image = _noise(mode)
    data = encode_png(image, INFOTEXT, level)
    with Image.open(io.BytesIO(data)) as decoded:
        # In info before any pixel is decoded: the chunk precedes the image data.
        assert decoded.info["parameters"] == INFOTEXT
        assert decoded.mode == mode and decoded.size == image.size
        assert np.array_equal(np.asarray(decoded), np.asarray(image))


def test_text_chunk_is_latin1_text_before_the_first_idat_with_valid_crcs(
    no_pillow_encoder: None,
) -> None:
    chunks = _chunks(encode_png(_noise("RGB"), INFOTEXT, 1))
    kinds = [kind for kind, _, _ in chunks]
    assert kinds[:2] == [b"IHDR", b"tEXt"] and kinds[2] == b"IDAT" and kinds[-1] == b"IEND"
    assert chunks[1][1] == b"parameters\0" + INFOTEXT.encode("latin-1")
    assert all(zlib.crc32(kind + body) == crc for kind, body, crc in chunks)


def test_non_latin1_infotext_goes_into_an_itxt_chunk(no_pillow_encoder: None) -> None:
    data = encode_png(_noise("RGB"), UNICODE_INFOTEXT, 1)
    assert [kind for kind, _, _ in _chunks(data)][1] == b"iTXt"
    with Image.open(io.BytesIO(data)) as decoded:
        assert decoded.info["parameters"] == UNICODE_INFOTEXT


def test_no_infotext_writes_no_text_chunk(no_pillow_encoder: None) -> None:
    kinds = [kind for kind, _, _ in _chunks(encode_png(_noise("RGB"), None, 1))]
    assert b"tEXt" not in kinds and b"iTXt" not in kinds


@pytest.fixture
def four_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Four deflate parts even for a small image, as on a machine with four cores."""
    monkeypatch.setattr(png, "_cpus", lambda: 4)
    monkeypatch.setattr(png, "_MIN_PART_BYTES", 1000)


@pytest.mark.parametrize("level", [1, 3])
@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L"])
def test_rows_deflated_in_four_parts_decode_to_the_same_pixels(
    mode: str, level: int, four_parts: None, no_pillow_encoder: None
) -> None:
    image = _noise(mode, (83, 61))  # rows that do not split evenly into four
    data = encode_png(image, INFOTEXT, level)
    (idat,) = [body for kind, body, _ in _chunks(data) if kind == b"IDAT"]
    rows = zlib.decompress(idat)  # one zlib stream: its Adler-32 checks the joined parts
    assert len(rows) == image.height * (1 + image.width * len(mode))
    with Image.open(io.BytesIO(data)) as decoded:
        assert decoded.info["parameters"] == INFOTEXT
        assert np.array_equal(np.asarray(decoded), np.asarray(image))


def test_a_1024_square_photo_is_split_per_core_and_as_small_as_libpngs_own_encode(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import imagecodecs
    from zlib_ng import zlib_ng

    real = zlib_ng.compressobj
    parts: list[int] = []
    monkeypatch.setattr(zlib_ng, "compressobj", lambda *a: parts.append(1) or real(*a))
    image = _photo_like(1024)
    data = encode_png(image, None, 1)
    assert len(parts) == min(4, png._cpus())  # 3 MiB of rows: a part for each core
    single = imagecodecs.png_encode(np.asarray(image), level=1,
                                    filter=imagecodecs.PNG.FILTER.PAETH,
                                    strategy=imagecodecs.PNG.STRATEGY.RLE)
    assert len(data) <= len(single) * 1.001
    with Image.open(io.BytesIO(data)) as decoded:
        assert np.array_equal(np.asarray(decoded), np.asarray(image))


def _flat_art(size: int = 512) -> Image.Image:
    """Solid shapes and small text on a plain ground, like a flat illustration."""
    from PIL import ImageDraw

    image = Image.new("RGB", (size, size), (246, 244, 238))
    draw = ImageDraw.Draw(image)
    rng = np.random.default_rng(5)
    for _ in range(30):
        x0, y0 = (int(v) for v in rng.integers(0, size, 2))
        w, h = (int(v) for v in rng.integers(8, size // 3, 2))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        draw.rectangle([x0, y0, x0 + w, y0 + h], fill=colour)
    for y in range(0, size, 24):
        draw.text((10, y), f"flat vector illustration, a lighthouse {y}", fill=(20, 20, 20))
    return image


def test_flat_art_is_deflated_with_matches_and_stays_near_pillows_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    image = _flat_art()
    data = encode_png(image, None, 1)
    monkeypatch.setattr(png, "_FLAT_RATIO", 0.0)  # RLE only, as for photos
    rle_only = encode_png(image, None, 1)
    assert len(data) < 0.9 * len(rle_only)
    assert len(data) <= 1.05 * len(png._pillow_png(image, None, 1))
    with Image.open(io.BytesIO(data)) as decoded:
        assert np.array_equal(np.asarray(decoded), np.asarray(image))


def test_a_part_that_fails_to_deflate_fails_the_encode(
    four_parts: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from zlib_ng import zlib_ng

    real = zlib_ng.compressobj
    made: list[int] = []

    def third_fails(*args: object) -> object:
        made.append(1)
        if len(made) == 3:
            raise MemoryError("deflate state")
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(zlib_ng, "compressobj", third_fails)
    with pytest.raises(MemoryError, match="deflate state"):
        encode_png(_noise("RGB", (83, 61)), None, 1)
    monkeypatch.setattr(zlib_ng, "compressobj", real)
    encode_png(_noise("RGB", (83, 61)), None, 1)  # the parts' pool still works


def test_photo_like_default_file_is_no_larger_than_pillows_level_1() -> None:
    image = _photo_like(256)
    fast = encode_png(image, INFOTEXT, 1)
    before = png._pillow_png(image, INFOTEXT, 1)
    assert len(fast) <= len(before)
    with Image.open(io.BytesIO(fast)) as decoded:
        assert np.array_equal(np.asarray(decoded), np.asarray(image))


@pytest.mark.parametrize("infotext", [INFOTEXT, UNICODE_INFOTEXT])
def test_without_imagecodecs_pillow_writes_the_same_pixels_and_infotext(
    infotext: str, pillow_only: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert not png.fast_encoder_available()
    calls: list[tuple[str, int]] = []
    real = png._pillow_png

    def spy(image: Image.Image, text: str | None, level: int) -> bytes:
        calls.append((image.mode, level))
        return real(image, text, level)

    monkeypatch.setattr(png, "_pillow_png", spy)
    image = _noise("RGB")
    with Image.open(io.BytesIO(encode_png(image, infotext, 1))) as decoded:
        assert decoded.info["parameters"] == infotext
        assert np.array_equal(np.asarray(decoded), np.asarray(image))
    assert calls == [("RGB", 1)]  # exactly one encode, and Pillow wrote it


def test_high_levels_and_other_modes_are_left_to_pillow(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, int]] = []
    real = png._pillow_png

    def spy(image: Image.Image, infotext: str | None, level: int) -> bytes:
        calls.append((image.mode, level))
        return real(image, infotext, level)

    monkeypatch.setattr(png, "_pillow_png", spy)
    encode_png(_noise("RGB"), INFOTEXT, 6)
    paletted = _noise("RGB").convert("P")
    data = encode_png(paletted, INFOTEXT, 1)
    assert calls == [("RGB", 6), ("P", 1)]
    with Image.open(io.BytesIO(data)) as decoded:
        assert decoded.info["parameters"] == INFOTEXT and decoded.mode == "P"


def test_a_level_outside_0_to_9_is_refused() -> None:
    with pytest.raises(ValueError, match="compress_level must be 0-9"):
        encode_png(_noise("RGB"), None, 10)


def test_bytes_that_are_not_a_png_are_refused_before_any_chunk_is_written() -> None:
    with pytest.raises(ValueError, match="signature"):
        png._split_at_image_data(b"GIF89a...")
    with pytest.raises(ValueError, match="no IDAT"):
        png._split_at_image_data(png.PNG_SIGNATURE)
