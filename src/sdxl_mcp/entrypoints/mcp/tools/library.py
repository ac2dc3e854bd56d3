"""The library tool: ``find_images`` (``library.access``)."""

from __future__ import annotations

from mcp.types import CallToolResult

from sdxl_mcp.entrypoints.mcp.content import summary_answer
from sdxl_mcp.entrypoints.mcp.toolspec import ToolContext, ToolSpec, tool_annotations
from sdxl_mcp.schemas import FindImagesRequest, FindImagesResult
from sdxl_mcp.service.facade import ImageService
from sdxl_mcp.settings import Settings


async def find_images(
    ctx: ToolContext, svc: ImageService, request: FindImagesRequest
) -> CallToolResult:
    found = await svc.library.find_images(request)
    lines = [f"{found.total} image(s)" + (f" for {request.query!r}" if request.query else "")
             + (f"; showing {len(found.images)} from {request.offset}" if found.images else ".")]
    lines += [f"{i.image_id} ({i.source}, {i.width}x{i.height}): {(i.alt or i.prompt)[:80]}"
              for i in found.images]
    return summary_answer("\n".join(lines), found)


def specs(settings: Settings) -> list[ToolSpec]:
    return [
        ToolSpec(
            name="find_images",
            title="Find library images",
            description="Images this server has (made, downloaded, fetched), newest first. Call "
            "first: reuse beats a new image; hits carry the image_id tools take.",
            arguments=FindImagesRequest,
            output=FindImagesResult,
            handler=find_images,
            annotations=tool_annotations(read_only=True, idempotent=True),
        ),
    ]
