"""The variations tool: ``vary_image`` (``service.vary``).

All variations are one job, run through ``content.with_progress``: progress
notifications across every image, client cancel, a job handle past MAX_WAIT_S
(``get_generation(job_id)`` then returns the first variation's Result). The text
summary lists every saved path; the content adds a preview of the first image
and a resource link per image."""

from __future__ import annotations

from typing import Any

from mcp.types import CallToolResult, TextContent

from sdxl_mcp.entrypoints.mcp.content import (
    image_link,
    log_to_client,
    preview_content,
    with_progress,
)
from sdxl_mcp.entrypoints.mcp.toolspec import BRIEF_VARY, ToolSpec, tool_annotations
from sdxl_mcp.schemas import VariationsResult, VaryRequest
from sdxl_mcp.service.facade import ImageService
from sdxl_mcp.service.vary import vary
from sdxl_mcp.settings import Settings

VARY_DESCRIPTION = (
    "1-4 variations of a generated image: its request rerun with new seeds; other "
    "arguments override the source's (null keeps it). One job; returns {status, job_id, "
    "results}. Stock photos: edit_image."
)


async def vary_image(ctx: Any, svc: ImageService, request: VaryRequest) -> CallToolResult:
    changed = ", ".join(sorted(request.overrides())) or "no changes"
    await log_to_client(ctx, "info",
                        f"Varying {request.image}: {request.count} image(s), {changed}")
    return await with_progress(ctx, svc, lambda p: vary(svc, request, on_progress=p, previews=True),
                               variations_content)


async def variations_content(
    ctx: Any, svc: ImageService, answer: VariationsResult
) -> CallToolResult:
    """Structured answer + a summary listing the paths (+ first preview, links when done)."""
    structured = answer.model_dump(mode="json")
    lines = [answer.message] + [f"{r.image_id}: {r.path} (seed {r.seed})"
                                for r in answer.results if r.path]
    content: list[Any] = [TextContent(type="text", text="\n".join(lines))]
    if answer.status != "succeeded":
        return CallToolResult(content=content, structured_content=structured,
                              is_error=answer.status != "running")
    preview = await preview_content(svc, answer.results[0]) if answer.results else None
    links = [image_link(result, "A variation, full size") for result in answer.results]
    content += [part for part in (preview, *links) if part is not None]
    return CallToolResult(content=content, structured_content=structured)


def specs(settings: Settings) -> list[ToolSpec]:
    return [
        ToolSpec(
            name="vary_image",
            title="Vary an image",
            description=VARY_DESCRIPTION,
            arguments=VaryRequest,
            output=VariationsResult,
            handler=vary_image,
            brief=BRIEF_VARY,
            annotations=tool_annotations(),  # new files; the source is kept
        ),
    ]
