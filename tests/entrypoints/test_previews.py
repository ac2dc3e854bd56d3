"""Previews are the MCP face's choice: made while saving for MCP answers, never for REST.

One service behind both faces (``serve --http``): a REST generation makes no
JPEG preview; an MCP ``generate_image`` makes one beside the PNG and answers
with it.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from mcp import Client
from PIL import Image

import sdxl_mcp.service.keeping
from sdxl_mcp.entrypoints.mcp.server import build_server
from sdxl_mcp.service.facade import ImageService
from tests.fakes import GatedBackend
from tests.helpers_http import serve

BODY = {"prompt": "a lighthouse", "use_pexels": False, "use_generation": True,
        "width": 256, "height": 256, "num_inference_steps": 20}


@pytest.fixture
def previews_made(monkeypatch: pytest.MonkeyPatch) -> list[Image.Image]:
    """The images the keeper previewed while saving (the real encoder still runs)."""
    made: list[Image.Image] = []
    real = sdxl_mcp.service.keeping.while_previewing

    def counting(image: Image.Image, work: Callable[[], Any]) -> Any:
        made.append(image)
        return real(image, work)

    monkeypatch.setattr(sdxl_mcp.service.keeping, "while_previewing", counting)
    return made


def test_a_rest_generation_makes_no_preview(
    make_settings: Callable[..., Any], previews_made: list[Image.Image]
) -> None:
    settings = make_settings()
    service = ImageService(settings, backend=GatedBackend(gate_open=True))  # type: ignore[arg-type]
    with serve(settings, service) as live:
        response = httpx.post(live.url + "/api/media/generate-image", json=BODY, timeout=600)
    assert response.status_code == 200, response.text
    assert response.json()["path"]
    assert previews_made == []


async def test_an_mcp_answer_carries_the_preview_made_while_saving(
    make_settings: Callable[..., Any], previews_made: list[Image.Image]
) -> None:
    settings = make_settings()
    service = ImageService(settings, backend=GatedBackend(gate_open=True))  # type: ignore[arg-type]
    async with Client(build_server(settings, service)) as client:
        result = await client.call_tool("generate_image", {
            k: v for k, v in BODY.items() if k not in ("use_pexels", "use_generation")})
    assert not result.is_error
    assert len(previews_made) == 1 and previews_made[0].size == (256, 256)
    images = [part for part in result.content if part.type == "image"]
    assert len(images) == 1 and base64.b64decode(images[0].data)[:2] == b"\xff\xd8"  # JPEG
