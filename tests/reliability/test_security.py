"""Security probes: nobody reads files or runs jobs they should not, and no secret leaks.

* Path traversal in every route and tool that takes a name or an id (REST
  images and jobs, MCP ``image://`` resources, ``get_generation`` and
  ``cancel_generation``), sent byte for byte so no client normalises ``..``.
* Foreign Host and Origin headers, and missing or wrong tokens, on every route.
* A non-loopback bind without a token is refused.
* The HTTP token and a Pexels key never appear in a log line (every logger at
  DEBUG, caplog and the LOG_DIR file), an error, a result, or a saved file,
  including when Pexels answers 401 with the key echoed back, or is unreachable.

Everything runs on loopback with the gated fake backend (gate open).
Run alone: ``.venv/bin/python -m pytest tests/reliability/test_security.py``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import subprocess
import sys
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client

from sdxl_mcp.entrypoints.http.app import build_http_app
from sdxl_mcp.entrypoints.http.rest import MAX_IMAGE_BODY, MAX_JSON_BODY
from sdxl_mcp.entrypoints.mcp.server import build_server
from sdxl_mcp.errors import SettingsError
from sdxl_mcp.service.facade import ImageService
from sdxl_mcp.settings import Settings
from tests.env import clean_environ, isolated_environ
from tests.fakes import GatedBackend
from tests.helpers_http import LiveServer, serve, tiny_settings
from tests.reliability.support_inputs import (
    CHATTY_LOGGERS,
    GENERATE,
    GOOD_MCP,
    GOOD_REST,
    IMAGES,
    JOBS,
    TIMEOUT,
    answering_server,
    closed_port_url,
    jsonrpc_messages,
    log_file,
    mcp_http_session,
    raw_request,
    tool_call,
)

#: Content no response may ever carry: a file next to (outside) the output dir.
SECRET_FILE_TEXT = "TOP-SECRET-FILE-CONTENT-4711"
TOKEN = "TOKEN-SEC-777-d41d8cd98f00b204"
PEXELS_KEY = "PEXELS-SEC-KEY-555"
#: Bytes that would show a file was served: the secret file, /etc/passwd, the catalog,
#: the log file, a sidecar (its JSON has "request"), the temp file.
LEAK_MARKERS = (SECRET_FILE_TEXT.encode(), b"root:x:0:0", b"SQLite format", b"sdxl_mcp.",
                b'"request"', b"TEMP-FILE-CONTENT")


@dataclass
class Planted:
    """A live server with one real image and job, plus files it must never serve."""

    live: LiveServer
    image: str
    job_id: str
    secret: Path


def _plant(root: Path, live: LiveServer, headers: dict[str, str] | None = None) -> Planted:
    made = httpx.post(live.url + GENERATE, json=GOOD_REST, timeout=TIMEOUT, headers=headers)
    assert made.status_code == 200, made.text
    secret = root / "secret.txt"
    secret.write_text(SECRET_FILE_TEXT)
    out = live.settings.output_dir
    (out / ".tmp-planted.png").write_text("TEMP-FILE-CONTENT")
    (out / "generated_image_planted_link.png").symlink_to(secret)
    live.settings.log_dir.mkdir(parents=True, exist_ok=True)
    (live.settings.log_dir / "sdxl_mcp.log").write_text("sdxl_mcp.log marker line\n")
    return Planted(live, Path(made.json()["path"]).name, made.json()["job_id"], secret)


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Planted]:
    root = tmp_path_factory.mktemp("security")
    settings = tiny_settings(root, max_wait_s=2.0)
    service = ImageService(settings, backend=GatedBackend(gate_open=True))  # type: ignore[arg-type]
    with isolated_environ(), serve(settings, service) as live:
        yield _plant(root, live)


def _assert_nothing_served(status: int, body: bytes) -> None:
    assert status in (400, 404, 410), (status, body[:300])
    for marker in LEAK_MARKERS:
        assert marker not in body, (marker, body[:300])


def _q(text: str) -> str:
    return urllib.parse.quote(text, safe="")


def _image_targets(p: Planted) -> list[str]:
    secret, real = str(p.secret), p.image
    sidecar = real.removesuffix(".png") + ".json"
    return [
        "../../../../../../etc/passwd",
        "..%2F..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        "%2e%2e%2f%2e%2e%2fsecret.txt",
        "..%252F..%252Fsecret.txt",
        "..%5C..%5Csecret.txt",
        "....%2F%2F....%2F%2Fsecret.txt",
        "%2Fetc%2Fpasswd",
        _q(secret),
        "/" + secret.lstrip("/"),
        "..",
        "%2e%2e",
        ".",
        "catalog.sqlite3",
        "..%2Fcatalog.sqlite3",
        "..%2Flogs%2Fsdxl_mcp.log",
        "%00",
        real + "%00",
        real + "%00.txt",
        "%00" + real,
        real + "%2F..%2F..%2Fsecret.txt",
        real + "/../../secret.txt",
        sidecar,
        ".tmp-planted.png",
        "generated_image_planted_link.png",
        _q("generated_image_planted_link.png\n"),
        "~%2F.ssh%2Fid_rsa",
        "%c0%ae%c0%ae%2fsecret.txt",  # overlong UTF-8 for "../"
        "a" * 5000,
    ]


def test_rest_image_route_never_serves_a_file_it_did_not_make(planted: Planted) -> None:
    port = planted.live.port
    for name in _image_targets(planted):
        status, body = raw_request(port, (IMAGES + name).encode())
        _assert_nothing_served(status, body)
    # The real image is still served, so the refusals above were not a broken route.
    status, body = raw_request(port, (IMAGES + planted.image).encode())
    assert status == 200 and body.startswith(b"\x89PNG")


def test_rest_image_route_refuses_a_catalogued_name_whose_file_became_a_symlink(
    planted: Planted,
) -> None:
    made = httpx.post(planted.live.url + GENERATE, json=GOOD_REST, timeout=TIMEOUT).json()
    path = Path(made["path"])
    path.unlink()
    path.symlink_to(planted.secret)
    status, body = raw_request(planted.live.port, (IMAGES + path.name).encode())
    _assert_nothing_served(status, body)


def _job_targets(p: Planted) -> list[str]:
    return [
        "..%2F..%2Fetc%2Fpasswd",
        "../../etc/passwd",
        "%2Fetc%2Fpasswd",
        _q(str(p.secret)),
        "%00",
        p.job_id + "%00",
        p.job_id[:-1] + "%25",  # "%": a LIKE wildcard, were the id matched with LIKE
        p.job_id[:8] + "*",
        "'%20OR%20'1'%3D'1",
        "1%20OR%201%3D1",
        "catalog.sqlite3",
        "x" * 10_000,
    ]


def test_rest_job_route_answers_only_real_job_ids(planted: Planted) -> None:
    port = planted.live.port
    for job_id in _job_targets(planted):
        for query in ("", "?wait=0.01"):
            status, body = raw_request(port, (JOBS + job_id + query).encode())
            _assert_nothing_served(status, body)
    status, body = raw_request(port, (JOBS + planted.job_id).encode())
    assert status == 200 and json.loads(body)["job_id"] == planted.job_id


@pytest.mark.parametrize(("route", "cap_mib"), [
    (GENERATE, MAX_JSON_BODY / 2**20), ("/api/media/edit-image", MAX_IMAGE_BODY / 2**20),
    ("/mcp", MAX_IMAGE_BODY / 2**20),
], ids=["rest-64KiB", "rest-images-12MiB", "mcp-12MiB"])
@pytest.mark.parametrize("declared", [False, True], ids=["chunked", "content-length"])
def test_an_oversized_body_is_refused_at_the_cap_not_buffered(
    planted: Planted, route: str, cap_mib: float, declared: bool
) -> None:
    """Declared or streamed, a body past the cap is answered with 413 while the client is
    still sending (before the fix, REST read a chunked body to its end, however long; routes
    whose image arguments may be data URIs, /mcp included, take up to 12 MiB)."""
    port = planted.live.port
    framing = b"Content-Length: %d" % (24 * 2**20) if declared else b"Transfer-Encoding: chunked"
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"POST " + route.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                     b"Content-Type: application/json\r\n"
                     b"Accept: application/json, text/event-stream\r\n" % port
                     + framing + b"\r\n\r\n")
        chunk = b"x" * 65536
        with contextlib.suppress(OSError):  # the server may close while we still send
            for _ in range(int(cap_mib * 16) + 2):  # past the cap, and the body never ends
                sock.sendall(chunk if declared else b"%x\r\n" % len(chunk) + chunk + b"\r\n")
        sock.settimeout(30)
        answer = sock.recv(200)
    assert answer.startswith(b"HTTP/1.1 413"), answer
    good = httpx.post(planted.live.url + GENERATE, json=GOOD_REST, timeout=TIMEOUT)
    assert good.status_code == 200, good.text


# ------------------------------------------------------------------ MCP tools and resources
MCP_NAMES = [
    "../../../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "/etc/passwd", "%2Fetc%2Fpasswd",
    "..", ".", "catalog.sqlite3", "../catalog.sqlite3", "\x00", "x\x00.png", "..\\..\\secret",
    "%00", "....//....//etc/passwd", "~/.ssh/id_rsa", "../logs/sdxl_mcp.log",
]


@pytest.fixture
def mcp_planted(make_settings: Callable[..., Settings], tmp_path: Path
                ) -> tuple[Any, GatedBackend, Path]:
    backend = GatedBackend(gate_open=True)
    settings = make_settings(max_wait_s=0.2)
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET_FILE_TEXT)
    return build_server(settings, ImageService(settings, backend=backend)), backend, secret  # type: ignore[arg-type]


def _leaks(text: str) -> bool:
    return any(marker.decode() in text for marker in LEAK_MARKERS[:3])


async def test_mcp_image_resources_never_read_a_file_the_server_did_not_make(
    mcp_planted: tuple[Any, GatedBackend, Path],
) -> None:
    server, _, secret = mcp_planted
    async with Client(server) as client:
        made = await client.call_tool("generate_image", GOOD_MCP)
        real = made.structured_content["path"].rsplit("/", 1)[-1]
        names = [*MCP_NAMES, str(secret), real + "/../../secret.txt", real + "\x00",
                 real.removesuffix(".png") + ".json", _q("../" + real)]
        for name in names:
            with pytest.raises(Exception) as info:
                await client.read_resource("image://" + name)
            assert not _leaks(str(info.value)), name
        contents = (await client.read_resource("image://" + real)).contents[0]
        assert contents.mime_type == "image/png"


async def test_mcp_job_tools_refuse_ids_that_are_paths_or_patterns(
    mcp_planted: tuple[Any, GatedBackend, Path],
) -> None:
    server, backend, secret = mcp_planted
    backend.gate.clear()
    async with Client(server) as client:
        handle = (await client.call_tool("generate_image", GOOD_MCP)).structured_content
        assert handle["status"] == "running"
        job_id = handle["job_id"]
        ids = [*MCP_NAMES, str(secret), job_id + "\x00", job_id[:-1] + "%", job_id[:8] + "*",
               job_id.upper(), " " + job_id, "' OR '1'='1", "%"]
        for tool in ("get_generation", "cancel_generation"):
            for bad in ids:
                result = await client.call_tool(tool, {"job_id": bad})
                assert result.is_error, (tool, bad)
                assert not _leaks(result.model_dump_json()), (tool, bad)
        # None of the look-alike ids touched the real job: it is still running, then finishes.
        still = await client.call_tool("get_generation", {"job_id": job_id})
        assert still.structured_content["status"] == "running"
        backend.gate.set()
        done = await client.call_tool("get_generation", {"job_id": job_id, "wait_seconds": 0.2})
        with anyio.fail_after(60):
            while done.structured_content["status"] == "running":
                done = await client.call_tool("get_generation",
                                              {"job_id": job_id, "wait_seconds": 0.2})
        assert done.structured_content["status"] == "succeeded"
    assert not backend.cancelled.is_set()


# ------------------------------------------------------------------ Host, Origin, token
def _route_calls(p: Planted) -> dict[str, Callable[[httpx.Client, dict[str, str]], httpx.Response]]:
    from tests.reliability.support_inputs import MCP_HEADERS

    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "probe", "version": "0"}}}
    return {
        "healthz": lambda c, h: c.get("/healthz", headers=h),
        "openapi": lambda c, h: c.get("/openapi.json", headers=h),
        "generate": lambda c, h: c.post(GENERATE, json=GOOD_REST, headers=h),
        "image": lambda c, h: c.get(IMAGES + p.image, headers=h),
        "job": lambda c, h: c.get(JOBS + p.job_id, headers=h),
        "mcp": lambda c, h: c.post("/mcp", json=init, headers={**MCP_HEADERS, **h}),
    }


ROUTES = ["healthz", "openapi", "generate", "image", "job", "mcp"]
FOREIGN_HOSTS = ["evil.example", "evil.example:80", "127.0.0.1.evil.example",
                 "localhost.evil.example:8000", "127.0.0.2", "0.0.0.0", "[::2]", "LOCALHOST1"]
FOREIGN_ORIGINS = ["http://evil.example", "https://evil.example:443",
                   "http://127.0.0.1.evil.example", "http://localhost.evil.example:8000",
                   "null", "file://", "http://127.0.0.1@evil.example"]


@pytest.mark.parametrize("route", ROUTES)
def test_foreign_host_and_origin_are_refused_on_every_route(planted: Planted, route: str
                                                            ) -> None:
    call = _route_calls(planted)[route]
    served_before = len(list(planted.live.settings.output_dir.glob("*.png")))
    with httpx.Client(base_url=planted.live.url, timeout=TIMEOUT) as client:
        for host in FOREIGN_HOSTS:
            response = call(client, {"Host": host})
            assert response.status_code in (400, 421), (host, response.status_code)
            assert b"\x89PNG" not in response.content
        for origin in FOREIGN_ORIGINS:
            response = call(client, {"Origin": origin})
            assert response.status_code == 403, (origin, response.status_code)
            assert b"\x89PNG" not in response.content
        # Control: the same call from a local origin works.
        local = call(client, {"Origin": f"http://localhost:{planted.live.port}"})
        assert local.status_code == 200, local.text
    if route == "generate":
        made = len(list(planted.live.settings.output_dir.glob("*.png")))
        assert made == served_before + 1, "a refused request generated an image"


@pytest.fixture(scope="module")
def token_planted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Planted]:
    root = tmp_path_factory.mktemp("security-token")
    settings = tiny_settings(root, http_token=TOKEN)
    service = ImageService(settings, backend=GatedBackend(gate_open=True))  # type: ignore[arg-type]
    with isolated_environ(), serve(settings, service) as live:
        yield _plant(root, live, headers={"Authorization": f"Bearer {TOKEN}"})


BAD_AUTH = [
    pytest.param({}, id="missing"),
    pytest.param({"Authorization": "Bearer wrong-token-1234567890"}, id="wrong"),
    pytest.param({"Authorization": "Bearer"}, id="bearer-without-token"),
    pytest.param({"Authorization": f"Bearer {TOKEN[:-1]}"}, id="prefix"),
    pytest.param({"Authorization": f"Bearer {TOKEN}x"}, id="suffix"),
    pytest.param({"Authorization": f"Bearer {TOKEN.lower()}"}, id="other-case"),
    pytest.param({"Authorization": TOKEN}, id="no-scheme"),
    pytest.param({"Authorization": f"Basic {TOKEN}"}, id="basic-scheme"),
    pytest.param({"Authorization": f"Token {TOKEN}"}, id="token-scheme"),
    pytest.param({"X-Api-Key": TOKEN}, id="other-header"),
    pytest.param({"Cookie": f"token={TOKEN}"}, id="cookie"),
]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("headers", BAD_AUTH)
def test_missing_or_wrong_token_is_401_on_every_route(
    token_planted: Planted, route: str, headers: dict[str, str]
) -> None:
    call = _route_calls(token_planted)[route]
    with httpx.Client(base_url=token_planted.live.url, timeout=TIMEOUT) as client:
        response = call(client, headers)
        assert response.status_code == 401, response.text
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert TOKEN not in response.text
        in_query = client.get(f"/healthz?token={TOKEN}&access_token={TOKEN}", headers=headers)
        assert in_query.status_code == 401


@pytest.mark.parametrize("route", ROUTES)
def test_right_token_passes_and_host_check_still_applies(token_planted: Planted, route: str
                                                         ) -> None:
    call = _route_calls(token_planted)[route]
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=token_planted.live.url, timeout=TIMEOUT) as client:
        assert call(client, auth).status_code == 200
        assert call(client, {"Authorization": f"bearer {TOKEN}"}).status_code == 200
        assert call(client, {**auth, "Host": "evil.example"}).status_code == 421
        assert call(client, {**auth, "Origin": "http://evil.example"}).status_code == 403


@pytest.mark.parametrize(
    "host", ["0.0.0.0", "::", "192.168.1.10", "10.0.0.1", "example.com", "localhost.localdomain",
             "127.1", "0"],
)
def test_non_loopback_bind_without_a_token_is_refused(make_settings: Callable[..., Settings],
                                                      host: str) -> None:
    with pytest.raises(SettingsError, match="SDXL_MCP_HTTP_TOKEN"):
        build_http_app(make_settings(http_host=host))
    with pytest.raises(SettingsError):
        build_http_app(make_settings(http_host=host, http_token="   "))  # blank = no token
    build_http_app(make_settings(http_host=host, http_token=TOKEN))


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_bind_needs_no_token(make_settings: Callable[..., Settings], host: str) -> None:
    build_http_app(make_settings(http_host=host))


# ------------------------------------------------------------------ secrets
SECRETS = (TOKEN, PEXELS_KEY)


def _dump(value: Any) -> str:
    if isinstance(value, httpx.Response):
        return f"{value.status_code} {dict(value.headers)} {value.text}"
    if hasattr(value, "model_dump_json"):
        return str(value.model_dump_json())
    return str(value)


def _assert_no_secret(where: str, text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} leaked into {where}: ...{_around(text, secret)}..."


def _around(text: str, secret: str) -> str:
    i = text.find(secret)
    return text[max(0, i - 200): i + 200]


@pytest.fixture
def loud(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """caplog with every logger at DEBUG (libraries included)."""
    caplog.set_level(logging.DEBUG)
    for name in CHATTY_LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    yield caplog


@contextlib.contextmanager
def _product_logging(log_dir: Path) -> Iterator[None]:
    """The product's own handlers (stderr + LOG_DIR file, masking filter) at DEBUG."""
    from sdxl_mcp.logs import setup_logging

    root = logging.getLogger()
    setup_logging(log_dir, level=logging.DEBUG, secrets=list(SECRETS))
    for name in CHATTY_LOGGERS:  # setup_logging quietens some; the probe wants them all
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        yield
    finally:
        for handler in list(root.handlers):
            if getattr(handler, "_sdxl_mcp", False):
                root.removeHandler(handler)
                handler.close()


