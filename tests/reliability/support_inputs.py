"""Helpers for the bad-input, security and endurance suites (not a test module).

The tables of malformed requests are shared by the MCP and the REST tests, so
both transports are held to the same cases: every one is rejected before it
reaches the engine, with one line that names the field.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from sdxl_mcp.logs import LOG_FILE_NAME, setup_logging

GENERATE = "/api/media/generate-image"
JOBS = "/api/media/jobs/"
IMAGES = "/api/media/images/"
#: The cheapest request the schema allows (the fake backend makes it in milliseconds).
SMALL: dict[str, Any] = {"width": 256, "height": 256, "num_inference_steps": 20}
#: A REST body that generates (the guide's REST defaults are stock-first).
GOOD_REST = {"prompt": "a lighthouse", "use_pexels": False, "use_generation": True, **SMALL}
GOOD_MCP = {"prompt": "a lighthouse", **SMALL}
#: Guards against hangs only, never a timing assertion.
TIMEOUT = httpx.Timeout(120.0)
#: Line breaks a "one line" message must not contain.
LINE_BREAKS = ("\n", "\r", "\u2028", "\u2029", "\x85")
#: 100 KB of prompt: over the 500-character bound, and over REST's 64 KiB body cap.
HUGE = "a" * 100_000


def one_line(message: str) -> bool:
    return not any(brk in message for brk in LINE_BREAKS)


# ------------------------------------------------------------------ bad requests
@dataclass(frozen=True)
class Bad:
    """One malformed request: its arguments and the field the error must name."""

    id: str
    args: dict[str, Any]
    field: str
    #: What REST answers when this is the JSON body (413 for bodies over 64 KiB).
    rest_status: int = 422
    rest_says: str = ""  # what the REST message must contain instead of the field
    #: Only JSON text can carry it: the MCP client library serializes NaN and
    #: infinities as null, so the in-memory client cannot send them (raw
    #: JSON-RPC over HTTP does, see RAW_MCP in test_inputs.py).
    json_only: bool = False


def _p(prompt: Any = "a cat", **fields: Any) -> dict[str, Any]:
    return {"prompt": prompt, **fields}


BAD: list[Bad] = [
    # wrong types
    Bad("prompt-int", _p(7), "prompt"),
    Bad("prompt-array", _p(["a", "cat"]), "prompt"),
    Bad("prompt-object", _p({"text": "a cat"}), "prompt"),
    Bad("prompt-null", _p(None), "prompt"),
    Bad("steps-string", _p(num_inference_steps="30"), "num_inference_steps"),
    Bad("steps-fraction", _p(num_inference_steps=20.5), "num_inference_steps"),
    Bad("guidance-bool", _p(guidance_scale=True), "guidance_scale"),
    Bad("seed-bool", _p(seed=True), "seed"),
    Bad("width-string", _p(width="512"), "width"),
    Bad("quality-int", _p(quality=1), "quality"),
    Bad("negative-prompt-array", _p(negative_prompt=["blur"]), "negative_prompt"),
    # booleans as strings (and numbers)
    Bad("bool-string-true", _p(use_refinement="true"), "use_refinement"),
    Bad("bool-string-no", _p(use_pexels="no"), "use_pexels"),
    Bad("bool-int", _p(high_quality=1), "high_quality"),
    Bad("bool-object", _p(use_generation={}), "use_generation"),
    # out of bounds
    Bad("steps-below", _p(num_inference_steps=19), "num_inference_steps"),
    Bad("steps-above", _p(num_inference_steps=101), "num_inference_steps"),
    Bad("guidance-above", _p(guidance_scale=20.01), "guidance_scale"),
    Bad("guidance-below", _p(guidance_scale=0.5), "guidance_scale"),
    Bad("width-below", _p(width=248), "width"),
    Bad("height-above", _p(height=2056), "height"),
    Bad("high-noise-frac-above", _p(high_noise_frac=0.96), "high_noise_frac"),
    Bad("refiner-steps-zero", _p(refiner_steps=0), "refiner_steps"),
    Bad("refiner-strength-zero", _p(refiner_strength=0), "refiner_strength"),
    Bad("seed-too-big", _p(seed=2**32), "seed"),
    Bad("seed-huge", _p(seed=10**30), "seed"),
    # negative seeds
    Bad("seed-negative", _p(seed=-1), "seed"),
    Bad("seed-very-negative", _p(seed=-(2**63)), "seed"),
    # sizes that are not a multiple of 8
    Bad("width-not-multiple-of-8", _p(width=1001), "width"),
    Bad("height-not-multiple-of-8", _p(height=260), "height"),
    # huge strings
    Bad("prompt-100kb", _p(HUGE), "prompt", rest_status=413, rest_says="64 KiB"),
    Bad("prompt-501", _p("x" * 501), "prompt"),
    Bad("prompt-60kb", _p("x" * 60_000), "prompt"),
    Bad("negative-prompt-501", _p(negative_prompt="y" * 501), "negative_prompt"),
    # empty, invisible
    Bad("prompt-empty", _p(""), "prompt"),
    Bad("prompt-blank", _p(" \t\n "), "prompt"),
    Bad("prompt-zero-width-only", _p("\u200b\u200c\u200d\ufeff"), "prompt"),
    Bad("prompt-rtl-marks-only", _p("\u202e\u200f\u2066"), "prompt"),
    Bad("missing-prompt", {"seed": 7}, "prompt"),
    Bad("empty-arguments", {}, "prompt"),
    # unicode edge cases that are not text
    Bad("prompt-lone-high-surrogate", _p("a \ud800 cat"), "prompt"),
    Bad("prompt-lone-low-surrogate", _p("\udfff"), "prompt"),
    Bad("negative-prompt-lone-surrogate", _p(negative_prompt="\udbff"), "negative_prompt"),
    # null bytes
    Bad("prompt-nul", _p("a cat\x00; rm -rf /"), "prompt"),
    Bad("negative-prompt-nul", _p(negative_prompt="\x00"), "negative_prompt"),
    # NaN and infinities
    Bad("guidance-nan", _p(guidance_scale=float("nan")), "guidance_scale", json_only=True),
    Bad("guidance-infinity", _p(guidance_scale=float("inf")), "guidance_scale", json_only=True),
    Bad("high-noise-frac-minus-infinity", _p(high_noise_frac=float("-inf")), "high_noise_frac",
        json_only=True),
    Bad("refiner-strength-nan", _p(refiner_strength=float("nan")), "refiner_strength",
        json_only=True),
    Bad("width-infinity", _p(width=float("inf")), "width", json_only=True),
    # unknown fields and enum values
    Bad("unknown-field", _p(sharpness=3), "sharpness"),
    Bad("unknown-field-typo", _p(num_inference_step=30), "num_inference_step"),
    Bad("unknown-field-with-newline", _p(**{"evil\nkey": 1}), "evil"),
    Bad("quality-unknown", _p(quality="ultra"), "quality"),
    Bad("refiner-mode-unknown", _p(refiner_mode="parallel"), "refiner_mode"),
]

BAD_PARAMS = [pytest.param(bad, id=bad.id) for bad in BAD]
MCP_BAD_PARAMS = [pytest.param(bad, id=bad.id) for bad in BAD if not bad.json_only]


def rest_body(bad: Bad) -> bytes:
    """The case as a REST body: the JSON text (NaN, Infinity and "\\ud800" as JSON spells them)."""
    return json.dumps(bad.args).encode()


#: REST bodies no Python dict can express: raw tokens, non-objects, broken JSON.
RAW_BAD = [
    pytest.param(b"", "prompt", id="empty-body"),
    pytest.param(b"{}", "prompt", id="empty-object"),
    pytest.param(b"null", "object", id="json-null"),
    pytest.param(b"[]", "object", id="empty-array"),
    pytest.param(b'["a red bicycle"]', "object", id="array-instead-of-object"),
    pytest.param(b'"a red bicycle"', "object", id="string-instead-of-object"),
    pytest.param(b"42", "object", id="number-instead-of-object"),
    pytest.param(b'{"prompt": "x", "guidance_scale": NaN}', "guidance_scale", id="raw-NaN"),
    pytest.param(b'{"prompt": "x", "high_noise_frac": Infinity}', "high_noise_frac",
                 id="raw-Infinity"),
    pytest.param(b'{"prompt": "x", "refiner_strength": -Infinity}', "refiner_strength",
                 id="raw-minus-Infinity"),
    pytest.param(b'{"prompt": "\\ud800"}', "prompt", id="raw-lone-surrogate-escape"),
    pytest.param(b'{"prompt": "a\\u0000b"}', "prompt", id="raw-nul-escape"),
    pytest.param(b'{"prompt": "x", "use_pexels": "false"}', "use_pexels", id="raw-bool-string"),
    pytest.param(b'{"prompt": "x", "seed": 1e400}', "seed", id="raw-float-overflow"),
    pytest.param(b'{"prompt": "x",', "JSON", id="truncated-json"),
    pytest.param(b"{'prompt': 'x'}", "JSON", id="single-quoted"),
    pytest.param(b'{"prompt": "\xff\xfe x"}', "JSON", id="invalid-utf8"),
    pytest.param(b"\x00" * 64, "JSON", id="nul-bytes"),
    pytest.param(b"[" * 5000 + b"]" * 5000, "JSON", id="deeply-nested"),
    pytest.param(b'{"prompt": {"prompt": {"prompt": "x"}}}', "prompt", id="nested-objects"),
]

#: Text an agent may legitimately send: accepted and stored exactly as given.
GOOD_UNICODE = [
    pytest.param("a cat 🐱 on a roof 🌙 👩‍👩‍👧", id="emoji-and-zwj-sequence"),
    pytest.param("قطة على السطح", id="rtl-arabic"),
    pytest.param("שלום \u202eevil\u202c world", id="rtl-override-inside-text"),
    pytest.param("zero\u200bwidth\u200cjoin\u200d", id="zero-width-inside-text"),
    pytest.param("e\u0301\u0301\u0301 combining", id="combining-marks"),
    pytest.param("富士山と桜、夕焼け", id="cjk"),
    pytest.param("line one\nline two\ttab", id="newline-and-tab"),
    pytest.param("\U0001d54f\U0001f9ea astral plane", id="astral-plane"),
]


# ------------------------------------------------------------------ raw MCP over HTTP
MCP_HEADERS = {"Accept": "application/json, text/event-stream",
               "Content-Type": "application/json"}


def jsonrpc_messages(response: httpx.Response) -> list[dict[str, Any]]:
    """The JSON-RPC messages of a streamable-HTTP answer (plain JSON or SSE)."""
    if not response.content:
        return []
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        return [json.loads(line[5:]) for line in response.text.splitlines()
                if line.startswith("data:") and line[5:].strip()]
    body = response.json()
    return body if isinstance(body, list) else [body]


@contextlib.contextmanager
def mcp_http_session(base_url: str, extra: dict[str, str] | None = None
                     ) -> Iterator[tuple[httpx.Client, dict[str, str]]]:
    """An initialized MCP session over raw HTTP: the client and the headers to send."""
    from mcp_types.version import LATEST_HANDSHAKE_VERSION

    with httpx.Client(base_url=base_url, timeout=TIMEOUT) as client:
        init = client.post("/mcp", headers={**MCP_HEADERS, **(extra or {})}, json={
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": LATEST_HANDSHAKE_VERSION, "capabilities": {},
                       "clientInfo": {"name": "reliability", "version": "0"}}})
        assert init.status_code == 200, init.text
        headers = {**MCP_HEADERS, **(extra or {})}
        if "mcp-session-id" in init.headers:
            headers["mcp-session-id"] = init.headers["mcp-session-id"]
        if "mcp-protocol-version" in init.headers:
            headers["mcp-protocol-version"] = init.headers["mcp-protocol-version"]
        else:
            version = jsonrpc_messages(init)[0]["result"]["protocolVersion"]
            headers["mcp-protocol-version"] = version
        client.post("/mcp", headers=headers,
                    json={"jsonrpc": "2.0", "method": "notifications/initialized"})
        yield client, headers


def tool_call(name: str, arguments: dict[str, Any], id_: int = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id_, "method": "tools/call",
            "params": {"name": name, "arguments": arguments}}


# ------------------------------------------------------------------ raw HTTP
def raw_request(port: int, target: bytes, *, method: bytes = b"GET",
                headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """Send ``target`` byte for byte (no client-side normalisation of ``..`` or ``%2F``)."""
    lines = [method + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1:%d" % port,
             b"Connection: close", b"Content-Length: 0"]
    lines += [f"{k}: {v}".encode() for k, v in (headers or {}).items()]
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


# ------------------------------------------------------------------ secrets
@dataclass
class LoopbackHttp:
    """A tiny HTTP server on loopback that answers every request the same way."""

    url: str
    requests: list[dict[str, str]]


@contextlib.contextmanager
def answering_server(status: int, body: bytes, headers: dict[str, str] | None = None
                     ) -> Iterator[LoopbackHttp]:
    """Answer every GET with ``status`` and ``body`` (a stand-in for api.pexels.com)."""
    seen: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(dict(self.headers))
            self.send_response(status)
            for key, value in (headers or {"Content-Type": "application/json"}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield LoopbackHttp(f"http://127.0.0.1:{server.server_address[1]}/v1", seen)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def closed_port_url() -> str:
    """A loopback URL nothing listens on (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


class RawRecords(logging.Handler):
    """Keeps every record, formatted the moment it is emitted (before any masking)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        text = self.format(record)
        if record.exc_info:
            text += self.formatter.formatException(record.exc_info)  # type: ignore[union-attr]
        self.lines.append(text)


#: Loggers a library may use to print request headers or URLs.
CHATTY_LOGGERS = ("", "sdxl_mcp", "httpx", "httpcore", "urllib3", "uvicorn", "uvicorn.error",
                  "uvicorn.access", "mcp", "starlette", "anyio", "asyncio", "requests")


@contextlib.contextmanager
def everything_logged(log_dir: Path, secrets: list[str]) -> Iterator[RawRecords]:
    """Every logger at DEBUG into the product's handlers (LOG_DIR file) and a raw recorder.

    The raw recorder sits first on the root logger, so it sees records before
    the product's masking filter rewrites them: a secret it sees was *logged*,
    even if the file would have masked it.
    """
    root = logging.getLogger()
    saved_levels = {name: logging.getLogger(name).level for name in CHATTY_LOGGERS}
    saved_handlers = list(root.handlers)
    raw = RawRecords()
    root.handlers.insert(0, raw)
    try:
        setup_logging(log_dir, level=logging.DEBUG, secrets=secrets)
        for name in CHATTY_LOGGERS:
            logging.getLogger(name).setLevel(logging.DEBUG)
        yield raw
    finally:
        for handler in list(root.handlers):
            if getattr(handler, "_sdxl_mcp", False):
                root.removeHandler(handler)
                handler.close()
        root.handlers[:] = [h for h in root.handlers if h is not raw]
        for handler in saved_handlers:
            if handler not in root.handlers:
                root.addHandler(handler)
        for name, level in saved_levels.items():
            logging.getLogger(name).setLevel(level)


def log_file(log_dir: Path) -> str:
    path = log_dir / LOG_FILE_NAME
    return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
