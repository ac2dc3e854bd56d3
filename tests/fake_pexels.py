"""A fake Pexels API on a real loopback port (stdlib ``http.server`` in a thread).

It answers ``GET /v1/search`` like api.pexels.com does (JSON photos, the
``X-Ratelimit-*`` headers, the key checked in ``Authorization``) and serves real
JPEG bytes (made with PIL) for the ``src`` URLs it hands out, which point back
at itself. ``mode`` switches its behaviour per test; ``searches`` and
``downloads`` record what it received, so tests can count upstream requests.

Modes: ``normal``, ``no-results``, ``401``, ``403``, ``429`` (quota used up, reset
in two minutes), ``500`` (an HTML error page), ``html-200`` (a web page with
status 200, like a captive portal), ``slow`` (answers after ``slow_s``),
``bad-json`` and ``download-breaks`` (searches work; an image download sends
half its bytes, then the connection drops).
"""

from __future__ import annotations

import contextlib
import io
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from PIL import Image

KEY = "PEXELS-E2E-KEY-987"
MODES = (
    "normal",
    "no-results",
    "401",
    "403",
    "429",
    "500",
    "html-200",
    "slow",
    "bad-json",
    "download-breaks",
)
RATE_LIMIT = 20000
RATE_RESET_IN_S = 120


@dataclass(frozen=True)
class FakePhoto:
    id: int
    width: int
    height: int
    photographer: str
    photographer_id: int
    slug: str
    alt: str
    avg_color: str
    color: tuple[int, int, int]

    @property
    def photographer_url(self) -> str:
        handle = self.photographer.lower().replace(" ", "-")
        return f"https://www.pexels.com/@{handle}-{self.photographer_id}"

    @property
    def page_url(self) -> str:
        return f"https://www.pexels.com/photo/{self.slug}-{self.id}/"


PHOTOS = (
    FakePhoto(3184291, 640, 427, "Ana Lima", 1437723, "people-in-a-meeting",
              "People around a table in a bright office", "#8A7D6F", (138, 125, 111)),
    FakePhoto(3182812, 480, 640, "Jo Park", 1181292, "woman-at-a-whiteboard",
              "A woman writing on a whiteboard", "#B0A89C", (176, 168, 156)),
)


@dataclass(frozen=True)
class Seen:
    """One request the fake received."""

    path: str
    params: dict[str, str]
    authorization: str | None


def _jpeg(photo: FakePhoto, box_w: int | None, box_h: int | None) -> bytes:
    """The photo scaled to fit the box (never up), like Pexels' resized ``src`` URLs."""
    scale = 1.0
    if box_w:
        scale = min(scale, box_w / photo.width)
    if box_h:
        scale = min(scale, box_h / photo.height)
    size = (max(1, round(photo.width * scale)), max(1, round(photo.height * scale)))
    buffer = io.BytesIO()
    Image.new("RGB", size, photo.color).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


class FakePexels:
    """The fake server's state; ``url`` is its root, ``base_url`` the API's (``/v1``)."""

    def __init__(self) -> None:
        self.mode = "normal"
        self.slow_s = 5.0
        self.key = KEY
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self.searches: list[Seen] = []
        self.downloads: list[Seen] = []
        self.port = 0
        self._server: ThreadingHTTPServer | None = None

    # -- control -------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        self.mode = mode

    def reset(self) -> None:
        """Back to ``normal`` with empty counters; wakes any request still sleeping."""
        with self._lock:
            self.mode = "normal"
            self.searches = []
            self.downloads = []
            self._wake.set()
            self._wake = threading.Event()

    @contextlib.contextmanager
    def running(self) -> Iterator[FakePexels]:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        server.daemon_threads = True
        self._server = server
        self.port = server.server_address[1]
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                  name=f"fake-pexels-{self.port}", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._wake.set()
            server.shutdown()
            server.server_close()
            thread.join(5)

    # -- answers -------------------------------------------------------------
    def record(self, kind: str, seen: Seen) -> None:
        with self._lock:
            (self.searches if kind == "search" else self.downloads).append(seen)

    def sleep(self, seconds: float) -> None:
        self._wake.wait(seconds)

    def photo_json(self, photo: FakePhoto) -> dict[str, Any]:
        base = f"{self.url}/photos/{photo.id}/pexels-photo-{photo.id}.jpeg"
        return {
            "id": photo.id,
            "width": photo.width,
            "height": photo.height,
            "url": photo.page_url,
            "photographer": photo.photographer,
            "photographer_url": photo.photographer_url,
            "photographer_id": photo.photographer_id,
            "avg_color": photo.avg_color,
            "src": {
                "original": base,
                "large2x": f"{base}?auto=compress&cs=tinysrgb&dpr=2&h=650&w=940",
                "large": f"{base}?auto=compress&cs=tinysrgb&h=650&w=940",
                "medium": f"{base}?auto=compress&cs=tinysrgb&h=350",
                "small": f"{base}?auto=compress&cs=tinysrgb&h=130",
                "portrait": f"{base}?auto=compress&cs=tinysrgb&fit=crop&h=1200&w=800",
                "landscape": f"{base}?auto=compress&cs=tinysrgb&fit=crop&h=627&w=1200",
                "tiny": f"{base}?auto=compress&cs=tinysrgb&dpr=1&fit=crop&h=200&w=280",
            },
            "liked": False,
            "alt": photo.alt,
        }

    def search_body(self, params: dict[str, str]) -> dict[str, Any]:
        per_page = int(params.get("per_page", "15"))
        page = int(params.get("page", "1"))
        photos = [] if self.mode == "no-results" else list(PHOTOS)[:per_page]
        body: dict[str, Any] = {
            "total_results": len(photos),
            "page": page,
            "per_page": per_page,
            "photos": [self.photo_json(p) for p in photos],
        }
        if photos:
            body["next_page"] = (
                f"{self.base_url}/search/?page={page + 1}&per_page={per_page}"
                f"&query={params.get('query', '')}"
            )
        return body

    def rate_headers(self, remaining: int) -> dict[str, str]:
        return {
            "X-Ratelimit-Limit": str(RATE_LIMIT),
            "X-Ratelimit-Remaining": str(remaining),
            "X-Ratelimit-Reset": str(int(time.time()) + RATE_RESET_IN_S),
        }


