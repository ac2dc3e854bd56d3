"""The LoRA tool: ``list_loras`` (``service.loras``), read-only.

The answer is the ``LoraList`` as structured content plus one summary line
naming the LoRAs."""

from __future__ import annotations

from typing import Any

from mcp.types import CallToolResult

from sdxl_mcp.entrypoints.mcp.content import summary_answer
from sdxl_mcp.entrypoints.mcp.toolspec import NoArguments, ToolSpec, tool_annotations
from sdxl_mcp.schemas.loras import LoraList
from sdxl_mcp.service.facade import ImageService
from sdxl_mcp.service.loras import list_loras as list_loras_of
from sdxl_mcp.settings import Settings

LIST_LORAS_DESCRIPTION = (
    "The SDXL LoRAs this server has: use a name in `loras` (generate_image, edit_image, "
    "vary_image) or as <lora:name:weight> in a prompt."
)


async def list_loras(ctx: Any, svc: ImageService, _: Any) -> CallToolResult:
    found = await list_loras_of(svc)
    names = ", ".join(info.name for info in found.loras)
    text = (f"{len(found.loras)} LoRA(s): {names}" if found.loras
            else f"No LoRA files in {', '.join(found.dirs) or '(no folder)'} "
            "(SDXL_MCP_LORA_DIRS).")
    return summary_answer(text, found)


def specs(settings: Settings) -> list[ToolSpec]:
    return [ToolSpec(
        name="list_loras", title="List LoRA adapters", description=LIST_LORAS_DESCRIPTION,
        arguments=NoArguments, output=LoraList, handler=list_loras,
        annotations=tool_annotations(read_only=True, idempotent=True),
    )]
