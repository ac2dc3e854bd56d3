"""The HTTP transport: the source guide's REST API, /healthz and MCP at /mcp.

Every test talks to the real app under uvicorn on a loopback port through real
sockets. Generations use the tiny random-weight models (a second or two on CPU)
or, where a test must hold the generation slot, a gated fake backend.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client
from mcp_types.version import LATEST_HANDSHAKE_VERSION
from PIL import Image

from sdxl_mcp.entrypoints.http.app import build_http_app
from sdxl_mcp.errors import SettingsError
from sdxl_mcp.service.facade import ImageService
from tests.env import clean_environ, isolated_environ
from tests.fakes import GatedBackend
from tests.helpers_http import STARTUP_LIMIT_S, LiveServer, serve, tiny_settings
from tests.helpers_mcp import TOOLS

GENERATE = "/api/media/generate-image"
IMAGES = "/api/media/images/"
TOKEN = "s3cret-token-123"
GUIDE_MESSAGE = "No image found. Ensure PEXELS_API_KEY is set or GPU available"
#: The source guide's curl body, at the tiny models' size.
GUIDE_BODY = {
    "prompt": "futuristic AI agent analyzing data streams, cinematic lighting",
    "use_pexels": False,
    "use_generation": True,
    "use_refinement": True,
    "high_quality": True,
    "num_inference_steps": 20,
    "guidance_scale": 8.0,
    "width": 256,
    "height": 256,
}
#: Fast body for the fake backend.
FAKE_BODY = {"prompt": "a lighthouse", "use_pexels": False, "use_generation": True,
             "width": 256, "height": 256, "num_inference_steps": 20}
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": LATEST_HANDSHAKE_VERSION,
        "capabilities": {},
        "clientInfo": {"name": "test-http", "version": "0"},
    },
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream"}
#: Guards against hangs only: a tiny generation on a busy CPU can take a minute.
TIMEOUT = httpx.Timeout(600.0)
#: Long enough that the guide's request always answers with its result, not a job id.
MAX_WAIT_S = 600.0


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def tiny_server(
    tiny_models: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """One loopback server on the tiny models, shared by this module's tests."""
    settings = tiny_settings(tmp_path_factory.mktemp("http-tiny"), max_wait_s=MAX_WAIT_S)
    with isolated_environ(), serve(settings) as live:
        yield live


