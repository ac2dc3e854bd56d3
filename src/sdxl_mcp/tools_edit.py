"""The ``edit_image`` MCP tool's handler and description (its row is in ``tools``).

Kept apart so ``tools`` stays small. An edit is a job like a generation: the
handler runs it through ``toolresults.with_progress``, so it has the same progress
notifications, client cancel, job handle past MAX_WAIT_S, preview and
resource link as ``generate_image``. Errors (``SdxlMcpError``) become
``isError`` results of one sentence naming the argument.
"""

from __future__ import annotations

from typing import Any

from mcp.types import CallToolResult

from sdxl_mcp.schemas import EditRequest
from sdxl_mcp.service import ImageService
from sdxl_mcp.toolresults import log_to_client, with_progress

EDIT_DESCRIPTION = (
    "Change an image (generated or stock): no mask = image-to-image; a mask = inpaint "
    "its white part. Saved as a new image of the source's size; returns generate_image's "
    "Result plus source_image_id."
)


async def edit_image(ctx: Any, svc: ImageService, request: EditRequest) -> CallToolResult:
    kind = "Inpainting" if request.mask is not None else "Editing"
    await log_to_client(ctx, "info", f"{kind} {request.image} (strength {request.strength:g}, "
               f"{request.num_inference_steps} steps)")
    return await with_progress(ctx, svc, lambda p: svc.edit(request, on_progress=p))
