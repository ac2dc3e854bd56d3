"""The MCP server: the tools of ``sdxl_mcp.tools`` and the ``image://`` resource.

A thin layer: work is done by ``ImageService``, which the server's lifespan
owns and hands to tools and resources through the lifespan context. Importing
this module leaves torch unloaded (the engine imports it lazily).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from mcp.server.mcpserver import Context, MCPServer

from sdxl_mcp import __version__
from sdxl_mcp.errors import NotFound
from sdxl_mcp.service import ImageService
from sdxl_mcp.settings import Settings
from sdxl_mcp.tools import IMAGE_URI_PREFIX, arguments_must_be_an_object, tool_specs

INSTRUCTIONS = """\
Images for your posts. `search_stock_image` finds free Pexels photos (with the
attribution line to print). `generate_image` makes a new image with SDXL (base +
refiner) and returns its absolute path, a small preview and a link to the full
PNG; set `seed` to reproduce an image. If a generation takes longer than the
server's wait limit you get `status: "running"` and a `job_id`: call
`get_generation` with it. `gpu_status` tells whether the models are loaded."""


def build_server(settings: Settings, service: ImageService | None = None) -> MCPServer:
    """A fresh MCP server over ``service`` (created from ``settings`` if not given).

    The server's lifespan owns the service: preload starts when a client
    connects (stdio) or the HTTP app starts, and shutdown cancels running work.
    """
    svc = service if service is not None else ImageService(settings)
    svc.make_previews = True  # every generate_image result carries an inline preview

    @asynccontextmanager
    async def lifespan(_: MCPServer[ImageService]) -> AsyncIterator[ImageService]:
        async with svc:
            yield svc

    server = MCPServer(
        name="sdxl-mcp",
        title="SDXL images for agents",
        instructions=INSTRUCTIONS,
        version=__version__,
        lifespan=lifespan,
        tools=[spec.tool() for spec in tool_specs(settings)],
        middleware=[arguments_must_be_an_object],
    )
    server.resource(
        IMAGE_URI_PREFIX + "{name}",
        name="image",
        title="Generated or downloaded image",
        description="An image this server saved, by file name.",
        mime_type="image/png",
    )(read_image)
    return server


def read_image(name: str, ctx: Context[ImageService, Any]) -> bytes:
    """The bytes of an image this server saved; any other name is not found."""
    path = ctx.request_context.lifespan_context.resolve_image(name)
    if path is None:
        raise NotFound(f"No image named {name!r} on this server.")
    return path.read_bytes()
