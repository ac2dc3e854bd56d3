"""PexelsClient faults, against the fake Pexels at the httpx transport.

Every way a search or a photo fetch can fail is one Stock* error with one
actionable sentence, the right class (retryable or not, the caller's or
upstream's), no upstream body and never the key; a failure is not cached.
The autouse fixture checks the key never reaches a log record.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from sdxl_mcp.errors import (
    StockAuthError,
    StockError,
    StockRateLimited,
    StockRequestRejected,
    StockUnavailable,
    status_for_code,
)
from sdxl_mcp.stock.pexels import PexelsClient
from tests.fake_pexels import BrokenStream, FakePexels, jpeg

# --------------------------------------------------------------------------- fixtures
# The shared fixtures (fake, clock, make_client, client, the key check), by name.
from tests.helpers_pexels import (  # noqa: F401
    HTML_PAGE,
    KEY,
    FakeClock,
    Handler,
    _key_never_logged,
    client,
    client_for,
    clock,
    fake,
    key_never_logged,
    make_client,
    make_fake,
    photo_json,
)
from tests.helpers_pexels import assert_no_key as _assert_no_key
from tests.helpers_pexels import raising as _raise
from tests.helpers_pexels import request as _request
from tests.helpers_pexels import sleep_forever as _sleep_forever

# --------------------------------------------------------------------------- search faults


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
        StockRequestRejected,
        False,
        "Pexels refused the search (HTTP 400); check the query and the "
        "orientation, size and color filters.",
    ),
    "404": (
        lambda r: httpx.Response(404, json={"error": "not found"}),
        StockRequestRejected,
        False,
        "Pexels refused the search (HTTP 404)",
    ),
    "422": (
        lambda r: httpx.Response(422, json={"error": "per_page must be 1-80"}),
        StockRequestRejected,
        False,
        "Pexels refused the search (HTTP 422)",
    ),
    "304 unexpected": (
        lambda r: httpx.Response(304),
        StockUnavailable,
        True,
        "Pexels sent an unexpected answer (HTTP 304); try again in a minute.",
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
    assert len(fake.searches) == 1
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




@pytest.mark.parametrize("status", [400, 404, 422])
async def test_a_refused_search_is_the_callers_to_fix_not_an_upstream_failure(
    client: PexelsClient, fake: FakePexels, status: int
) -> None:
    fake.search_handler = lambda r: httpx.Response(status, json={"error": "bad query"})
    with pytest.raises(StockRequestRejected) as info:
        await client.search(_request())
    exc = info.value
    assert isinstance(exc, StockError)
    assert exc.retryable is False
    assert 400 <= exc.http_status < 500  # REST answers a client-side status, not 502
    assert status_for_code(exc.code) == exc.http_status
    assert str(exc) == (
        f"Pexels refused the search (HTTP {status}); check the query and the "
        "orientation, size and color filters."
    )


# --------------------------------------------------------------------------- photo faults


@pytest.mark.parametrize("status", [401, 403, 404, 410])
async def test_a_photo_url_refused_is_unavailable_not_a_key_problem(
    client: PexelsClient, fake: FakePexels, status: int
) -> None:
    fake.image_handler = lambda r: httpx.Response(status, text="gone")
    with pytest.raises(StockUnavailable) as info:
        await client.fetch_photo(photo_json()["src"]["original"])
    assert type(info.value) is StockUnavailable
    assert str(info.value) == (
        f"The Pexels photo could not be downloaded (HTTP {status}); "
        "search again or pick another photo."
    )


async def test_fetch_photo_refuses_what_is_not_an_http_url(client: PexelsClient) -> None:
    for url in ("", "ftp://images.pexels.test/x.jpg", "not a url"):
        with pytest.raises(StockUnavailable, match="cannot read"):
            await client.fetch_photo(url)


FETCH_FAULTS: dict[str, tuple[Handler, type[StockError], str]] = {
    "breaks off half way": (
        lambda r: httpx.Response(200, headers={"content-type": "image/jpeg"},
                                 stream=BrokenStream(jpeg(188, 130)[:500])),
        StockUnavailable,
        "connection to Pexels failed while downloading the photo",
    ),
    "web page": (
        lambda r: httpx.Response(200, html=HTML_PAGE),
        StockUnavailable,
        "Pexels is unavailable (HTTP 200, a web page instead of the photo)",
    ),
    "declared too big": (
        lambda r: httpx.Response(200, content=b"\xff" * 10,
                                 headers={"content-type": "image/jpeg",
                                          "content-length": str(10**9)}),
        StockError,
        "larger than 2048 bytes",
    ),
    "hangs past the hard cap": (_sleep_forever, StockUnavailable, "timed out (over 0.2 s)"),
}


@pytest.mark.parametrize("case", list(FETCH_FAULTS))
async def test_fetch_photo_faults(
    case: str, make_client: Callable[..., PexelsClient], fake: FakePexels
) -> None:
    handler, error_class, words = FETCH_FAULTS[case]
    client = make_client(download_timeout_s=0.2, max_download_bytes=2048)
    fake.image_handler = handler
    with pytest.raises(error_class) as info:
        await client.fetch_photo(photo_json()["src"]["original"])
    assert type(info.value) is error_class
    assert words in str(info.value)
    _assert_no_key(info.value)