@pytest.fixture(scope="module")
def guide_response(tiny_server: LiveServer) -> httpx.Response:
    """The answer to the source guide's curl request (one real tiny generation)."""
    return httpx.post(tiny_server.url + GENERATE, json=GUIDE_BODY, timeout=TIMEOUT)


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server with SDXL_MCP_HTTP_TOKEN set, generating with an open fake backend."""
    settings = tiny_settings(tmp_path_factory.mktemp("http-token"), http_token=TOKEN)
    service = ImageService(settings, backend=GatedBackend(gate_open=True))  # type: ignore[arg-type]
    with isolated_environ(), serve(settings, service) as live:
        yield live


@pytest.fixture(scope="module")
def token_image(token_server: LiveServer) -> str:
    """The name of an image the token server made."""
    response = httpx.post(token_server.url + GENERATE, json=FAKE_BODY, timeout=TIMEOUT,
                          headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.text
    return Path(response.json()["image_url"]).name


def _call(server: LiveServer, route: str, image: str, headers: dict[str, str]) -> httpx.Response:
    """One request to ``route`` (healthz, generate, image or mcp) with ``headers``."""
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as client:
        if route == "healthz":
            return client.get("/healthz", headers=headers)
        if route == "generate":
            return client.post(GENERATE, json=FAKE_BODY, headers=headers)
        if route == "image":
            return client.get(IMAGES + image, headers=headers)
        if route == "mcp":
            return client.post("/mcp", json=INITIALIZE, headers={**MCP_HEADERS, **headers})
    raise AssertionError(route)


ROUTES = ["healthz", "generate", "image", "mcp"]


# ------------------------------------------------------------ the guide's API
def test_guide_curl_body_succeeds_with_the_guides_fields(guide_response: httpx.Response) -> None:
    assert guide_response.status_code == 200, guide_response.text
    body = guide_response.json()
    assert body["success"] is True
    image_url = body["image_url"]
    assert Path(image_url).is_absolute() and Path(image_url).is_file()
    assert body["image"] == {
        "url": image_url,
        "source": "sdxl",
        "photographer": None,
        "photographer_url": None,
        "width": 256,
        "height": 256,
    }
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["generation_time"], float)


def test_guide_curl_body_also_returns_seed_steps_and_timings(
    guide_response: httpx.Response,
) -> None:
    body = guide_response.json()
    assert isinstance(body["seed"], int)
    assert body["steps"]["base"] > 0 and body["steps"]["refiner"] > 0  # refinement was asked
    assert {"queue_wait", "model_load", "base", "refiner", "decode", "save", "total"} <= set(
        body["timings"]
    )
    assert body["timings"]["total"] == body["generation_time"]


def test_rest_defaults_are_stock_first_so_without_pexels_key_the_guides_503(
    tiny_server: LiveServer,
) -> None:
    response = httpx.post(tiny_server.url + GENERATE, json={"prompt": "a red bicycle"},
                          timeout=TIMEOUT)
    assert response.status_code == 503
    assert response.json()["success"] is False
    assert response.json()["message"] == GUIDE_MESSAGE


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"prompt": "x", "use_generation": True, "num_inference_steps": 5},
         "num_inference_steps"),
        ({"prompt": "x", "use_generation": True, "width": 1001}, "width"),
        ({"prompt": "x", "use_generation": True, "sharpness": 3}, "sharpness"),
        ({"use_generation": True}, "prompt"),
    ],
    ids=["steps-below-20", "width-not-multiple-of-8", "unknown-field", "missing-prompt"],
)
def test_bad_input_is_422_naming_the_field(
    tiny_server: LiveServer, body: dict[str, Any], field: str
) -> None:
    response = httpx.post(tiny_server.url + GENERATE, json=body, timeout=TIMEOUT)
    assert response.status_code == 422
    assert response.json()["success"] is False
    assert field in response.json()["message"]


def test_malformed_json_body_is_422_saying_so(tiny_server: LiveServer) -> None:
    response = httpx.post(
        tiny_server.url + GENERATE,
        content=b'{"prompt": "a red bicycle", ',
        headers={"Content-Type": "application/json"},
        timeout=TIMEOUT,
    )
    assert response.status_code == 422
    assert "JSON" in response.json()["message"]


def test_json_body_that_is_not_an_object_is_422(tiny_server: LiveServer) -> None:
    response = httpx.post(tiny_server.url + GENERATE, json=["a red bicycle"], timeout=TIMEOUT)
    assert response.status_code == 422
    assert "object" in response.json()["message"]


def test_oversized_body_is_413(tiny_server: LiveServer) -> None:
    body = {"prompt": "a red bicycle", "negative_prompt": "x" * (65 * 1024)}
    response = httpx.post(tiny_server.url + GENERATE, json=body, timeout=TIMEOUT)
    assert response.status_code == 413


def test_queue_full_is_429_with_retry_after_and_the_holder_still_succeeds(
    make_settings: Callable[..., Any],
) -> None:
    backend = GatedBackend()
    settings = make_settings(max_queue=0)
    with serve(settings, ImageService(settings, backend=backend)) as live:  # type: ignore[arg-type]
        holder: dict[str, httpx.Response] = {}

        def hold() -> None:
            holder["response"] = httpx.post(live.url + GENERATE, json=FAKE_BODY, timeout=TIMEOUT)

        thread = threading.Thread(target=hold, daemon=True)
        thread.start()
        try:
            assert backend.started.wait(STARTUP_LIMIT_S), "the first request never started"
            busy = httpx.post(live.url + GENERATE, json=FAKE_BODY, timeout=TIMEOUT)
        finally:
            backend.gate.set()
            thread.join(STARTUP_LIMIT_S)
        assert busy.status_code == 429
        assert int(busy.headers["Retry-After"]) >= 1
        assert busy.json()["error_code"] == "busy"
        assert holder["response"].status_code == 200
        assert holder["response"].json()["success"] is True


# --------------------------------------------------------------- image route
def test_image_route_returns_the_generated_png(
    tiny_server: LiveServer, guide_response: httpx.Response
) -> None:
    path = Path(guide_response.json()["image_url"])
    response = httpx.get(tiny_server.url + IMAGES + path.name, timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.content == path.read_bytes()


@pytest.mark.parametrize(
    "name",
    ["..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "..%2Fcatalog.sqlite3", "catalog.sqlite3",
     "nonexistent.png"],
    ids=["traversal", "absolute", "traversal-to-catalog", "catalog", "unknown"],
)
def test_image_route_refuses_paths_and_non_images(tiny_server: LiveServer, name: str) -> None:
    response = httpx.get(tiny_server.url + IMAGES + name, timeout=TIMEOUT)
    assert response.status_code == 404
    assert b"root:" not in response.content and b"SQLite" not in response.content


def test_image_route_refuses_a_symlink_in_the_output_dir(tiny_server: LiveServer) -> None:
    output_dir = tiny_server.settings.output_dir
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "generated_image_symlink.png").symlink_to("/etc/passwd")
    response = httpx.get(tiny_server.url + IMAGES + "generated_image_symlink.png",
                         timeout=TIMEOUT)
    assert response.status_code == 404
    assert b"root:" not in response.content


def test_image_route_refuses_a_file_the_server_did_not_make(tiny_server: LiveServer) -> None:
    output_dir = tiny_server.settings.output_dir
    output_dir.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), "red").save(output_dir / "generated_image_dropped_1.png")
    response = httpx.get(tiny_server.url + IMAGES + "generated_image_dropped_1.png",
                         timeout=TIMEOUT)
    assert response.status_code == 404


# ------------------------------------------------------------------- healthz
def test_healthz_says_ok(tiny_server: LiveServer) -> None:
    response = httpx.get(tiny_server.url + "/healthz", timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


# --------------------------------------------------------------------- token
@pytest.mark.parametrize("route", ROUTES)
def test_token_required_on_every_route(
    token_server: LiveServer, token_image: str, route: str
) -> None:
    response = _call(token_server, route, token_image, {})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("route", ROUTES)
def test_wrong_token_is_refused_on_every_route(
    token_server: LiveServer, token_image: str, route: str
) -> None:
    response = _call(token_server, route, token_image,
                     {"Authorization": "Bearer not-the-token-123"})
    assert response.status_code == 401
    assert TOKEN not in response.text


@pytest.mark.parametrize("route", ROUTES)
def test_right_bearer_token_is_accepted_on_every_route(
    token_server: LiveServer, token_image: str, route: str
) -> None:
    response = _call(token_server, route, token_image, {"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.text


def test_token_in_another_scheme_is_refused(token_server: LiveServer) -> None:
    response = httpx.get(token_server.url + "/healthz", headers={"Authorization": TOKEN},
                         timeout=TIMEOUT)
    assert response.status_code == 401


# -------------------------------------------------------------- DNS rebinding
@pytest.mark.parametrize("route", ROUTES)
def test_foreign_host_header_is_refused_on_every_route(tiny_server: LiveServer, route: str) -> None:
    response = _call(tiny_server, route, "nonexistent.png", {"Host": "evil.example"})
    assert response.status_code == 421


@pytest.mark.parametrize("route", ROUTES)
def test_foreign_origin_is_refused_on_every_route(tiny_server: LiveServer, route: str) -> None:
    response = _call(tiny_server, route, "nonexistent.png", {"Origin": "http://evil.example"})
    assert response.status_code == 403


@pytest.mark.parametrize(
    "headers",
    [
        {"Host": "localhost:{port}"},
        {"Host": "127.0.0.1:{port}", "Origin": "http://localhost:{port}"},
        {"Host": "localhost", "Origin": "http://127.0.0.1:{port}"},
    ],
    ids=["localhost-host", "loopback-with-local-origin", "localhost-without-port"],
)
def test_local_host_and_origin_pass(tiny_server: LiveServer, headers: dict[str, str]) -> None:
    filled = {k: v.format(port=tiny_server.port) for k, v in headers.items()}
    response = httpx.get(tiny_server.url + "/healthz", headers=filled, timeout=TIMEOUT)
    assert response.status_code == 200


# ------------------------------------------------------------------- start-up
def test_non_loopback_bind_without_token_refuses_to_build(
    make_settings: Callable[..., Any],
) -> None:
    with pytest.raises(SettingsError, match="SDXL_MCP_HTTP_TOKEN"):
        build_http_app(make_settings(http_host="0.0.0.0"))


def test_non_loopback_bind_with_token_builds(make_settings: Callable[..., Any]) -> None:
    build_http_app(make_settings(http_host="0.0.0.0", http_token=TOKEN))


def test_cli_refuses_non_loopback_bind_without_token(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("sdxl-mcp")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "sdxl_mcp"]
    env = {**clean_environ(), "SDXL_MCP_LOG_DIR": str(tmp_path / "logs"),
           "SDXL_MCP_OUTPUT_DIR": str(tmp_path / "images")}
    done = subprocess.run(
        [*command, "serve", "--http", "--host", "0.0.0.0", "--port", "0"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=STARTUP_LIMIT_S,
        check=False,
    )
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "SDXL_MCP_HTTP_TOKEN" in lines[0]
    assert done.stdout == ""


# ------------------------------------------------------------------------ MCP
async def test_mcp_over_streamable_http_lists_tools_and_reports_gpu_status(
    tiny_server: LiveServer,
) -> None:
    async with Client(f"{tiny_server.url}/mcp") as client:
        tools = await client.list_tools()
        status = await client.call_tool("gpu_status", {})
    assert {tool.name for tool in tools.tools} == TOOLS
    assert not status.is_error
    assert status.structured_content is not None
    assert "queue" in status.structured_content

