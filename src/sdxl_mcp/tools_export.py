"""The ``export_image`` MCP tool's handler and description (its row is in ``tools``).

Kept apart so ``tools`` stays small; the handler only calls the service and
shapes its ``ExportResult`` as structured content plus one summary line.
Errors (``SdxlMcpError``) are turned into ``isError`` results by the table.
"""

from __future__ import annotations

from typing import Any

from mcp.types import CallToolResult, TextContent

from sdxl_mcp.schemas import ExportRequest
from sdxl_mcp.service import ImageService

EXPORT_DESCRIPTION = (
    "Last step for a post: a web-ready copy of an image (preset or width/height, WebP, "
    "JPEG or PNG, optionally under max_bytes). Returns path, alt, <img> HTML, Markdown "
    "and, for stock photos, the attribution to print."
)


async def export_image(ctx: Any, svc: ImageService, request: ExportRequest) -> CallToolResult:
    result = await svc.library.export_image(request)
    summary = (
        f"{'Found' if result.cached else 'Exported'} {result.path} ({result.width}x"
        f"{result.height} {result.format}, {result.bytes:,} bytes"
        + (f", quality {result.quality}" if result.quality is not None else "") + ")."
        + (f" Credit: {result.attribution}" if result.attribution else "")
    )
    return CallToolResult(
        content=[TextContent(type="text", text=summary)],
        structured_content=result.model_dump(mode="json"),
    )
