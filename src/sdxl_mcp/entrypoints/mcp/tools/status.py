"""The status tool: ``gpu_status`` (``service.status``)."""

from __future__ import annotations

from sdxl_mcp.entrypoints.mcp.toolspec import (
    NoArguments,
    ToolContext,
    ToolSpec,
    tool_annotations,
)
from sdxl_mcp.schemas import GpuStatus
from sdxl_mcp.service import status
from sdxl_mcp.service.facade import ImageService
from sdxl_mcp.settings import Settings


async def gpu_status(ctx: ToolContext, svc: ImageService, _: NoArguments) -> GpuStatus:
    return await status.gpu_status(svc)


def specs(settings: Settings) -> list[ToolSpec]:
    return [
        ToolSpec(
            name="gpu_status",
            title="GPU and engine status",
            description="GPUs (memory, temperature, use), precision, memory tier, engine state "
            "(loading, ready, failed, unloaded), queue: for slow or failing generations.",
            arguments=NoArguments,
            output=GpuStatus,
            handler=gpu_status,
            # precision says the dtype; the engine's dtype and load_time_s still come.
            brief={"EngineStatus": ("state", "error", "device")},
            annotations=tool_annotations(read_only=True, idempotent=True),
        ),
    ]
