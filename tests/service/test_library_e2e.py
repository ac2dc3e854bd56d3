"""The library workflow end to end on the real tiny SDXL model, over MCP and REST:
generate, find it, read a resized view, export it for a post, reuse it."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from mcp import Client
from PIL import Image

from sdxl_mcp.entrypoints.mcp.server import build_server
from sdxl_mcp.library.transforms import sniff_format
from sdxl_mcp.settings import Settings
from tests.helpers_http import serve, tiny_settings

SMALL = {"width": 256, "height": 256, "num_inference_steps": 20, "use_refinement": False}


async def test_generate_find_view_export_reuse_over_mcp(
    tiny_models: tuple, make_settings: Callable[..., Settings]
) -> None:
    async with Client(build_server(make_settings())) as client:
        made = (await client.call_tool("generate_image", {
            "prompt": "a lighthouse at dawn, oil painting, highly detailed, 4k", "seed": 5,
            **SMALL})).structured_content
        assert made["status"] == "succeeded" and made["image_id"]
        found = (await client.call_tool("find_images", {"query": "lighthouse"})
                 ).structured_content
        assert [i["image_id"] for i in found["images"]] == [made["image_id"]]
        view = await client.read_resource(
            f"image://{made['image_id']}/view?format=webp&width=128&height=64")
        blob = base64.b64decode(view.contents[0].blob)  # type: ignore[union-attr]
        assert sniff_format(blob) == "webp" and Image.open(io.BytesIO(blob)).size == (128, 64)
        exported = (await client.call_tool("export_image", {
            "image": made["image_id"], "preset": "og"})).structured_content
        assert (exported["width"], exported["height"], exported["format"]) == (1200, 630, "webp")
        assert sniff_format(Path(exported["path"]).read_bytes()) == "webp"
        assert exported["alt"] == "A lighthouse at dawn, oil painting"
        assert 'width="1200" height="630" loading="lazy"' in exported["html"]
        again = (await client.call_tool("generate_image", {
            "prompt": "a lighthouse at dawn, oil painting, highly detailed, 4k", "seed": 5,
            **SMALL})).structured_content
        assert again["reused"] is True and again["path"] == made["path"]


def test_generate_view_and_export_over_rest(tiny_models: tuple, tmp_path: Path) -> None:
    settings = tiny_settings(tmp_path, max_wait_s=600.0)
    with serve(settings) as live, httpx.Client(base_url=live.url, timeout=600.0) as http:
        made: dict[str, Any] = http.post("/api/media/generate-image", json={
            "prompt": "a red barn", "seed": 2, "use_pexels": False, "use_generation": True,
            "width": 384, "height": 256, "num_inference_steps": 20, "use_refinement": False,
        }).json()
        assert (made["image"]["width"], made["image"]["height"]) == (384, 256)
        thumb = http.get(f"/api/media/images/{made['image_id']}",
                         params={"format": "jpeg", "width": 320, "height": 320})
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
        assert Image.open(io.BytesIO(thumb.content)).size == (320, 320)
        exported = http.post("/api/media/export", json={
            "image": made["image_id"], "preset": "square", "format": "jpeg",
            "max_bytes": 60_000})
        assert exported.status_code == 200, exported.text
        body = exported.json()
        assert body["bytes"] <= 60_000 and Path(body["path"]).stat().st_size == body["bytes"]
        assert (body["width"], body["height"]) == (1080, 1080)
