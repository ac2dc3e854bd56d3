"""The Pexels client against a fake Pexels at the httpx transport (httpx.MockTransport).

Every test also checks, through an autouse fixture, that the API key never shows
up in any log record of any logger.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from PIL import Image

from sdxl_mcp.errors import (
    StockAuthError,
    StockError,
    StockNotConfigured,
    StockRateLimited,
    StockUnavailable,
)
from sdxl_mcp.schemas import PexelsPhoto, StockSearchRequest
from sdxl_mcp.stock import (
    PexelsClient,
    RateLimit,
    attribution_markdown,
    attribution_text,
    choose_src_size,
    default_http_client,
)
from sdxl_mcp.stock.pexels import USER_AGENT
from sdxl_mcp.storage import TEMP_PREFIX, ImageStore

KEY = "PEXELS-SECRET-KEY-123"
BASE = "https://api.pexels.test/v1"
IMAGES = "https://images.pexels.test"

Handler = Callable[[httpx.Request], Any]


# --------------------------------------------------------------------------- fakes


def jpeg(width: int = 188, height: int = 130, color: str = "orange") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


def photo_json(photo_id: int = 101, **overrides: Any) -> dict[str, Any]:
    base = f"{IMAGES}/photos/{photo_id}/pexels-photo-{photo_id}.jpeg"
    data: dict[str, Any] = {
        "id": photo_id,
        "width": 4000,
        "height": 2766,
        "url": f"https://www.pexels.com/photo/team-meeting-{photo_id}/",
        "photographer": "Jane Doe",
        "photographer_url": "https://www.pexels.com/@jane-doe",
        "photographer_id": 42,
        "avg_color": "#7A6B5C",
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
        "alt": "People around a table in a bright office",
    }
    data.update(overrides)
    return data


def search_json(*photos: dict[str, Any], total: int | None = None) -> dict[str, Any]:
    items = list(photos) if photos else [photo_json(101), photo_json(202)]
    return {
        "total_results": len(items) if total is None else total,
        "page": 1,
        "per_page": 5,
        "photos": items,
        "next_page": f"{BASE}/search/?page=2&per_page=5&query=office",
    }


RATE_HEADERS = {
    "X-Ratelimit-Limit": "20000",
    "X-Ratelimit-Remaining": "19684",
    "X-Ratelimit-Reset": "1767225600",
}


class FakePexels:
    """Answers /v1/search and image URLs; records every request it sees."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.search_body: dict[str, Any] = search_json()
        self.search_headers: dict[str, str] = dict(RATE_HEADERS)
        self.search_handler: Handler | None = None
        self.image_handler: Handler | None = None
        self.image = jpeg()

    def searches(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path.endswith("/search")]

    def downloads(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.host == "images.pexels.test"]

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.host == "api.pexels.test" and request.url.path == "/v1/search":
            if self.search_handler is not None:
                return await _maybe_await(self.search_handler(request))
            return httpx.Response(200, json=self.search_body, headers=self.search_headers)
        if request.url.host == "images.pexels.test":
            if self.image_handler is not None:
                return await _maybe_await(self.image_handler(request))
            return httpx.Response(200, content=self.image, headers={"content-type": "image/jpeg"})
        return httpx.Response(404, text="not found")


async def _maybe_await(value: Any) -> httpx.Response:
    if isinstance(value, httpx.Response):
        return value
    result: httpx.Response = await value
    return result


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class BrokenStream(httpx.AsyncByteStream):
    """A body that sends some bytes, then the connection drops."""

    def __init__(self, first: bytes) -> None:
        self.first = first

    async def __aiter__(self):  # type: ignore[no-untyped-def]
        yield self.first
        raise httpx.ReadError("connection reset by peer")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def _key_never_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """The key must not appear in any log line of any logger, in any test here."""
    caplog.set_level(logging.DEBUG)
    yield
    assert KEY not in caplog.text
    for record in caplog.records:
        assert KEY not in record.getMessage()
        assert KEY not in repr(record.args)


@pytest.fixture
def fake() -> FakePexels:
    return FakePexels()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_client(fake: FakePexels, clock: FakeClock) -> Callable[..., PexelsClient]:
    def make(**kwargs: Any) -> PexelsClient:
        http = httpx.AsyncClient(transport=httpx.MockTransport(fake))
        kwargs.setdefault("clock", clock)
        return PexelsClient(KEY, base_url=BASE, http=http, **kwargs)

    return make


