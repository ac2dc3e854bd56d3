"""The MCP App (extension ``io.modelcontextprotocol/ui``): the image in the conversation.

One ``ui://sdxl-mcp/viewer.html`` resource (``text/html;profile=mcp-app``, the
self-contained file ``viewer.html`` beside it) served through ``mcp.server.apps.Apps``,
and ``_meta.ui.resourceUri`` stamped on the tools in :data:`APP_TOOLS`.

Guarantees (tests/entrypoints/test_app.py, tests/entrypoints/test_app_browser.py): every bound tool
names a resource the server serves; the resource's CSP lists no domain (the
viewer reaches the server only through the host bridge); tool results are not
touched, so hosts without Apps get the same text, preview, link and
structured content as before. The extension is advertised in
``capabilities.extensions`` on ``server/discover``; mcp 2.3.0's 2025-11-25 wire
model drops it from the initialize handshake, where hosts bind the App through
the tools' ``_meta.ui.resourceUri`` alone, as the ext-apps specification has it.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from mcp.server.apps import Apps, ResourceCsp
from mcp.server.mcpserver.tools import Tool

VIEWER_URI = "ui://sdxl-mcp/viewer.html"

#: The tools whose results the viewer renders (docs/APP.md).
APP_TOOLS = frozenset(
    {"generate_image", "edit_image", "vary_image", "get_generation", "find_images"})

#: No external origin of any kind: images arrive as ``resources/read`` blobs.
NO_DOMAINS = ResourceCsp(connect_domains=[], resource_domains=[], frame_domains=[],
                         base_uri_domains=[])


@cache
def viewer_html() -> str:
    """The viewer, as shipped in the package's web folder."""
    return resources.files(__package__).joinpath("viewer.html").read_text("utf-8")


def viewer_app() -> Apps:
    """The Apps extension holding the viewer resource (pass to ``MCPServer(extensions=)``)."""
    apps = Apps()
    apps.add_html_resource(
        VIEWER_URI,
        viewer_html(),
        name="viewer",
        title="SDXL image viewer",
        description="Shows a generated or found image with its prompt, seed and timings, a "
        "progress bar while it runs, and buttons to vary, export or use it.",
        csp=NO_DOMAINS,
        prefers_border=True,
    )
    return apps


def with_viewer(tool: Tool) -> Tool:
    """``tool`` with ``_meta.ui.resourceUri`` set when its results are the viewer's."""
    if tool.name not in APP_TOOLS:
        return tool
    meta = {**(tool.meta or {}), "ui": {"resourceUri": VIEWER_URI}}
    return tool.model_copy(update={"meta": meta})
