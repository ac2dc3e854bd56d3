"""Images from outside end to end: a data URI or a URL wherever a tool takes an image.

Through the in-memory MCP client and a real REST server on loopback; URLs
come from the loopback image server of ``tests.helpers_urls`` (allowed only
with SDXL_MCP_URL_ALLOW_PRIVATE). The gated fake backend stands in for the
engine: what is under test is how the image gets in, not the pixels.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from mcp import Client
from PIL import Image

from sdxl_mcp.entrypoints.mcp.server import build_server
from sdxl_mcp.errors import BadRequest
from sdxl_mcp.schemas import EditRequest
from sdxl_mcp.service.edit import edit as edit_image
from sdxl_mcp.service.facade import ImageService
from tests.fakes import GatedBackend
from tests.helpers_http import serve
from tests.helpers_images import files, half_mask, noise
from tests.helpers_urls import data_uri, image_server

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


SOURCE = png(noise())
MASK = png(half_mask())


def service(settings: Any) -> ImageService:
    return ImageService(settings, backend=GatedBackend(gate_open=True))  # type: ignore[arg-type]


async def test_mcp_edit_takes_a_data_uri_image_and_a_url_mask_and_catalogues_both(
        make_settings: Callable[..., Any]) -> None:
    settings = make_settings(url_allow_private=True)
    svc = service(settings)
    with image_server({"/mask.png": MASK}) as server:
        async with Client(build_server(settings, svc)) as client:
            result = await client.call_tool("edit_image", {
                "image": data_uri(SOURCE), "prompt": "at night",
                "mask": f"{server.url}/mask.png"})
            uploads = await client.call_tool("find_images", {"source": "upload"})
            urls = await client.call_tool("find_images", {"source": "url"})
            exported = await client.call_tool("export_image", {
                "image": data_uri(SOURCE), "width": 64, "height": 64})
    assert not result.is_error, result.content
    body = result.structured_content or {}
    (upload,) = (uploads.structured_content or {})["images"]
    (fetched,) = (urls.structured_content or {})["images"]
    assert body["status"] == "succeeded"
    assert body["source_image_id"] == upload["image_id"]
    assert body["mask_image_id"] == fetched["image_id"]
    assert upload["source"] == "upload" and fetched["source"] == "url"
    assert not exported.is_error, exported.content
    assert (exported.structured_content or {})["image_id"] == upload["image_id"]


async def test_a_refused_url_is_a_tool_error_naming_the_argument_and_nothing_is_sent(
        make_settings: Callable[..., Any]) -> None:
    settings = make_settings()
    svc = service(settings)
    with image_server() as server:
        async with Client(build_server(settings, svc)) as client:
            refused = await client.call_tool("edit_image", {
                "image": f"{server.url}/cube.png", "prompt": "at night"})
            before = files(settings.output_dir)
            after = await client.call_tool("edit_image", {
                "image": data_uri(SOURCE), "prompt": "at night"})
    assert refused.is_error
    text = refused.content[0].text  # type: ignore[union-attr]
    assert text.startswith("image: ") and "loopback" in text and "ALLOW_PRIVATE" in text
    assert server.requests == []
    assert not after.is_error and files(settings.output_dir) > before  # the queue is free


async def test_with_url_input_off_urls_are_refused_and_data_uris_still_work(
        make_settings: Callable[..., Any]) -> None:
    async with service(make_settings(url_import=False, url_allow_private=True)) as svc:
        with image_server() as server:
            with pytest.raises(BadRequest, match="SDXL_MCP_URL_IMPORT=false"):
                await edit_image(svc, EditRequest(image=f"{server.url}/cube.png", prompt="x"))
            assert server.requests == []
        done = await edit_image(svc, EditRequest(image=data_uri(SOURCE), prompt="x"))
    assert done.status == "succeeded"


async def test_an_oversized_data_uri_is_refused_in_one_short_sentence(
        make_settings: Callable[..., Any]) -> None:
    settings = make_settings()
    huge = "data:image/png;base64," + "A" * 6_000_000
    async with Client(build_server(settings, service(settings))) as client:
        refused = await client.call_tool("edit_image", {"image": huge, "prompt": "x"})
    assert refused.is_error
    text = refused.content[0].text  # type: ignore[union-attr]
    assert "image" in text and len(text) < 400


def test_rest_takes_a_data_uri_over_the_plain_json_cap_and_refuses_past_the_image_cap(
        make_settings: Callable[..., Any]) -> None:
    settings = make_settings()
    big_source = png(noise((512, 512)))  # about 790 KB: far over the 64 KiB of other routes
    assert len(big_source) > 64 * 1024
    with serve(settings, service(settings)) as live:
        url = live.url + "/api/media/edit-image"
        ok = httpx.post(url, json={"image": data_uri(big_source), "prompt": "x"}, timeout=60)
        too_big = httpx.post(url, content=b'{"image": "' + b"A" * (13 * 2**20) + b'"}',
                             headers={"Content-Type": "application/json"}, timeout=60)
    assert ok.status_code == 200, ok.text
    assert ok.json()["source_image_id"]
    assert too_big.status_code == 413 and "12 MiB" in too_big.json()["message"]