@pytest.fixture
def client(make_client: Callable[..., PexelsClient]) -> PexelsClient:
    return make_client()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ImageStore]:
    with ImageStore(tmp_path / "images") as image_store:
        yield image_store


def _files(store: ImageStore) -> set[str]:
    return set(os.listdir(store.output_dir))


def _assert_no_key(exc: BaseException) -> None:
    assert KEY not in str(exc)
    assert KEY not in repr(exc)
    assert KEY not in str(getattr(exc, "message", ""))
    # Nothing upstream (HTML, a body) is passed through either.
    assert "<" not in str(exc)


def _request(**kwargs: Any) -> StockSearchRequest:
    kwargs.setdefault("query", "team meeting")
    return StockSearchRequest(**kwargs)


# --------------------------------------------------------------------------- search


async def test_search_parses_photos_and_attribution(client: PexelsClient) -> None:
    result = await client.search(_request())

    assert result.query == "team meeting"
    assert result.total_results == 2
    assert result.page == 1 and result.per_page == 5
    assert result.cached is False
    assert [p.id for p in result.photos] == [101, 202]
    photo = result.photos[0]
    assert photo.url == "https://www.pexels.com/photo/team-meeting-101/"
    assert photo.photographer == "Jane Doe"
    assert photo.photographer_url == "https://www.pexels.com/@jane-doe"
    assert photo.alt == "People around a table in a bright office"
    assert (photo.width, photo.height) == (4000, 2766)
    assert photo.avg_color == "#7A6B5C"
    assert set(photo.src) >= {"original", "large2x", "large", "medium", "portrait", "landscape"}

    assert attribution_text(photo) == (
        "Photo by Jane Doe (https://www.pexels.com/@jane-doe) on Pexels "
        "(https://www.pexels.com/photo/team-meeting-101/)"
    )
    assert attribution_text(photo).startswith("Photo by Jane Doe ")
    assert attribution_markdown(photo) == (
        "Photo by [Jane Doe](https://www.pexels.com/@jane-doe) on "
        "[Pexels](https://www.pexels.com/photo/team-meeting-101/)"
    )
    assert KEY not in result.model_dump_json()


async def test_search_sends_params_and_the_key_in_authorization(
    client: PexelsClient, fake: FakePexels
) -> None:
    await client.search(
        _request(
            query="red bicycle",
            orientation="landscape",
            size="large",
            color="red",
            per_page=12,
            page=3,
        )
    )

    (request,) = fake.searches()
    assert request.method == "GET"
    assert str(request.url).startswith(f"{BASE}/search?")
    assert dict(request.url.params) == {
        "query": "red bicycle",
        "orientation": "landscape",
        "size": "large",
        "color": "red",
        "per_page": "12",
        "page": "3",
    }
    assert request.headers["Authorization"] == KEY  # plain key, as Pexels wants
    assert request.headers["User-Agent"] == USER_AGENT
    assert USER_AGENT.startswith("sdxl-mcp/")


async def test_search_omits_unset_filters(client: PexelsClient, fake: FakePexels) -> None:
    await client.search(_request(query="office"))

    (request,) = fake.searches()
    assert dict(request.url.params) == {"query": "office", "per_page": "5", "page": "1"}


async def test_rate_limit_headers_are_kept_and_reported(client: PexelsClient) -> None:
    assert client.rate_limit is None

    result = await client.search(_request())

    assert client.rate_limit == RateLimit(limit=20000, remaining=19684, reset=1767225600.0)
    assert result.rate_limit_remaining == 19684
    status = client.status()
    assert status["rate_limit"]["remaining"] == 19684
    assert status["rate_limit"]["reset_utc"].startswith("2026-01-01T00:00:00")
    assert KEY not in json.dumps(status)


async def test_search_without_rate_limit_headers_reports_none(
    client: PexelsClient, fake: FakePexels
) -> None:
    fake.search_headers = {}
    result = await client.search(_request())
    assert client.rate_limit is None
    assert result.rate_limit_remaining is None


