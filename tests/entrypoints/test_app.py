"""The MCP App's wiring, as a host sees it through the protocol (no browser).

The viewer tools carry ``_meta.ui.resourceUri`` on both protocol generations and
it names a resource the server serves as ``text/html;profile=mcp-app`` with a
CSP listing no domain; the viewer is one self-contained file that reaches
nothing but the host bridge and never parses server text as HTML; a client
without Apps still gets the whole result; the extension is advertised in
``server/discover``, and the handshake's lack of it is pinned (see app.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from mcp import Client
from mcp.client.extension import advertise
from mcp.server.apps import APP_MIME_TYPE, EXTENSION_ID

from sdxl_mcp.entrypoints.mcp.app import APP_TOOLS, VIEWER_URI, viewer_html
from sdxl_mcp.entrypoints.mcp.server import build_server
from sdxl_mcp.service.facade import ImageService
from tests.fakes import GatedBackend

UI = advertise(EXTENSION_ID, {"mimeTypes": [APP_MIME_TYPE]})


@pytest.fixture
def server(make_settings: Callable[..., Any]) -> Any:
    settings = make_settings()
    return build_server(settings, ImageService(settings, backend=GatedBackend(gate_open=True)))


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_viewer_tools_name_a_served_app_resource(server: Any, mode: str) -> None:
    async with Client(server, mode=mode, cache=None, extensions=[UI]) as client:
        tools = (await client.list_tools()).tools
        bound = {t.name: (t.meta or {}).get("ui", {}).get("resourceUri") for t in tools}
        assert {name for name, uri in bound.items() if uri} == APP_TOOLS
        assert {bound[name] for name in APP_TOOLS} == {VIEWER_URI}
        [content] = (await client.read_resource(VIEWER_URI)).contents
    assert content.mime_type == APP_MIME_TYPE
    assert content.text == viewer_html()  # type: ignore[union-attr]
    csp = content.meta["ui"]["csp"]  # type: ignore[index]
    assert set(csp) == {"connectDomains", "resourceDomains", "frameDomains", "baseUriDomains"}
    assert not any(csp.values()), csp


def test_viewer_is_self_contained_and_inserts_text_only() -> None:
    html = viewer_html()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", html, re.I)
    assert not re.search(r"<script[^>]+src|<link[^>]+href", html, re.I)
    for sink in ("fetch(", "XMLHttpRequest", "WebSocket", "EventSource", "sendBeacon",
                 "innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
                 "new Function", "import("):
        assert sink not in html, sink
    assert html.count("<script") == 1 and html.count("<style") == 1


async def test_results_stay_complete_for_hosts_without_apps(server: Any) -> None:
    async with Client(server, mode="legacy", cache=None) as client:
        result = await client.call_tool(
            "generate_image", {"prompt": "a lighthouse", "width": 256, "height": 256,
                               "num_inference_steps": 20, "seed": 5})
    kinds = [c.type for c in result.content]
    assert kinds == ["text", "image", "resource_link"], kinds
    assert result.structured_content and result.structured_content["status"] == "succeeded"
    assert result.content[2].uri == f"image://{result.structured_content['image_id']}"


async def test_extension_is_advertised_in_discover(server: Any) -> None:
    async with Client(server, mode="auto", cache=None, extensions=[UI]) as client:
        assert client.server_capabilities.extensions == {EXTENSION_ID: {}}


async def test_handshake_carries_no_extension_ad_but_the_tools_still_bind(server: Any) -> None:
    """mcp 2.3.0's 2025-11-25 wire ``ServerCapabilities`` has no ``extensions`` field.

    Hosts on the handshake (the TypeScript SDK 1.x ones) find the App through the
    tools' ``_meta.ui.resourceUri``, which the ext-apps specification makes the
    binding; only the client advertises the extension. When this fails, the SDK
    carries the ad on the handshake too: update app.py and the README.
    """
    async with Client(server, mode="legacy", cache=None, extensions=[UI]) as client:
        assert client.server_capabilities.extensions is None
        tools = (await client.list_tools()).tools
    assert any((t.meta or {}).get("ui") for t in tools)
