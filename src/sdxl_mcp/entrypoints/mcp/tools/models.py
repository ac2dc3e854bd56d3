"""The models tool: ``list_models`` (``service.models``), read-only.

The answer is the ``ModelList`` as structured content plus one summary line
naming the models and the LoRAs."""

from __future__ import annotations

from typing import Any

from mcp.types import CallToolResult

from sdxl_mcp.entrypoints.mcp.content import summary_answer
from sdxl_mcp.entrypoints.mcp.toolspec import NoArguments, ToolSpec, tool_annotations
from sdxl_mcp.schemas.models import ModelList
from sdxl_mcp.service.facade import ImageService
from sdxl_mcp.service.models import list_models as list_models_of
from sdxl_mcp.settings import Settings

LIST_MODELS_DESCRIPTION = (
    "The SDXL models (default first; for `model`), LoRAs (for `loras` or <lora:name:w> in "
    "a prompt) and styles this server has."
)


async def list_models(ctx: Any, svc: ImageService, _: Any) -> CallToolResult:
    found = await list_models_of(svc)
    models = ", ".join(m.name + (" (default)" if m.default else "") for m in found.models)
    loras = ", ".join(info.name for info in found.loras) or "none"
    text = f"Models: {models}. LoRAs: {loras}."
    return summary_answer(text, found)


def specs(settings: Settings) -> list[ToolSpec]:
    return [ToolSpec(
        name="list_models", title="List models, LoRAs and styles",
        description=LIST_MODELS_DESCRIPTION, arguments=NoArguments, output=ModelList,
        handler=list_models, annotations=tool_annotations(read_only=True, idempotent=True),
        # What an agent picks by; sizes, hashes, folders and defaults still come back.
        brief={"ModelList": ("models", "loras", "styles"),
               "ModelInfo": ("name", "default", "loaded"), "LoraInfo": ("name",),
               "StyleInfo": ("name",)},
    )]