async def test_repeated_search_is_cached_until_the_ttl(
    make_client: Callable[..., PexelsClient], fake: FakePexels, clock: FakeClock
) -> None:
    client = make_client(cache_ttl_s=60.0)
    first = await client.search(_request(query="team meeting", download=True))

    clock.now += 59.0
    # Same search: other spacing/case and another download flag do not change it.
    second = await client.search(_request(query="Team   Meeting", download=False))
    assert len(fake.searches()) == 1
    assert second.cached is True
    assert second.query == "Team   Meeting"
    assert second.photos == first.photos
    assert second.rate_limit_remaining == 19684

    # Another page is another search.
    await client.search(_request(query="team meeting", page=2))
    assert len(fake.searches()) == 2

    clock.now += 2.0  # past the TTL
    third = await client.search(_request(query="team meeting"))
    assert len(fake.searches()) == 3
    assert third.cached is False


async def test_cached_results_cannot_be_mutated_by_callers(client: PexelsClient) -> None:
    first = await client.search(_request())
    first.photos.clear()
    second = await client.search(_request())
    assert second.cached is True
    assert len(second.photos) == 2


async def test_cache_is_bounded(make_client: Callable[..., PexelsClient], fake: FakePexels) -> None:
    client = make_client(cache_size=2)
    for query in ("a cat", "a dog", "a cow"):
        await client.search(_request(query=query))
    assert client.status()["cached_searches"] == 2
    await client.search(_request(query="a cat"))  # evicted: asks again
    assert len(fake.searches()) == 4


async def test_zero_ttl_disables_the_cache(
    make_client: Callable[..., PexelsClient], fake: FakePexels
) -> None:
    client = make_client(cache_ttl_s=0)
    await client.search(_request())
    await client.search(_request())
    assert len(fake.searches()) == 2


async def test_photos_with_null_alt_are_read_and_broken_entries_skipped(
    client: PexelsClient, fake: FakePexels
) -> None:
    fake.search_body = search_json(photo_json(7, alt=None, avg_color=None), {"id": "oops"})
    result = await client.search(_request())
    assert [p.id for p in result.photos] == [7]
    assert result.photos[0].alt == ""


async def test_no_match_is_an_empty_result_not_an_error(
    client: PexelsClient, fake: FakePexels
) -> None:
    fake.search_body = {"total_results": 0, "page": 1, "per_page": 5, "photos": []}
    result = await client.search(_request(query="zxqv"))
    assert result.photos == [] and result.total_results == 0


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize("key", [None, "", "   "])
def test_no_key_is_not_configured(key: str | None) -> None:
    http = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(500)))
    with pytest.raises(StockNotConfigured) as info:
        PexelsClient(key, base_url=BASE, http=http)
    assert str(info.value) == "PEXELS_API_KEY is not set: get a free key at pexels.com/api"
    assert info.value.retryable is False


def test_key_that_cannot_be_sent_is_refused_without_echoing_it() -> None:
    http = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(500)))
    bad = f"{KEY}\r\nX-Injected: 1"
    with pytest.raises(StockNotConfigured) as info:
        PexelsClient(bad, base_url=BASE, http=http)
    _assert_no_key(info.value)
    assert "PEXELS_API_KEY" in str(info.value)


def test_bad_base_url_is_not_configured() -> None:
    http = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(500)))
    with pytest.raises(StockNotConfigured, match="PEXELS_BASE_URL"):
        PexelsClient(KEY, base_url="ftp://example.com", http=http)


def test_repr_never_shows_the_key(client: PexelsClient) -> None:
    assert KEY not in repr(client)
    assert KEY not in str(vars(client).get("_search_url"))


async def test_default_http_client_has_timeouts_redirects_and_user_agent() -> None:
    http = default_http_client()
    try:
        assert http.timeout.connect == 5.0
        assert http.timeout.read == 20.0
        assert http.follow_redirects is True
        assert http.headers["User-Agent"] == USER_AGENT
    finally:
        await http.aclose()


# --------------------------------------------------------------------------- faults


async def _sleep_forever(request: httpx.Request) -> httpx.Response:
    await anyio.sleep(30)
    return httpx.Response(200)


def _raise(exc_type: type[httpx.TransportError], text: str) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc_type(text, request=request)

    return handler


