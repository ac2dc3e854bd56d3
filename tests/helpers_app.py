"""A test host for the MCP App: the official ext-apps ``AppBridge`` in a page, wired to the server.

The host page (served by Playwright routes at ``http://host.test/``, so no
socket is opened) loads a browser bundle of ``@modelcontextprotocol/ext-apps``'
``AppBridge``, built once with npm + esbuild into a test-only cache directory
(never the repository; ``bridge_bundle`` says why when it cannot). The page
renders the viewer's HTML in a sandboxed ``srcdoc`` iframe under the CSP the
specification derives from the resource's ``_meta.ui.csp``, and answers the
view's ``tools/call`` and ``resources/read`` through ``page.expose_function``:
the real server, through the in-memory MCP client, on the handshake protocol
most hosts speak. ``ui/message`` and ``ui/open-link`` are recorded.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

from mcp import Client
from mcp.client.extension import advertise
from mcp.server.apps import APP_MIME_TYPE, EXTENSION_ID

from sdxl_mcp.backend.base import CancelToken, EngineOutput, ProgressEvent
from sdxl_mcp.errors import Cancelled
from sdxl_mcp.schemas import GenerationRequest
from tests.helpers_gallery import PaintingBackend

HOST = "http://host.test"
#: The host side, pinned (what the bundle is built from).
NPM_PACKAGES = ("@modelcontextprotocol/ext-apps@2.0.4", "@modelcontextprotocol/client@2.4.0",
                "@modelcontextprotocol/core@2.4.0", "zod@4.6.7", "esbuild@0.28.2")
ENTRY = ('export { AppBridge, PostMessageTransport } from '
         '"@modelcontextprotocol/ext-apps/app-bridge";\n')
CACHE = Path(os.environ.get("SDXL_MCP_TEST_CACHE")
             or Path.home() / ".cache" / "sdxl-mcp-tests") / (
    "ext-apps-" + hashlib.sha256(" ".join(NPM_PACKAGES).encode()).hexdigest()[:12])


def bridge_bundle() -> tuple[Path | None, str]:
    """The cached browser bundle of AppBridge, built on first use; or None and why not."""
    bundle = CACHE / "bridge.js"
    if bundle.is_file():
        return bundle, ""
    npm = shutil.which("npm")
    if npm is None:
        return None, "npm is missing: cannot build the ext-apps AppBridge bundle"
    CACHE.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run([npm, "install", "--prefix", str(CACHE), "--no-audit", "--no-fund",
                        "--legacy-peer-deps", "--loglevel=error", "--fetch-retries=1",
                        "--fetch-timeout=30000", *NPM_PACKAGES],
                       check=True, capture_output=True, timeout=300)
        (CACHE / "entry.js").write_text(ENTRY)
        subprocess.run([str(CACHE / "node_modules" / ".bin" / "esbuild"), str(CACHE / "entry.js"),
                        "--bundle", "--format=iife", "--global-name=ExtApps",
                        "--platform=browser", f"--outfile={bundle}.part"],
                       check=True, capture_output=True, timeout=120, cwd=CACHE)
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        return None, f"could not build the ext-apps bundle ({exc}; {detail[-300:]!r})"
    Path(f"{bundle}.part").rename(bundle)
    return bundle, ""


def spec_csp(csp: dict[str, list[str]]) -> str:
    """The Content-Security-Policy the ext-apps specification builds from ``_meta.ui.csp``."""
    res = " ".join(csp.get("resourceDomains", []))
    return "; ".join([
        "default-src 'none'",
        f"script-src 'self' 'unsafe-inline' {res}".strip(),
        f"style-src 'self' 'unsafe-inline' {res}".strip(),
        f"connect-src 'self' {' '.join(csp.get('connectDomains', []))}".strip(),
        f"img-src 'self' data: {res}".strip(),
        f"font-src 'self' {res}".strip(),
        f"media-src 'self' data: {res}".strip(),
        f"frame-src {' '.join(csp.get('frameDomains', [])) or chr(39) + 'none' + chr(39)}",
        "object-src 'none'",
        f"base-uri {' '.join(csp.get('baseUriDomains', [])) or chr(39) + 'self' + chr(39)}",
    ])


HOST_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>test host</title>
<style>body{margin:0;padding:16px;background:#e9e9e6;font:14px system-ui}
iframe{width:560px;border:1px solid #bbb;border-radius:10px;background:#fff;display:block}
</style>
<script src="/bridge.js"></script></head><body>
<script>
window.hostLog = [];
window.openApp = async (html, hostContext) => {
  const { AppBridge, PostMessageTransport } = ExtApps;
  const iframe = document.createElement("iframe");
  iframe.id = "app";
  iframe.sandbox = "allow-scripts";
  iframe.srcdoc = html;
  iframe.style.height = "200px";
  document.body.append(iframe);
  const bridge = new AppBridge(null, { name: "sdxl-mcp-test-host", version: "1" },
    { serverTools: {}, serverResources: {}, openLinks: {}, logging: {} }, { hostContext });
  bridge.oncalltool = (params) => window.pyMcp("tools/call", params);
  bridge.onreadresource = (params) => window.pyMcp("resources/read", params);
  const record = (method) => async (params) => { hostLog.push({ method, params }); return {}; };
  bridge.onmessage = record("ui/message");
  bridge.onopenlink = record("ui/open-link");
  bridge.onsizechange = ({ height }) => { if (height) iframe.style.height = `${height}px`; };
  const initialized = new Promise((resolve) => { bridge.oninitialized = resolve; });
  await bridge.connect(new PostMessageTransport(iframe.contentWindow, iframe.contentWindow));
  await initialized;
  window.bridge = bridge;
};
</script></body></html>"""


