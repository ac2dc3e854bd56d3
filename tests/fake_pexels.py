"""One fake Pexels API: an httpx ``MockTransport`` handler, or a real loopback server.

:meth:`FakePexels.handle` answers an ``httpx.Request`` like api.pexels.com
does: ``GET /v1/search`` with JSON photos, the ``X-Ratelimit-*`` headers and
the key checked in ``Authorization``, and real JPEG bytes (made with PIL) for
the ``src`` URLs it hands out. Use it two ways:

* in-process: ``httpx.AsyncClient(transport=fake.transport())`` (API at
  ``https://api.pexels.test/v1``, photos on ``https://images.pexels.test``);
* over sockets: ``with FakePexels().running() as fake:`` serves the same
  answers on ``127.0.0.1`` (``fake.base_url``), for a server under test in
  another process or behind real httpx connections.

``mode`` switches its behaviour: ``normal``, ``no-results``, ``401``, ``403``,
``429`` (quota used up, reset in two minutes), ``500`` (an HTML error page),
``html-200`` (a web page with status 200, like a captive portal), ``slow``
(answers after ``slow_s``), ``bad-json`` and ``download-breaks`` (searches
work; a photo download sends half its bytes, then the connection drops).
For one-off answers set ``search_body`` / ``search_headers`` / ``image`` or a
whole ``search_handler`` / ``image_handler`` (``httpx.Request -> httpx.Response``,
sync or async). ``searches`` and ``downloads`` record every request received.
"""

from __future__ import annotations

import contextlib
import io
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anyio
import anyio.to_thread
import httpx
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
API_URL = "https://api.pexels.test"
IMAGES_URL = "https://images.pexels.test"

Handler = Callable[[httpx.Request], Any]


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
    profile: str = ""  # the photographer's page; derived from the name when empty

    @property
    def photographer_url(self) -> str:
        if self.profile:
            return self.profile
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