HTML_PAGE = "<html><head><title>502 Bad Gateway</title></head><body>cloudflare</body></html>"

SEARCH_FAULTS: dict[str, tuple[Handler, type[StockError], bool, str]] = {
    "401": (
        lambda r: httpx.Response(401, json={"error": "Unauthorized"}),
        StockAuthError,
        False,
        "Pexels rejected the API key (HTTP 401): check PEXELS_API_KEY.",
    ),
    "403": (
        lambda r: httpx.Response(403, text="Forbidden"),
        StockAuthError,
        False,
        "Pexels rejected the API key (HTTP 403): check PEXELS_API_KEY.",
    ),
    "429 without headers": (
        lambda r: httpx.Response(429, text="Too Many Requests"),
        StockRateLimited,
        True,
        "try again in an hour",
    ),
    "500": (
        lambda r: httpx.Response(500, text="Internal Server Error"),
        StockUnavailable,
        True,
        "Pexels is unavailable (HTTP 500); try again in a minute.",
    ),
    "502 html": (
        lambda r: httpx.Response(502, html=HTML_PAGE),
        StockUnavailable,
        True,
        "Pexels is unavailable (HTTP 502); try again in a minute.",
    ),
    "200 html page": (
        lambda r: httpx.Response(200, html=HTML_PAGE),
        StockUnavailable,
        True,
        "Pexels is unavailable (HTTP 200, an HTML page); try again in a minute.",
    ),
    "html without content type": (
        lambda r: httpx.Response(200, content=HTML_PAGE.encode()),
        StockUnavailable,
        True,
        "an HTML page",
    ),
    "400": (
        lambda r: httpx.Response(400, json={"error": "bad"}),
        StockError,
        False,
        "Pexels refused the search (HTTP 400)",
    ),
    "read timeout": (
        _raise(httpx.ReadTimeout, "The read operation timed out"),
        StockUnavailable,
        True,
        "timed out",
    ),
    "connect timeout": (
        _raise(httpx.ConnectTimeout, "timed out"),
        StockUnavailable,
        True,
        "timed out",
    ),
    "connect error": (
        _raise(httpx.ConnectError, "[Errno 111] Connection refused"),
        StockUnavailable,
        True,
        "Could not connect to Pexels",
    ),
    "connect error mentioning the key": (
        _raise(httpx.ConnectError, f"proxy said: bad header Authorization: {KEY}"),
        StockUnavailable,
        True,
        "Could not connect to Pexels",
    ),
    "remote protocol error": (
        _raise(httpx.RemoteProtocolError, "peer closed connection"),
        StockUnavailable,
        True,
        "connection to Pexels failed",
    ),
    "malformed json": (
        lambda r: httpx.Response(
            200, content=b'{"photos": [', headers={"content-type": "application/json"}
        ),
        StockUnavailable,
        True,
        "Pexels sent a response this client cannot read",
    ),
    "not json at all": (
        lambda r: httpx.Response(200, text="hello"),
        StockUnavailable,
        True,
        "Pexels sent a response this client cannot read",
    ),
    "json without photos": (
        lambda r: httpx.Response(200, json={"total_results": 3, "page": 1}),
        StockUnavailable,
        True,
        "Pexels sent a response this client cannot read",
    ),
    "json list": (
        lambda r: httpx.Response(200, json=[1, 2, 3]),
        StockUnavailable,
        True,
        "Pexels sent a response this client cannot read",
    ),
    "photos missing fields": (
        lambda r: httpx.Response(200, json={"photos": [{"id": 1}, {"url": "x"}]}),
        StockUnavailable,
        True,
        "Pexels sent a response this client cannot read",
    ),
    "hangs past the hard cap": (
        _sleep_forever,
        StockUnavailable,
        True,
        "timed out",
    ),
}


@pytest.mark.parametrize("case", list(SEARCH_FAULTS))
async def test_search_faults_are_clear_errors_without_the_key(
    case: str, make_client: Callable[..., PexelsClient], fake: FakePexels
) -> None:
    handler, error_class, retryable, words = SEARCH_FAULTS[case]
    fake.search_handler = handler
    client = make_client(call_timeout_s=0.2)

    started = time.monotonic()
    with pytest.raises(error_class) as info:
        await client.search(_request())
    assert time.monotonic() - started < 5

    exc = info.value
    assert type(exc) is error_class
    assert exc.retryable is retryable
    assert words in str(exc)
    _assert_no_key(exc)
    assert "cloudflare" not in str(exc) and "Bad Gateway" not in str(exc)
    # A failure is not cached: the next call asks again.
    fake.search_handler = None
    result = await client.search(_request())
    assert result.cached is False


