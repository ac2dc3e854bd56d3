"""The export tool: ``export_image`` (``library.access``, ``library.exports``)."""

from __future__ import annotations

from typing import Any

from mcp.types import CallToolResult

from sdxl_mcp.entrypoints.mcp.content import summary_answer
from sdxl_mcp.entrypoints.mcp.toolspec import ToolSpec, tool_annotations
from sdxl_mcp.schemas import ExportRequest, ExportResult
from sdxl_mcp.service.facade import ImageService
from sdxl_mcp.settings import Settings

EXPORT_DESCRIPTION = (
    "Last step for a post: a web-ready copy (preset or size; WebP, JPEG or PNG; optionally "
    "under max_bytes). Returns path, alt, <img> HTML, Markdown and, for stock photos, the "
    "attribution to print."
)


async def export_image(ctx: Any, svc: ImageService, request: ExportRequest) -> CallToolResult:
    result = await svc.library.export_image(request)
    summary = (
        f"{'Found' if result.cached else 'Exported'} {result.path} ({result.width}x"
        f"{result.height} {result.format}, {result.bytes:,} bytes"
        + (f", quality {result.quality}" if result.quality is not None else "") + ")."
        + (f" Credit: {result.attribution}" if result.attribution else "")
    )
    return summary_answer(summary, result)


def specs(settings: Settings) -> list[ToolSpec]:
    return [
        ToolSpec(
            name="export_image",
            title="Export for the web",
            description=EXPORT_DESCRIPTION,
            arguments=ExportRequest,
            output=ExportResult,
            handler=export_image,
            # Writes one file under exports/, replacing only the identical export.
            annotations=tool_annotations(idempotent=True),
        ),
    ]
