"""The texts that lead an agent: the server's instructions and the prompt guide."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from mcp import Client

from sdxl_mcp.entrypoints.mcp.guide import INSTRUCTIONS_LIMIT, PROMPT_NAME
from sdxl_mcp.entrypoints.mcp.server import build_server
from sdxl_mcp.schemas.fields import ASPECT_RATIOS
from sdxl_mcp.service.facade import ImageService
from tests.fakes import GatedBackend

WORKFLOW = ("find_images", "search_stock_image", "generate_image", "vary_image",
            "export_image")


def server(make_settings: Callable[..., Any]) -> Any:
    settings = make_settings()
    return build_server(settings, ImageService(settings, backend=GatedBackend()))


async def test_instructions_lead_through_the_workflow_in_order(
    make_settings: Callable[..., Any],
) -> None:
    async with Client(server(make_settings)) as client:
        text = client.instructions
    assert text is not None and len(text) <= INSTRUCTIONS_LIMIT
    positions = [text.index(f"`{name}`") for name in WORKFLOW]
    assert positions == sorted(positions)
    assert "attribution" in text and "draft" in text.lower() and "seed" in text
    assert "get_generation" in text and "edit_image" in text


async def test_prompt_guide_is_listed_and_served(make_settings: Callable[..., Any]) -> None:
    async with Client(server(make_settings)) as client:
        prompts = {p.name: p for p in (await client.list_prompts()).prompts}
        got = await client.get_prompt(PROMPT_NAME)
    assert prompts[PROMPT_NAME].description and not prompts[PROMPT_NAME].arguments
    text = got.messages[0].content.text  # type: ignore[union-attr]
    assert got.messages[0].role == "user"
    assert 1500 <= len(text) <= 3500
    for must in ("Subject first", "Negative prompt", "77 tokens", "(word:1.3)", "[word]",
                 "BREAK", "<lora:", "aspect_ratio", "1.91:1", "og"):
        assert must in text, must
    sizes = dict(re.findall(r"(\d+(?:\.\d+)?:\d+) (\d+x\d+)", text))
    assert sizes == {ratio: f"{w}x{h}" for ratio, (w, h) in ASPECT_RATIOS.items()}