async def test_429_with_ratelimit_reset_gives_retry_after(
    client: PexelsClient, fake: FakePexels
) -> None:
    reset = int(time.time()) + 600
    fake.search_handler = lambda r: httpx.Response(
        429,
        text="Too Many Requests",
        headers={
            "X-Ratelimit-Limit": "200",
            "X-Ratelimit-Remaining": "0",
            "X-Ratelimit-Reset": str(reset),
        },
    )
    with pytest.raises(StockRateLimited) as info:
        await client.search(_request())

    exc = info.value
    assert exc.retryable is True
    assert exc.retry_after_s is not None and 590 <= exc.retry_after_s <= 601
    assert "try again in about 10 minutes" in str(exc)
    assert "UTC" in str(exc)
    _assert_no_key(exc)
    assert client.rate_limit is not None and client.rate_limit.remaining == 0


async def test_429_with_retry_after_header(client: PexelsClient, fake: FakePexels) -> None:
    fake.search_handler = lambda r: httpx.Response(429, headers={"Retry-After": "30"})
    with pytest.raises(StockRateLimited) as info:
        await client.search(_request())
    assert info.value.retry_after_s == 30.0
    assert "try again in 30 seconds" in str(info.value)


async def test_used_up_quota_fails_fast_without_a_request(
    client: PexelsClient, fake: FakePexels
) -> None:
    reset = int(time.time()) + 3 * 86400
    fake.search_headers = {
        "X-Ratelimit-Limit": "20000",
        "X-Ratelimit-Remaining": "0",
        "X-Ratelimit-Reset": str(reset),
    }
    await client.search(_request(query="first"))

    with pytest.raises(StockRateLimited) as info:
        await client.search(_request(query="second"))
    assert len(fake.searches()) == 1
    assert info.value.retry_after_s is not None and info.value.retry_after_s > 86400
    assert "quota is used up" in str(info.value)
    # The cached first query is still answered.
    assert (await client.search(_request(query="first"))).cached is True


async def test_errors_keep_no_chained_exception_with_the_request(
    client: PexelsClient, fake: FakePexels
) -> None:
    fake.search_handler = _raise(httpx.ConnectError, "refused")
    with pytest.raises(StockUnavailable) as info:
        await client.search(_request())
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__ is True


# --------------------------------------------------------------------------- download


async def _one_photo(client: PexelsClient) -> PexelsPhoto:
    return (await client.search(_request())).photos[0]


async def test_download_saves_the_photo_in_the_store(
    client: PexelsClient, fake: FakePexels, store: ImageStore
) -> None:
    photo = await _one_photo(client)

    downloaded = await client.download(photo, store)

    path = Path(downloaded.path)
    assert path.is_absolute()
    assert path.parent == store.output_dir
    assert path.name == "pexels_101.jpg"
    assert path.read_bytes() == fake.image
    assert downloaded.photo_id == 101
    assert downloaded.cached is False
    assert downloaded.source_url == photo.src["large2x"]
    assert downloaded.attribution == attribution_text(photo)
    assert (downloaded.width, downloaded.height) == (188, 130)  # the file, not the original

    (image_request,) = fake.downloads()
    assert "Authorization" not in image_request.headers  # the key stays with the API
    assert image_request.headers["User-Agent"] == USER_AGENT

    record = store.catalog.find_by_source_id("pexels", "101")
    assert record is not None
    assert record.source == "pexels"
    assert record.path == path
    assert record.prompt == photo.alt
    assert record.result_json is None
    assert (record.width, record.height) == (188, 130)
    assert record.parameters["photographer"] == "Jane Doe"
    assert record.parameters["photographer_url"] == "https://www.pexels.com/@jane-doe"
    assert record.parameters["page_url"] == photo.url
    assert record.parameters["src_url"] == photo.src["large2x"]
    assert record.parameters["attribution"] == downloaded.attribution
    assert record.sha256 == hashlib.sha256(fake.image).hexdigest()
    assert store.resolve_name(path.name) == path
    assert not [n for n in _files(store) if n.startswith(TEMP_PREFIX)]