_HTML_ERROR = (
    b"<!DOCTYPE html><html><head><title>500 Internal Server Error</title></head>"
    b"<body><h1>Internal Server Error</h1><p>nginx</p></body></html>"
)
_HTML_PORTAL = (
    b"<!DOCTYPE html><html><head><title>Sign in to the network</title></head>"
    b"<body><form>Accept the terms to continue</form></body></html>"
)


def _handler_for(fake: FakePexels) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "fake-pexels/1.0"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def handle(self) -> None:
            # A client that hangs up (a timeout, a pooled connection closed) is normal.
            with contextlib.suppress(ConnectionError):
                super().handle()

        def do_GET(self) -> None:
            with contextlib.suppress(ConnectionError):
                self._answer()

        def _send(self, status: int, body: bytes, content_type: str,
                  headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
            self._send(status, json.dumps(data).encode(), "application/json; charset=utf-8",
                       headers)

        def _answer(self) -> None:
            split = urlsplit(self.path)
            params = {k: v[-1] for k, v in parse_qs(split.query).items()}
            seen = Seen(split.path, params, self.headers.get("Authorization"))
            if split.path.rstrip("/") == "/v1/search":
                fake.record("search", seen)
                self._search(seen)
            elif split.path.startswith("/photos/"):
                fake.record("download", seen)
                self._photo(split.path, params)
            else:
                self._json(404, {"error": "Not found"})

        def _search(self, seen: Seen) -> None:
            mode = fake.mode
            if mode == "slow":
                fake.sleep(fake.slow_s)
            if mode in ("401", "403") or seen.authorization != fake.key:
                status = 403 if mode == "403" else 401
                self._json(status, {"error": "Unauthorized" if status == 401 else "Forbidden"})
                return
            if mode == "429":
                self._send(429, b"Rate limit exceeded", "text/plain",
                           fake.rate_headers(remaining=0))
                return
            if mode == "500":
                self._send(500, _HTML_ERROR, "text/html")
                return
            if mode == "html-200":
                self._send(200, _HTML_PORTAL, "text/html; charset=utf-8")
                return
            rate = fake.rate_headers(remaining=RATE_LIMIT - len(fake.searches))
            if mode == "bad-json":
                self._send(200, b'{"page": 1, "photos": [{"id": 1, "width"', "application/json",
                           rate)
                return
            self._json(200, fake.search_body(seen.params), rate)

        def _photo(self, path: str, params: dict[str, str]) -> None:
            photo = next((p for p in PHOTOS if path.startswith(f"/photos/{p.id}/")), None)
            if photo is None:
                self._json(404, {"error": "Not found"})
                return
            dpr = float(params.get("dpr", "1"))
            box_w = int(float(params["w"]) * dpr) if "w" in params else None
            box_h = int(float(params["h"]) * dpr) if "h" in params else None
            body = _jpeg(photo, box_w, box_h)
            if fake.mode != "download-breaks":
                self._send(200, body, "image/jpeg", {"Cache-Control": "max-age=2592000"})
                return
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            # Close the connection with the body half sent (Content-Length promised more).
            with contextlib.suppress(OSError):
                self.connection.shutdown(2)

    return Handler