def photo_json(photo: FakePhoto, images_url: str = IMAGES_URL, **overrides: Any) -> dict[str, Any]:
    """The photo as a Pexels search answer lists it (``overrides`` replace fields)."""
    base = f"{images_url}/photos/{photo.id}/pexels-photo-{photo.id}.jpeg"
    data: dict[str, Any] = {
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
    data.update(overrides)
    return data


def jpeg(width: int, height: int, color: tuple[int, int, int] | str = "orange") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def _scaled_jpeg(photo: FakePhoto, box_w: int | None, box_h: int | None) -> bytes:
    """The photo scaled to fit the box (never up), like Pexels' resized ``src`` URLs."""
    scale = 1.0
    if box_w:
        scale = min(scale, box_w / photo.width)
    if box_h:
        scale = min(scale, box_h / photo.height)
    size = (max(1, round(photo.width * scale)), max(1, round(photo.height * scale)))
    return jpeg(*size, color=photo.color)


@dataclass(frozen=True)
class Seen:
    """One request the fake received."""

    method: str
    url: httpx.URL
    headers: httpx.Headers

    @property
    def path(self) -> str:
        return self.url.path

    @property
    def params(self) -> dict[str, str]:
        return dict(self.url.params)

    @property
    def authorization(self) -> str | None:
        return self.headers.get("Authorization")


class BrokenStream(httpx.AsyncByteStream):
    """A body that sends some bytes, then the connection drops."""

    def __init__(self, first: bytes) -> None:
        self.first = first

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.first
        raise httpx.ReadError("connection reset by peer")


_HTML_ERROR = (
    "<!DOCTYPE html><html><head><title>500 Internal Server Error</title></head>"
    "<body><h1>Internal Server Error</h1><p>nginx</p></body></html>"
)
_HTML_PORTAL = (
    "<!DOCTYPE html><html><head><title>Sign in to the network</title></head>"
    "<body><form>Accept the terms to continue</form></body></html>"
)


class FakePexels:
    """The fake's state and answers; ``base_url`` is the API's root (``.../v1``)."""

    def __init__(
        self,
        *,
        photos: Sequence[FakePhoto] = PHOTOS,
        key: str = KEY,
        api_url: str = API_URL,
        images_url: str = IMAGES_URL,
    ) -> None:
        self.photos = tuple(photos)
        self.key = key
        self.api_url = api_url
        self.images_url = images_url
        self.mode = "normal"
        self.slow_s = 5.0
        #: One-off answers: a fixed search body / rate headers / photo bytes.
        self.search_body: dict[str, Any] | None = None
        self.search_headers: dict[str, str] | None = None
        self.image: bytes | None = None
        #: Whole answers, ahead of everything else.
        self.search_handler: Handler | None = None
        self.image_handler: Handler | None = None
        self.searches: list[Seen] = []
        self.downloads: list[Seen] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()

    # -- control -------------------------------------------------------------
    @property
    def url(self) -> str:
        return self.api_url

    @property
    def base_url(self) -> str:
        return f"{self.api_url}/v1"

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

    def transport(self) -> httpx.MockTransport:
        """An httpx transport answered by this fake, in-process."""
        return httpx.MockTransport(self.handle)

    @contextlib.contextmanager
    def running(self) -> Iterator[FakePexels]:
        """Serve the same answers on a loopback port (``url`` points there meanwhile)."""
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        server.daemon_threads = True
        saved = (self.api_url, self.images_url)
        self.api_url = self.images_url = f"http://127.0.0.1:{server.server_address[1]}"
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                  name=f"fake-pexels-{server.server_address[1]}", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._wake.set()
            server.shutdown()
            server.server_close()
            thread.join(5)
            self.api_url, self.images_url = saved

    # -- answers -------------------------------------------------------------
    async def handle(self, request: httpx.Request) -> httpx.Response:
        """The answer to one request (the MockTransport handler)."""
        seen = Seen(request.method, request.url, request.headers)
        api_host = httpx.URL(self.api_url).host
        images_host = httpx.URL(self.images_url).host
        if request.url.host == api_host and request.url.path.rstrip("/") == "/v1/search":
            with self._lock:
                self.searches.append(seen)
            if self.search_handler is not None:
                return await _maybe_await(self.search_handler(request))
            return await self._search(seen)
        if request.url.path.startswith("/photos/") or (
            images_host != api_host and request.url.host == images_host
        ):
            with self._lock:
                self.downloads.append(seen)
            if self.image_handler is not None:
                return await _maybe_await(self.image_handler(request))
            return self._photo(seen)
        return httpx.Response(404, json={"error": "Not found"})

    def rate_headers(self, remaining: int) -> dict[str, str]:
        return {
            "X-Ratelimit-Limit": str(RATE_LIMIT),
            "X-Ratelimit-Remaining": str(remaining),
            "X-Ratelimit-Reset": str(int(time.time()) + RATE_RESET_IN_S),
        }

    def body_for(self, params: dict[str, str]) -> dict[str, Any]:
        """A search answer listing this fake's photos (none in ``no-results``)."""
        per_page = int(params.get("per_page", "15"))
        page = int(params.get("page", "1"))
        photos = [] if self.mode == "no-results" else list(self.photos)[:per_page]
        body: dict[str, Any] = {
            "total_results": len(photos),
            "page": page,
            "per_page": per_page,
            "photos": [photo_json(p, self.images_url) for p in photos],
        }
        if photos:
            body["next_page"] = (
                f"{self.base_url}/search/?page={page + 1}&per_page={per_page}"
                f"&query={params.get('query', '')}"
            )
        return body

    async def _search(self, seen: Seen) -> httpx.Response:
        mode = self.mode
        if mode == "slow":
            await anyio.to_thread.run_sync(self._wake.wait, self.slow_s, abandon_on_cancel=True)
        if mode in ("401", "403") or seen.authorization != self.key:
            status = 403 if mode == "403" else 401
            return httpx.Response(
                status, json={"error": "Unauthorized" if status == 401 else "Forbidden"})
        if mode == "429":
            return httpx.Response(429, text="Rate limit exceeded",
                                  headers=self.rate_headers(remaining=0))
        if mode == "500":
            return httpx.Response(500, html=_HTML_ERROR)
        if mode == "html-200":
            return httpx.Response(200, html=_HTML_PORTAL)
        rate = (self.search_headers if self.search_headers is not None
                else self.rate_headers(remaining=RATE_LIMIT - len(self.searches)))
        if mode == "bad-json":
            return httpx.Response(200, content=b'{"page": 1, "photos": [{"id": 1, "width"',
                                  headers={**rate, "Content-Type": "application/json"})
        body = self.search_body if self.search_body is not None else self.body_for(seen.params)
        return httpx.Response(200, json=body, headers=rate)

    def _photo(self, seen: Seen) -> httpx.Response:
        body = self.image
        if body is None:
            photo = next((p for p in self.photos if seen.path.startswith(f"/photos/{p.id}/")),
                         None)
            if photo is None:
                return httpx.Response(404, json={"error": "Not found"})
            params = seen.params
            dpr = float(params.get("dpr", "1"))
            box_w = int(float(params["w"]) * dpr) if "w" in params else None
            box_h = int(float(params["h"]) * dpr) if "h" in params else None
            body = _scaled_jpeg(photo, box_w, box_h)
        if self.mode == "download-breaks":
            # Content-Length promises the whole photo; half comes, then the connection drops.
            return httpx.Response(200, stream=BrokenStream(body[: len(body) // 2]), headers={
                "Content-Type": "image/jpeg", "Content-Length": str(len(body))})
        return httpx.Response(200, content=body, headers={
            "Content-Type": "image/jpeg", "Cache-Control": "max-age=2592000"})


async def _maybe_await(value: Any) -> httpx.Response:
    if isinstance(value, httpx.Response):
        return value
    result: httpx.Response = await value
    return result


def _handler_for(fake: FakePexels) -> type[BaseHTTPRequestHandler]:
    """A stdlib request handler that serves :meth:`FakePexels.handle` over a socket."""

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
            request = httpx.Request("GET", f"{fake.url}{self.path}",
                                    headers=list(self.headers.items()))
            with contextlib.suppress(ConnectionError):
                anyio.run(self._answer, request)

        async def _answer(self, request: httpx.Request) -> None:
            response = await fake.handle(request)
            try:
                body: bytes | None = response.content
            except httpx.ResponseNotRead:  # a streamed body (download-breaks)
                body = None
            if body is not None and "content-length" not in response.headers:
                response.headers["Content-Length"] = str(len(body))
            self.send_response(response.status_code)
            for name, value in response.headers.multi_items():
                self.send_header(name, value)
            self.end_headers()
            if body is not None:
                self.wfile.write(body)
                return
            try:
                async for chunk in response.aiter_raw():
                    self.wfile.write(chunk)
            except httpx.ReadError:
                # The body broke off: close the connection with it half sent.
                self.wfile.flush()
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(2)

    return Handler


__all__ = [
    "API_URL",
    "IMAGES_URL",
    "KEY",
    "MODES",
    "PHOTOS",
    "RATE_LIMIT",
    "RATE_RESET_IN_S",
    "BrokenStream",
    "FakePexels",
    "FakePhoto",
    "Seen",
    "jpeg",
    "photo_json",
]