async def test_second_download_of_a_photo_makes_no_request(
    client: PexelsClient, fake: FakePexels, store: ImageStore
) -> None:
    photo = await _one_photo(client)
    first = await client.download(photo, store)
    files = _files(store)

    second = await client.download(photo, store)

    assert len(fake.downloads()) == 1
    assert second.cached is True
    assert second.path == first.path
    assert second.attribution == first.attribution
    assert _files(store) == files


async def test_dedup_survives_a_new_client(
    make_client: Callable[..., PexelsClient], fake: FakePexels, store: ImageStore
) -> None:
    photo = await _one_photo(make_client())
    await make_client().download(photo, store)
    again = await make_client().download(photo, store)
    assert again.cached is True
    assert len(fake.downloads()) == 1


async def test_concurrent_downloads_of_one_photo_fetch_it_once(
    client: PexelsClient, fake: FakePexels, store: ImageStore
) -> None:
    photo = await _one_photo(client)
    results = []

    async def grab() -> None:
        results.append(await client.download(photo, store))

    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(grab)

    assert len(fake.downloads()) == 1
    assert len({r.path for r in results}) == 1
    assert sorted(r.cached for r in results) == [False, True, True, True]


async def test_a_bigger_wanted_size_downloads_a_bigger_variant(
    client: PexelsClient, fake: FakePexels, store: ImageStore
) -> None:
    photo = await _one_photo(client)
    small = await client.download(photo, store)  # large2x, here 188x130

    fake.image = jpeg(400, 276, "blue")
    big = await client.download(photo, store, width=2048, height=1024)

    assert big.cached is False
    assert big.source_url == photo.src["original"]
    assert big.path != small.path and Path(big.path).name == "pexels_101-1.jpg"
    assert (await client.download(photo, store, width=2048, height=1024)).cached is True


