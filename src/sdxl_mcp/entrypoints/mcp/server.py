"""The MCP server: the tools of ``entrypoints.mcp.tools`` and the ``image://`` resources.

A thin layer: work is done by ``ImageService``, which the server's lifespan
owns and hands to tools and resources through the lifespan context. Importing
this module leaves torch unloaded (the engine imports it lazily).

The server's instructions and its one MCP prompt, ``sdxl_prompt_guide``, are
the texts of ``guide``.

Resources (docs/TOOLS.md "Images as resources, and errors"): ``image://{image_id}``
(the original file; an older ``image://<file name>`` link works too), ``image://{image_id}/view
{?format,width,height,fit,quality}`` (a transform, cached) and
``image://{image_id}/metadata`` (the sidecar JSON). Binary contents carry the
MIME type their bytes say. An unknown id, traversal or a foreign file is a
"not found" protocol error, a bad query value an invalid-params error naming
the parameter; neither carries file contents or paths.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import anyio.to_thread
from mcp.server.lowlevel.helper_types import ReadResourceContents
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError
from mcp.shared.exceptions import MCPError
from mcp.types import SetLevelRequestParams
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS, InputRequiredResult
from pydantic import AnyUrl

from sdxl_mcp import __version__
from sdxl_mcp.entrypoints.mcp.app import viewer_app, with_viewer
from sdxl_mcp.entrypoints.mcp.content import IMAGE_URI_PREFIX, set_log_level
from sdxl_mcp.entrypoints.mcp.guide import (
    INSTRUCTIONS,
    PROMPT_DESCRIPTION,
    PROMPT_GUIDE,
    PROMPT_NAME,
    PROMPT_TITLE,
)
from sdxl_mcp.entrypoints.mcp.tools import tool_specs
from sdxl_mcp.entrypoints.mcp.toolspec import arguments_must_be_an_object
from sdxl_mcp.errors import BadRequest, NotFound, SdxlMcpError
from sdxl_mcp.library.transforms import Transform
from sdxl_mcp.library.views import metadata_json, mime_type, served_image, view_transform
from sdxl_mcp.service.facade import ImageService
from sdxl_mcp.settings import Settings


def build_server(settings: Settings, service: ImageService | None = None) -> MCPServer:
    """A fresh MCP server over ``service`` (created from ``settings`` if not given).

    The server's lifespan owns the service: preload starts when a client
    connects (stdio) or the HTTP app starts, and shutdown cancels running work.
    """
    svc = service if service is not None else ImageService(settings)

    @asynccontextmanager
    async def lifespan(_: MCPServer[ImageService]) -> AsyncIterator[ImageService]:
        async with svc:
            yield svc

    server = ImageServer(
        name="sdxl-mcp",
        title="SDXL images for agents",
        instructions=INSTRUCTIONS,
        version=__version__,
        lifespan=lifespan,
        tools=[with_viewer(spec.tool()) for spec in tool_specs(settings)],
        extensions=[viewer_app()],  # the MCP App (app.py)
        middleware=[arguments_must_be_an_object],
    )
    server.resource(
        IMAGE_URI_PREFIX + "{image_id}",
        name="image",
        title="Generated or downloaded image",
        description="The original file of an image this server holds, by image_id (older "
        "links by file name work too).",
        mime_type="image/png",
    )(read_image)
    server.resource(
        IMAGE_URI_PREFIX + "{image_id}/view{?format,width,height,fit,quality}",
        name="image_view",
        title="Resized or re-encoded image",
        description="format png|webp|jpeg (default png); width, height 16-4096; fit cover "
        "(exact size, centre crop; default) or contain; quality 1-100 (default 85). No "
        "parameters: the original file.",
        mime_type="image/png",
    )(read_view)
    server.resource(
        IMAGE_URI_PREFIX + "{image_id}/metadata",
        name="image_metadata",
        title="Image metadata",
        description="The image's sidecar JSON (Result and request), or a stock photo's "
        "attribution, photographer, page URL and alt text.",
        mime_type="application/json",
    )(read_metadata)
    server.prompt(name=PROMPT_NAME, title=PROMPT_TITLE,
                  description=PROMPT_DESCRIPTION)(sdxl_prompt_guide)
    return server


def sdxl_prompt_guide() -> str:
    """The prompt guide (``guide.PROMPT_GUIDE``) as one user message."""
    return PROMPT_GUIDE


class ImageServer(MCPServer[ImageService]):
    """An MCPServer whose binary resource contents carry the MIME type their bytes say, and
    which declares ``logging`` because it sends ``notifications/message``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # MCPServer has no public way to answer logging/setLevel, which handshake-era
        # clients send; the lowlevel server declares `logging` once the handler exists.
        self._lowlevel_server.add_request_handler(
            "logging/setLevel", SetLevelRequestParams, set_log_level)

    async def read_resource(
        self, uri: AnyUrl | str, context: Context[ImageService, Any] | None = None
    ) -> Iterable[ReadResourceContents] | InputRequiredResult:
        results = await super().read_resource(uri, context)
        if isinstance(results, InputRequiredResult):
            return results
        return [
            ReadResourceContents(item.content, mime_type(item.content), item.meta)
            if isinstance(item.content, bytes) else item
            for item in results
        ]


async def read_image(image_id: str, ctx: Context[ImageService, Any]) -> bytes:
    """The original bytes of a library image; anything else is not found."""
    return await _view(ctx, image_id, None)


async def read_view(
    image_id: str,
    ctx: Context[ImageService, Any],
    format: str | None = None,
    width: str | None = None,
    height: str | None = None,
    fit: str | None = None,
    quality: str | None = None,
) -> bytes:
    """A library image resized and re-encoded (cached); no parameters: the original."""
    with _protocol_errors():
        transform = view_transform(format, width, height, fit, quality)
    return await _view(ctx, image_id, transform)


async def read_metadata(image_id: str, ctx: Context[ImageService, Any]) -> str:
    """The sidecar JSON of a library image (a stock photo's catalog row if it has none)."""
    svc = ctx.request_context.lifespan_context
    with _protocol_errors():
        return await anyio.to_thread.run_sync(
            lambda: metadata_json(served_image(svc.library.resolver, image_id)))


async def _view(ctx: Context[ImageService, Any], image_id: str,
                transform: Transform | None) -> bytes:
    with _protocol_errors():
        data, _ = await ctx.request_context.lifespan_context.library.view_image(image_id, transform)
    return data


@contextmanager
def _protocol_errors() -> Iterator[None]:
    """SdxlMcpError -> not found / invalid params / internal error, with its one sentence."""
    try:
        yield
    except NotFound as exc:
        raise ResourceNotFoundError(exc.message) from None
    except BadRequest as exc:
        raise MCPError(INVALID_PARAMS, exc.message) from None
    except SdxlMcpError as exc:
        raise MCPError(INTERNAL_ERROR, exc.message) from None
