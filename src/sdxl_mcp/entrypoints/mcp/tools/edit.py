"""The edit tool: ``edit_image`` (``service.edit``).

An edit is a job like a generation: the handler runs it through
``content.with_progress``, so it has the same progress notifications, client
cancel, job handle past MAX_WAIT_S, preview and resource link as
``generate_image``."""

from __future__ import annotations

from typing import Any

from mcp.types import CallToolResult

from sdxl_mcp.entrypoints.mcp.content import log_to_client, with_progress
from sdxl_mcp.entrypoints.mcp.toolspec import BRIEF_RESULT, ToolSpec, tool_annotations
from sdxl_mcp.schemas import EditRequest, GenerationResult
from sdxl_mcp.service.edit import edit
from sdxl_mcp.service.facade import ImageService
from sdxl_mcp.settings import Settings

EDIT_DESCRIPTION = (
    "Change an image: no mask = image-to-image; a mask = inpaint its white part. A new "
    "image of the source's size; returns generate_image's Result plus source_image_id."
)


async def edit_image(ctx: Any, svc: ImageService, request: EditRequest) -> CallToolResult:
    kind = "Inpainting" if request.mask is not None else "Editing"
    await log_to_client(ctx, "info", f"{kind} {request.image} (strength {request.strength:g}, "
               f"{request.num_inference_steps} steps)")
    return await with_progress(ctx, svc, lambda p: edit(svc, request, on_progress=p, previews=True))


def specs(settings: Settings) -> list[ToolSpec]:
    return [
        ToolSpec(
            name="edit_image",
            title="Edit an image",
            description=EDIT_DESCRIPTION,
            arguments=EditRequest,
            output=GenerationResult,
            handler=edit_image,
            brief=BRIEF_RESULT,
            annotations=tool_annotations(),  # a new file; the source is kept
        ),
    ]