PEXELS_FAULTS = [
    pytest.param(401, b'{"error": "Invalid API key: PEXELS-SEC-KEY-555"}', id="401-echoing-key"),
    pytest.param(500, b"<html>Internal error for key PEXELS-SEC-KEY-555</html>",
                 id="500-html-echoing-key"),
    pytest.param(200, b'{"photos": "PEXELS-SEC-KEY-555", "page": 1}', id="bad-json-echoing-key"),
    pytest.param(None, b"", id="closed-port"),
]


@pytest.mark.parametrize(("status", "body"), PEXELS_FAULTS)
def test_secrets_never_reach_a_log_line_an_error_a_result_or_a_file(
    loud: pytest.LogCaptureFixture, tmp_path: Path, status: int | None, body: bytes
) -> None:
    outputs: list[tuple[str, Any]] = []
    with contextlib.ExitStack() as stack:
        if status is None:
            base_url = closed_port_url()
        else:
            base_url = stack.enter_context(answering_server(status, body)).url
        settings = tiny_settings(tmp_path, http_token=TOKEN, pexels_api_key=PEXELS_KEY,
                                 pexels_base_url=base_url)
        stack.enter_context(_product_logging(settings.log_dir))
        service = ImageService(settings, backend=GatedBackend(gate_open=True))  # type: ignore[arg-type]
        live = stack.enter_context(serve(settings, service))
        auth = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=live.url, timeout=TIMEOUT) as client:
            stock_first = client.post(GENERATE, json={"prompt": "an office"}, headers=auth)
            outputs.append(("REST stock-first", stock_first))
            assert stock_first.status_code in (502, 503), stock_first.text
            fallback = client.post(GENERATE, json={**GOOD_REST, "use_pexels": True},
                                   headers=auth)
            outputs.append(("REST fallback to generation", fallback))
            assert fallback.status_code == 200, fallback.text
            outputs.append(("REST job", client.get(JOBS + fallback.json()["job_id"],
                                                   headers=auth)))
            outputs.append(("REST healthz", client.get("/healthz", headers=auth)))
            outputs.append(("REST openapi", client.get("/openapi.json", headers=auth)))
            outputs.append(("REST wrong token", client.get("/healthz", headers={
                "Authorization": "Bearer " + TOKEN[:-3]})))
        with mcp_http_session(live.url, auth) as (client, headers):
            for i, (name, arguments) in enumerate([
                ("search_stock_image", {"query": "office"}),
                ("generate_image", {"prompt": "an office", "use_pexels": True,
                                    "use_generation": False}),
                ("generate_image", {**GOOD_MCP, "use_pexels": True}),
                ("gpu_status", {}),
            ]):
                answer = client.post("/mcp", headers=headers, json=tool_call(name, arguments, i))
                outputs.append((f"MCP {name}", answer))
                replies = [m for m in jsonrpc_messages(answer) if m.get("id") == i]
                assert len(replies) == 1 and "result" in replies[0], answer.text
                if name == "search_stock_image":
                    result = replies[0]["result"]
                    assert result["isError"] is True
                    assert "Pexels" in result["content"][0]["text"]
    for where, value in outputs:
        _assert_no_secret(where, _dump(value))
    _assert_no_secret("caplog (every logger at DEBUG, unmasked)", loud.text)
    log_text = log_file(settings.log_dir)
    assert "Pexels" in log_text, "the fault was not logged at all"
    _assert_no_secret("the LOG_DIR file", log_text)
    for path in settings.output_dir.rglob("*"):
        if path.is_file():
            _assert_no_secret(str(path), path.read_bytes().decode("utf-8", "replace"))