class SteppedBackend(PaintingBackend):
    """The painting fake; while ``held``, a generation reports one step per :meth:`step`."""

    total = 10

    def __init__(self) -> None:
        super().__init__()
        self.held = False
        self._steps = threading.Semaphore(0)

    def step(self, n: int = 1) -> None:
        for _ in range(n):
            self._steps.release()

    def generate(self, req: GenerationRequest, seed: int, on_progress: Any = None,
                 cancel: CancelToken | None = None) -> EngineOutput:
        if self.held:
            for step in range(1, self.total + 1):
                while not self._steps.acquire(timeout=0.01):
                    if cancel is not None and cancel.cancelled:
                        self.cancelled.set()
                        raise Cancelled(f"Generation {cancel.reason} during the base stage.")
                if on_progress:
                    on_progress(ProgressEvent("base", step, self.total, step, self.total))
        return super().generate(req, seed, on_progress, cancel)



def dump(model: Any) -> dict[str, Any]:
    """A result as JSON-RPC carries it (camelCase, ``_meta``)."""
    data: dict[str, Any] = model.model_dump(mode="json", by_alias=True, exclude_none=True)
    return data


class McpHost:
    """The host's MCP connection: an in-memory client owned by one task (handshake mode)."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.client: Client | None = None
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._stop = asyncio.Event()
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())
        await self._ready.wait()

    async def _run(self) -> None:
        ui = advertise(EXTENSION_ID, {"mimeTypes": [APP_MIME_TYPE]})
        async with Client(self.server, mode="legacy", cache=None, extensions=[ui]) as client:
            self.client = client
            self._ready.set()
            await self._stop.wait()

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        assert self.client is not None
        self.calls.append((name, arguments))
        return dump(await self.client.call_tool(name, arguments))

    async def read_resource(self, uri: str) -> dict[str, Any]:
        assert self.client is not None
        return dump(await self.client.read_resource(uri))

    async def forward(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """What the page's ``pyMcp`` does: the view's request, answered by the server."""
        if method == "tools/call":
            return await self.call_tool(params["name"], params.get("arguments") or {})
        if method == "resources/read":
            return await self.read_resource(params["uri"])
        raise ValueError(f"the test host forwards no {method}")


class AppPage:
    """One page of the test host: every request, console error and dialog recorded."""

    def __init__(self, page: Any, mcp: McpHost, bundle: Path) -> None:
        self.page = page
        self.mcp = mcp
        self.bundle = bundle.read_text()
        self.foreign: list[str] = []
        self.console_errors: list[str] = []
        self.dialogs: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.console_errors.append(m.text))
        page.on("pageerror", lambda e: self.console_errors.append(str(e)))
        page.on("dialog", self._dialog)

    async def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        await dialog.dismiss()

    async def _route(self, route: Any) -> None:
        url = route.request.url
        if url == HOST + "/":
            await route.fulfill(status=200, content_type="text/html", body=HOST_PAGE)
        elif url == HOST + "/bridge.js":
            await route.fulfill(status=200, content_type="text/javascript", body=self.bundle)
        else:
            self.foreign.append(url)
            await route.abort()

    async def open(self, html: str, csp: dict[str, list[str]],
                   host_context: dict[str, Any] | None = None) -> None:
        await self.page.context.route("**/*", self._route)
        await self.page.expose_function("pyMcp", self.mcp.forward)
        await self.page.goto(HOST + "/")
        meta = f'<meta http-equiv="Content-Security-Policy" content="{spec_csp(csp)}">'
        await self.page.evaluate("([html, ctx]) => openApp(html, ctx)",
                                 [html.replace("<head>", "<head>" + meta, 1),
                                  host_context or {"theme": "light"}])

    @property
    def frame(self) -> Any:
        return self.page.frame_locator("#app")

    def view(self) -> Any:
        """The view's frame (for evaluate)."""
        frames = [f for f in self.page.frames if f.parent_frame is self.page.main_frame]
        assert len(frames) == 1, frames
        return frames[0]

    async def send(self, arguments: dict[str, Any], result: dict[str, Any]) -> None:
        """The host's two notifications after a tool call: its input, then its result."""
        await self.page.evaluate("a => bridge.sendToolInput({arguments: a})", arguments)
        await self.page.evaluate("r => bridge.sendToolResult(r)", result)

    async def host_log(self, method: str) -> list[dict[str, Any]]:
        log: list[dict[str, Any]] = await self.page.evaluate("hostLog")
        return [entry["params"] for entry in log if entry["method"] == method]

    async def wait_view(self, expression: str, arg: Any = None, timeout: float = 30_000) -> Any:
        return await self.view().wait_for_function(expression, arg=arg, timeout=timeout)

    def assert_clean(self) -> None:
        assert not self.foreign, f"requests left the page: {self.foreign}"
        assert not self.console_errors, f"console errors: {self.console_errors}"
        assert not self.dialogs, f"a dialog fired: {self.dialogs}"


def calls_named(mcp: McpHost, name: str) -> list[dict[str, Any]]:
    return [args for tool, args in mcp.calls if tool == name]
