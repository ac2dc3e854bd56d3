"""Shared pieces of the Pexels unit tests (not a test module).

The in-process :class:`~fake_pexels.FakePexels` set up as those tests expect
(photos 101 and 202 by "Jane Doe", fixed rate-limit headers, one fixed JPEG
for every download), a clock for the search cache, and checks that the key
never leaks.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import httpx
import pytest

from sdxl_mcp.schemas import StockSearchRequest
from sdxl_mcp.stock.pexels import PexelsClient
from tests.fake_pexels import API_URL, IMAGES_URL, FakePexels, FakePhoto, jpeg
from tests.fake_pexels import photo_json as fake_photo_json

KEY = "PEXELS-SECRET-KEY-123"
BASE = f"{API_URL}/v1"
IMAGES = IMAGES_URL

JANE = FakePhoto(101, 4000, 2766, "Jane Doe", 42, "team-meeting",
                 "People around a table in a bright office", "#7A6B5C", (255, 165, 0),
                 profile="https://www.pexels.com/@jane-doe")

RATE_HEADERS = {
    "X-Ratelimit-Limit": "20000",
    "X-Ratelimit-Remaining": "19684",
    "X-Ratelimit-Reset": "1767225600",
}

HTML_PAGE = "<html><head><title>502 Bad Gateway</title></head><body>cloudflare</body></html>"

Handler = Callable[[httpx.Request], Any]


def photo_json(photo_id: int = 101, **overrides: Any) -> dict[str, Any]:
    """Jane Doe's photo as a search answer lists it, under another id if asked."""
    return fake_photo_json(dataclasses.replace(JANE, id=photo_id), IMAGES, **overrides)


def search_json(*photos: dict[str, Any], total: int | None = None) -> dict[str, Any]:
    items = list(photos) if photos else [photo_json(101), photo_json(202)]
    return {
        "total_results": len(items) if total is None else total,
        "page": 1,
        "per_page": 5,
        "photos": items,
        "next_page": f"{BASE}/search/?page=2&per_page=5&query=office",
    }


def make_fake() -> FakePexels:
    """The in-process fake: two photos, fixed quota headers, one 188x130 JPEG."""
    fake = FakePexels(photos=[JANE, dataclasses.replace(JANE, id=202)], key=KEY)
    fake.search_headers = dict(RATE_HEADERS)
    fake.image = jpeg(188, 130, "orange")
    return fake


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def client_for(fake: FakePexels, clock: FakeClock, **kwargs: Any) -> PexelsClient:
    http = httpx.AsyncClient(transport=fake.transport())
    kwargs.setdefault("clock", clock)
    return PexelsClient(KEY, base_url=BASE, http=http, **kwargs)


def request(**kwargs: Any) -> StockSearchRequest:
    kwargs.setdefault("query", "team meeting")
    return StockSearchRequest(**kwargs)


def assert_no_key(exc: BaseException) -> None:
    assert KEY not in str(exc)
    assert KEY not in repr(exc)
    assert KEY not in str(getattr(exc, "message", ""))
    # Nothing upstream (HTML, a body) is passed through either.
    assert "<" not in str(exc)


def raising(exc_type: type[httpx.TransportError], text: str) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc_type(text, request=request)

    return handler


async def sleep_forever(request: httpx.Request) -> httpx.Response:
    await anyio.sleep(30)
    return httpx.Response(200)


def key_never_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """The body of an autouse fixture: the key in no log line of any logger."""
    caplog.set_level(logging.DEBUG)
    yield
    assert KEY not in caplog.text
    for record in caplog.records:
        assert KEY not in record.getMessage()
        assert KEY not in repr(record.args)


# -- fixtures: a test module imports them by name to use them ----------------


@pytest.fixture(autouse=True)
def _key_never_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    yield from key_never_logged(caplog)


@pytest.fixture
def fake() -> FakePexels:
    return make_fake()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_client(fake: FakePexels, clock: FakeClock) -> Callable[..., PexelsClient]:
    def make(**kwargs: Any) -> PexelsClient:
        return client_for(fake, clock, **kwargs)

    return make


@pytest.fixture
def client(make_client: Callable[..., PexelsClient]) -> PexelsClient:
    return make_client()