async def test_redirected_image_url_is_followed(
    fake: FakePexels, store: ImageStore, clock: FakeClock
) -> None:
    def image(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/cdn/"):
            return httpx.Response(200, content=fake.image, headers={"content-type": "image/jpeg"})
        return httpx.Response(302, headers={"Location": f"{IMAGES}/cdn/{request.url.path}"})

    fake.image_handler = image
    http = default_http_client(transport=httpx.MockTransport(fake))
    try:
        client = PexelsClient(KEY, base_url=BASE, http=http, clock=clock)
        downloaded = await client.download(await _one_photo(client), store)
    finally:
        await http.aclose()
    assert Path(downloaded.path).read_bytes() == fake.image
    assert len(fake.downloads()) == 2


async def test_search_and_download_fills_downloaded(
    client: PexelsClient, fake: FakePexels, store: ImageStore
) -> None:
    result = await client.search_and_download(_request(orientation="portrait"), store)
    assert result.downloaded is not None
    assert result.downloaded.photo_id == 101
    assert result.downloaded.source_url == result.photos[0].src["portrait"]
    assert Path(result.downloaded.path).is_file()

    no_download = await client.search_and_download(_request(download=False), store)
    assert no_download.downloaded is None
    assert len(fake.downloads()) == 1


def _broken_body(request: httpx.Request) -> httpx.Response:
    return httpx.Response(
        200, headers={"content-type": "image/jpeg"}, stream=BrokenStream(jpeg()[:500])
    )


DOWNLOAD_FAULTS: dict[str, tuple[Handler, type[StockError], bool, str]] = {
    "breaks off half way": (
        _broken_body,
        StockUnavailable,
        True,
        "connection to Pexels failed while downloading the photo",
    ),
    "shorter than content-length": (
        lambda r: httpx.Response(
            200,
            content=jpeg()[:300],
            headers={"content-type": "image/jpeg", "content-length": "1500"},
        ),
        StockUnavailable,
        True,
        "broke off half way",
    ),
    "404": (
        lambda r: httpx.Response(404, text="gone"),
        StockUnavailable,
        True,
        "could not be downloaded (HTTP 404)",
    ),
    "503": (
        lambda r: httpx.Response(503, html=HTML_PAGE),
        StockUnavailable,
        True,
        "Pexels is unavailable (HTTP 503)",
    ),
    "html page with 200": (
        lambda r: httpx.Response(200, html=HTML_PAGE),
        StockUnavailable,
        True,
        "Pexels is unavailable (HTTP 200",
    ),
    "not an image": (
        lambda r: httpx.Response(
            200, content=b"\x00garbage" * 50, headers={"content-type": "image/jpeg"}
        ),
        StockUnavailable,
        True,
        "was not an image",
    ),
    "read timeout": (
        _raise(httpx.ReadTimeout, "timed out"),
        StockUnavailable,
        True,
        "timed out",
    ),
    "connect error": (
        _raise(httpx.ConnectError, "refused"),
        StockUnavailable,
        True,
        "Could not connect",
    ),
    "hangs past the hard cap": (
        _sleep_forever,
        StockUnavailable,
        True,
        "timed out",
    ),
    "larger than the cap": (
        lambda r: httpx.Response(
            200, content=b"\xff" * 4096, headers={"content-type": "image/jpeg"}
        ),
        StockError,
        False,
        "larger than",
    ),
}


@pytest.mark.parametrize("case", list(DOWNLOAD_FAULTS))
async def test_download_faults_leave_no_file(
    case: str,
    make_client: Callable[..., PexelsClient],
    fake: FakePexels,
    store: ImageStore,
) -> None:
    handler, error_class, retryable, words = DOWNLOAD_FAULTS[case]
    client = make_client(download_timeout_s=0.2, max_download_bytes=2048)
    photo = await _one_photo(client)
    fake.image_handler = handler
    before = _files(store)
    catalogued = store.catalog.count()

    with pytest.raises(error_class) as info:
        await client.download(photo, store)

    exc = info.value
    assert type(exc) is error_class
    assert exc.retryable is retryable
    assert words in str(exc)
    _assert_no_key(exc)
    after = _files(store)
    assert after == before, f"new files: {after - before}"
    assert not [n for n in after if n.startswith(TEMP_PREFIX)]
    assert not [n for n in after if n.startswith("pexels_")]
    assert store.catalog.count() == catalogued
    assert store.catalog.find_by_source_id("pexels", str(photo.id)) is None

    # The next try, with Pexels back, works.
    fake.image_handler = None
    fake.image = jpeg(40, 30)
    assert (await client.download(photo, store)).cached is False


# --------------------------------------------------------------------------- src sizes


def _photo(width: int = 4000, height: int = 2766, **src: str) -> PexelsPhoto:
    data = photo_json(5, width=width, height=height)
    if src:
        data["src"] = src
    return PexelsPhoto.model_validate(data)


@pytest.mark.parametrize(
    ("width", "height", "orientation", "expected"),
    [
        (None, None, None, "large2x"),
        (None, None, "portrait", "portrait"),
        (None, None, "landscape", "landscape"),
        (None, None, "square", "large2x"),
        (300, 200, None, "medium"),
        (900, 600, None, "large"),
        (1024, 1024, None, "large2x"),  # large2x of a 4000x2766 photo is 1880x1300
        (1024, 1400, None, "original"),
        (1600, 1024, "portrait", "large2x"),  # a wanted size beats the orientation crop
        (1880, None, None, "large2x"),
        (2048, 1024, None, "original"),
    ],
)
def test_choose_src_size(
    width: int | None, height: int | None, orientation: str | None, expected: str
) -> None:
    assert (
        choose_src_size(_photo(), width=width, height=height, orientation=orientation) == expected
    )


def test_choose_src_size_falls_back_to_what_exists() -> None:
    photo = _photo(large="https://img/l.jpg", tiny="https://img/t.jpg")
    assert choose_src_size(photo) == "large"
    assert choose_src_size(photo, width=4000) == "large"
    with pytest.raises(StockUnavailable):
        choose_src_size(_photo().model_copy(update={"src": {}}))


def test_attribution_cleans_names_and_escapes_markdown() -> None:
    photo = _photo().model_copy(update={"photographer": "  Ann\n[the] Lee\t"})
    assert attribution_text(photo).startswith("Photo by Ann [the] Lee (https://")
    assert "[Ann \\[the\\] Lee](" in attribution_markdown(photo)
