"""Images from outside become library images: data URIs and URLs, checked before a write.

A real ImageStore in tmp_path; URLs come from the loopback server of
``tests.helpers_urls`` (allowed with ``allow_private``). Every refusal leaves
the output folder as it was.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image

from sdxl_mcp.errors import BadRequest
from sdxl_mcp.library import ImageStore
from sdxl_mcp.library.outside_images import (
    MAX_UPLOAD_BYTES,
    OutsideImages,
    is_outside,
    sniff_format,
)
from sdxl_mcp.library.url_fetch import UrlFetcher
from tests.helpers_images import files
from tests.helpers_urls import CUBE, data_uri, image_server, png_bytes


def jpeg_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (20, 10), "green").save(buffer, format="JPEG")
    return buffer.getvalue()


def png_header_claiming(width: int, height: int) -> bytes:
    """A PNG announcing ``width`` x ``height`` in its header, with almost no pixel data."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body)))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0"))
            + chunk(b"IEND", b""))


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[ImageStore]:
    with ImageStore(tmp_path / "images") as opened:
        yield opened


@pytest.fixture
async def outside(store: ImageStore) -> AsyncIterator[OutsideImages]:
    images = OutsideImages(store, lambda: UrlFetcher(allow_private=True))
    yield images
    await images.aclose()


async def refused(outside: OutsideImages, reference: str, argument: str = "mask") -> str:
    before = files(outside.store.output_dir)
    with pytest.raises(BadRequest) as caught:
        await outside.bring_in(reference, argument)
    assert files(outside.store.output_dir) == before, "a refusal wrote something"
    assert outside.store.catalog.count() == 0
    assert caught.value.message.startswith(f"{argument}: ")
    return caught.value.message


# ------------------------------------------------------------ telling them apart
@pytest.mark.parametrize(("reference", "outside"), [
    ("https://example.com/a.png", True), ("HTTP://example.com/a.png", True),
    ("data:image/png;base64,AAAA", True), ("generated_image_20261208_1", False),
    ("image://generated_image_20261208_1", False), ("/home/me/a.png", False),
])
def test_urls_and_data_uris_are_outside_and_library_references_are_not(
        reference: str, outside: bool) -> None:
    assert is_outside(reference) is outside


@pytest.mark.parametrize(("data", "found"), [
    (CUBE, "PNG"), (jpeg_bytes(), "JPEG"), (b"RIFF\0\0\0\0WEBPVP8 ", "WEBP"),
    (b"GIF89a....", None), (b"<html>", None), (b"", None),
])
def test_the_format_is_read_from_the_bytes(data: bytes, found: str | None) -> None:
    assert sniff_format(data) == found


# ------------------------------------------------------------ data URIs
async def test_a_data_uri_is_catalogued_as_an_upload(outside: OutsideImages) -> None:
    record = await outside.bring_in(data_uri(CUBE), "mask")
    assert record.source == "upload" and record.image_id
    assert record.path.read_bytes() == CUBE and record.path.suffix == ".png"
    assert (record.width, record.height) == (40, 30)
    assert outside.store.catalog.get_by_image_id(record.image_id) is not None


async def test_the_same_bytes_again_give_the_same_image_and_write_nothing(
        outside: OutsideImages) -> None:
    first = await outside.bring_in(data_uri(CUBE), "image")
    before = files(outside.store.output_dir)
    again = await outside.bring_in(data_uri(CUBE, "image/jpeg"), "mask")
    assert again.image_id == first.image_id
    assert files(outside.store.output_dir) == before and outside.store.catalog.count() == 1


async def test_the_media_type_of_a_data_uri_is_not_trusted(outside: OutsideImages) -> None:
    record = await outside.bring_in(data_uri(jpeg_bytes(), "image/png"), "image")
    assert record.path.suffix == ".jpg"


@pytest.mark.parametrize(("reference", "says"), [
    ("data:text/plain;base64,aGVsbG8=", "must start with data:image/png;base64,"),
    ("data:image/png,rawbytes", "must start with data:image/png;base64,"),
    ("data:image/png;base64,@@@@", "not valid base64"),
    (data_uri(b"<html>hello</html>"), "not a PNG, JPEG or WebP image"),
    (data_uri(b"GIF89a" + b"\0" * 20, "image/gif"), "must start with data:image/png"),
    (data_uri(CUBE[:60]), "cannot be read"),
    (data_uri(png_header_claiming(10_000, 5_000)), "over 40 megapixels"),
    (data_uri(b"\x89PNG\r\n\x1a\n" + b"\0" * (MAX_UPLOAD_BYTES + 1)), "over 4 MB"),
])
async def test_a_bad_data_uri_is_refused_naming_the_argument_and_the_rule(
        outside: OutsideImages, reference: str, says: str) -> None:
    assert says in await refused(outside, reference)


# ------------------------------------------------------------ URLs
async def test_a_url_is_catalogued_with_the_url_and_where_it_led(outside: OutsideImages) -> None:
    with image_server() as server:
        record = await outside.bring_in(f"{server.url}/hop/1", "image")
    assert record.source == "url" and record.path.read_bytes() == CUBE
    assert record.parameters == {"url": f"{server.url}/hop/1",
                                 "final_url": f"{server.url}/cube.png"}


async def test_the_same_image_from_another_url_keeps_its_image_id(
        outside: OutsideImages) -> None:
    with image_server() as server:
        first = await outside.bring_in(f"{server.url}/cube.png", "image")
        again = await outside.bring_in(f"{server.url}/lying.png", "image")
        upload = await outside.bring_in(data_uri(CUBE), "image")
    assert first.image_id == again.image_id == upload.image_id
    assert outside.store.catalog.count() == 1


async def test_a_lying_content_type_does_not_matter_the_bytes_do(
        outside: OutsideImages) -> None:
    with image_server() as server:
        record = await outside.bring_in(f"{server.url}/lying.png", "image")
    assert record.path.read_bytes() == CUBE  # sent as text/html


async def test_a_web_page_sent_as_image_png_is_refused(outside: OutsideImages) -> None:
    with image_server() as server:
        message = await refused(outside, f"{server.url}/page.png", "image")
    assert "not a PNG, JPEG or WebP image" in message


async def test_urls_are_refused_when_url_input_is_off(store: ImageStore) -> None:
    images = OutsideImages(store, None)
    with image_server() as server:
        message = await refused(images, f"{server.url}/cube.png", "image")
        assert server.requests == []
    assert "SDXL_MCP_URL_IMPORT=false" in message


async def test_data_uris_still_work_when_url_input_is_off(store: ImageStore) -> None:
    record = await OutsideImages(store, None).bring_in(data_uri(png_bytes()), "image")
    assert record.source == "upload"