def test_secrets_never_reach_the_cli_output_or_its_log_file(tmp_path: Path) -> None:
    """``sdxl-mcp -v stock`` (text and --json) with the key set and Pexels answering 401.

    (``gpu_status``, which reports the Pexels status, is covered over MCP above.)"""
    script = Path(sys.executable).with_name("sdxl-mcp")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "sdxl_mcp"]
    with answering_server(401, b'{"error": "bad key PEXELS-SEC-KEY-555"}') as pexels:
        env = {**clean_environ(), "SDXL_MCP_PEXELS_API_KEY": PEXELS_KEY,
               "SDXL_MCP_PEXELS_BASE_URL": pexels.url, "SDXL_MCP_HTTP_TOKEN": TOKEN,
               "SDXL_MCP_LOG_DIR": str(tmp_path / "logs"),
               "SDXL_MCP_OUTPUT_DIR": str(tmp_path / "images"), "SDXL_MCP_PRELOAD": "false",
               "SDXL_MCP_BASE_MODEL": "tiny-random", "SDXL_MCP_REFINER_MODEL": "tiny-random"}
        runs = [subprocess.run([*command, "-v", *args], env=env, cwd=tmp_path,
                               capture_output=True, text=True, timeout=120, check=False)
                for args in (["stock", "office"], ["stock", "office", "--json"])]
        assert pexels.requests, "the CLI never reached the fake Pexels"
        assert pexels.requests[0].get("Authorization") == PEXELS_KEY  # sent, where it belongs
    stock = runs[0]
    assert stock.returncode != 0 and "Pexels rejected the API key" in stock.stderr
    for run in runs:
        _assert_no_secret(f"CLI {run.args[-1]} stdout", run.stdout)
        _assert_no_secret(f"CLI {run.args[-1]} stderr", run.stderr)
    _assert_no_secret("the CLI's LOG_DIR file", log_file(tmp_path / "logs"))
