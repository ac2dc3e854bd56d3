"""The stock-photo tool: ``search_stock_image`` (``service.stock``)."""

from __future__ import annotations

from mcp.types import CallToolResult

from sdxl_mcp.entrypoints.mcp.content import summary_answer
from sdxl_mcp.entrypoints.mcp.toolspec import ToolContext, ToolSpec, tool_annotations
from sdxl_mcp.schemas import StockSearchRequest, StockSearchResult
from sdxl_mcp.service.facade import ImageService
from sdxl_mcp.service.stock import search_stock
from sdxl_mcp.settings import Settings


async def search_stock_image(
    ctx: ToolContext, svc: ImageService, request: StockSearchRequest
) -> CallToolResult:
    result = await search_stock(svc, request)
    summary = f"{len(result.photos)} Pexels photo(s) for {request.query!r}."
    if result.downloaded is not None:
        summary += f" Saved {result.downloaded.path}. {result.downloaded.attribution}"
    return summary_answer(summary, result)


def specs(settings: Settings) -> list[ToolSpec]:
    return [
        ToolSpec(
            name="search_stock_image",
            title="Search Pexels photos",
            description=(
                "Free Pexels photos: try before generating, for real scenes and people. "
                "download=true saves the best match (path, image_id). Print its attribution "
                "line with the photo."
            ),
            arguments=StockSearchRequest,
            output=StockSearchResult,
            handler=search_stock_image,
            # What an agent picks a photo by and credits; the sizes, colour, the
            # photographer's page and the saved copy's bookkeeping still come.
            brief={"PexelsPhoto": ("id", "url", "photographer", "alt", "src"),
                   "DownloadedPhoto": ("photo_id", "image_id", "path", "attribution",
                                       "width", "height")},
            annotations=tool_annotations(idempotent=True, open_world=True),
        ),
    ]
