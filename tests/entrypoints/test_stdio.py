"""The stdio transport: ``sdxl-mcp serve`` as a real subprocess, as Claude Desktop runs it."""

from __future__ import annotations

import base64
import io
import itertools
import json
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters
from mcp.types import CallToolResult, ImageContent, ResourceLink, TextContent
from mcp_types.version import LATEST_HANDSHAKE_VERSION
from PIL import Image

from tests.env import server_env
from tests.helpers_http import STARTUP_LIMIT_S

SERVE = ["-m", "sdxl_mcp", "serve"]
GENERATE_ARGS = {"prompt": "a lighthouse at dawn", "width": 256, "height": 256,
                 "num_inference_steps": 20, "seed": 3}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


#: A tiny generation on a busy CPU can take a minute: always wait for the result.
WAIT = {"SDXL_MCP_MAX_WAIT_S": "600"}


@pytest.fixture(scope="module")
def generation(
    tiny_models: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """One generate_image call over stdio: its result, progress, and the linked resource."""
    import anyio

    root = tmp_path_factory.mktemp("stdio")
    params = StdioServerParameters(
        command=sys.executable, args=SERVE, env=server_env(root, **WAIT), cwd=str(root)
    )
    events: list[tuple[float, float | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        events.append((progress, total))

    async def run() -> dict[str, Any]:
        async with Client(params) as client:
            result = await client.call_tool("generate_image", GENERATE_ARGS,
                                            progress_callback=on_progress)
            links = [c for c in result.content if isinstance(c, ResourceLink)]
            resource = await client.read_resource(str(links[0].uri)) if links else None
            return {"result": result, "resource": resource, "server": client.server_info}

    outcome = anyio.run(run)
    outcome["progress"] = events
    return outcome


def _result(generation: dict[str, Any]) -> CallToolResult:
    result = generation["result"]
    assert isinstance(result, CallToolResult)
    return result


def test_initialize_names_the_server(generation: dict[str, Any]) -> None:
    assert generation["server"] is not None
    assert generation["server"].name == "sdxl-mcp"


def test_generate_image_over_stdio_succeeds(generation: dict[str, Any]) -> None:
    result = _result(generation)
    assert not result.is_error, result.content
    structured = result.structured_content or {}
    assert structured["status"] == "succeeded" and structured["seed"] == 3
    assert Path(structured["path"]).is_absolute() and Path(structured["path"]).is_file()


def test_progress_rises_step_by_step_to_the_total(generation: dict[str, Any]) -> None:
    progress = generation["progress"]
    assert progress, "no progress notifications arrived"
    values = [done for done, _ in progress]
    assert all(a < b for a, b in itertools.pairwise(values))
    totals = {total for _, total in progress}
    assert len(totals) == 1
    assert values[-1] == totals.pop()


def test_result_content_has_summary_preview_and_link(generation: dict[str, Any]) -> None:
    content = _result(generation).content
    kinds = [type(block) for block in content]
    assert TextContent in kinds and ImageContent in kinds and ResourceLink in kinds
    text = next(c for c in content if isinstance(c, TextContent))
    assert text.text.strip()


def test_preview_is_a_small_jpeg(generation: dict[str, Any]) -> None:
    preview = next(c for c in _result(generation).content if isinstance(c, ImageContent))
    assert preview.mime_type == "image/jpeg"
    data = base64.b64decode(preview.data)
    assert len(data) < 1024 * 1024
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "JPEG"
        assert max(image.size) <= 512


def test_resource_link_reads_back_the_full_png(generation: dict[str, Any]) -> None:
    path = Path(_result(generation).structured_content["path"])  # type: ignore[index]
    link = next(c for c in _result(generation).content if isinstance(c, ResourceLink))
    assert link.name == path.name and link.mime_type == "image/png"
    resource = generation["resource"]
    assert resource is not None and len(resource.contents) == 1
    blob = base64.b64decode(resource.contents[0].blob)
    assert blob.startswith(PNG_SIGNATURE)
    assert blob == path.read_bytes()


# ------------------------------------------------------------- raw stdout check
@pytest.fixture
def raw_server(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [sys.executable, *SERVE],
        env=server_env(tmp_path, **WAIT), cwd=tmp_path, text=True, bufsize=1,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(STARTUP_LIMIT_S)
        for stream in (process.stdin, process.stdout):
            if stream is not None and not stream.closed:
                stream.close()


def _send(process: subprocess.Popen[str], message: dict[str, Any]) -> None:
    assert process.stdin is not None
    process.stdin.write(json.dumps(message) + "\n")
    process.stdin.flush()


def test_stdout_carries_only_json_rpc(raw_server: subprocess.Popen[str]) -> None:
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert raw_server.stdout is not None
        for line in raw_server.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    _send(raw_server, {
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": LATEST_HANDSHAKE_VERSION, "capabilities": {},
                   "clientInfo": {"name": "raw-test", "version": "0"}},
    })
    _send(raw_server, {"jsonrpc": "2.0", "method": "notifications/initialized"})
    _send(raw_server, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"})

    seen: list[str] = []
    tools: dict[str, Any] | None = None
    while tools is None:
        line = lines.get(timeout=STARTUP_LIMIT_S)
        assert line is not None, f"the server closed stdout early after {seen!r}"
        seen.append(line)
        message = json.loads(line)
        if message.get("id") == 2:
            tools = message
    assert raw_server.stdin is not None
    raw_server.stdin.close()
    raw_server.wait(STARTUP_LIMIT_S)
    while (line := lines.get(timeout=STARTUP_LIMIT_S)) is not None:
        seen.append(line)

    assert raw_server.returncode == 0
    assert "tools" in tools["result"]
    for line in seen:
        assert json.loads(line)["jsonrpc"] == "2.0", line
