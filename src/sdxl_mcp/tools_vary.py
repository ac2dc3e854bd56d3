"""The ``vary_image`` MCP tool's handler and description (its row is in ``tools``).

Kept apart so ``tools`` stays small. All variations are one job, run through
``tools.with_progress``: progress notifications across every image, client
cancel, a job handle past MAX_WAIT_S (``get_generation(job_id)`` then returns
the first variation's Result). The text summary lists every saved path; the
content adds a preview of the first image and a resource link per image.
Errors (``SdxlMcpError``) become ``isError`` results of one sentence.
"""

from __future__ import annotations

import base64
from typing import Any

from mcp.types import CallToolResult, ImageContent, ResourceLink, TextContent

from sdxl_mcp.schemas import VariationsResult, VaryRequest
from sdxl_mcp.service import ImageService

VARY_DESCRIPTION = (
    "1-4 variations of a generated image: its request rerun with new seeds. Other "
    "arguments are generate_image's and override the source's (null keeps it). One job; "
    "returns {status, job_id, results: [Result...]}. Stock photos: edit_image."
)


async def vary_image(ctx: Any, svc: ImageService, request: VaryRequest) -> CallToolResult:
    # tools imports this module for its table; the helpers are read at call time.
    from sdxl_mcp.tools import _log, with_progress

    changed = ", ".join(sorted(request.overrides())) or "no changes"
    await _log(ctx, "info", f"Varying {request.image}: {request.count} image(s), {changed}")
    return await with_progress(ctx, svc, lambda p: svc.vary(request, on_progress=p),
                               variations_content)


async def variations_content(
    ctx: Any, svc: ImageService, answer: VariationsResult
) -> CallToolResult:
    """Structured answer + a summary listing the paths (+ first preview, links when done)."""
    from sdxl_mcp.tools import IMAGE_URI_PREFIX, _preview

    structured = answer.model_dump(mode="json")
    lines = [answer.message] + [f"{r.image_id}: {r.path} (seed {r.seed})"
                                for r in answer.results if r.path]
    content: list[Any] = [TextContent(type="text", text="\n".join(lines))]
    if answer.status != "succeeded":
        return CallToolResult(content=content, structured_content=structured,
                              is_error=answer.status != "running")
    preview = await _preview(svc, answer.results[0]) if answer.results else None
    if preview is not None:
        content.append(ImageContent(type="image", data=base64.b64encode(preview).decode(),
                                    mime_type="image/jpeg"))
    for result in answer.results:
        if result.path:
            name = result.path.rsplit("/", 1)[-1]
            content.append(ResourceLink(
                type="resource_link", uri=IMAGE_URI_PREFIX + (result.image_id or name),
                name=name, mime_type="image/png", description="A variation, full size"))
    return CallToolResult(content=content, structured_content=structured)
