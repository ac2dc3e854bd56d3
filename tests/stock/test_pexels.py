"""PexelsClient against the fake Pexels at the httpx transport (FakePexels.transport()).

The client alone: search (parameters, cache, quota), configuration and
fetching a photo's bytes; every fault is in tests/stock/test_pexels_faults.py.
Saving photos is tests/library/test_stock_photos.py;
the plain helpers (attribution, sizes, rate limit, statuses) are
tests/stock/test_stock_helpers.py. Every test also checks, through an autouse
fixture, that the API key never shows up in any log record of any logger.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from sdxl_mcp.errors import StockNotConfigured
from sdxl_mcp.stock import RateLimit, attribution_markdown, attribution_text
from sdxl_mcp.stock.pexels import USER_AGENT, PexelsClient, default_http_client
from tests.fake_pexels import FakePexels

# --------------------------------------------------------------------------- fixtures
# The shared fixtures (fake, clock, make_client, client, the key check), by name.
from tests.helpers_pexels import (  # noqa: F401
    BASE,
    IMAGES,
    KEY,
    FakeClock,
    _key_never_logged,
    client,
    client_for,
    clock,
    fake,
    key_never_logged,
    make_client,
    make_fake,
    photo_json,
    search_json,
)
from tests.helpers_pexels import assert_no_key as _assert_no_key
from tests.helpers_pexels import request as _request

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

    (request,) = fake.searches
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

    (request,) = fake.searches
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
    assert len(fake.searches) == 1
    assert second.cached is True
    assert second.query == "Team   Meeting"
    assert second.photos == first.photos
    assert second.rate_limit_remaining == 19684

    # Another page is another search.
    await client.search(_request(query="team meeting", page=2))
    assert len(fake.searches) == 2

    clock.now += 2.0  # past the TTL
    third = await client.search(_request(query="team meeting"))
    assert len(fake.searches) == 3
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
    assert len(fake.searches) == 4


async def test_zero_ttl_disables_the_cache(
    make_client: Callable[..., PexelsClient], fake: FakePexels
) -> None:
    client = make_client(cache_ttl_s=0)
    await client.search(_request())
    await client.search(_request())
    assert len(fake.searches) == 2


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


# --------------------------------------------------------------------------- fetch_photo


async def test_fetch_photo_returns_the_bytes_without_the_key(
    client: PexelsClient, fake: FakePexels
) -> None:
    photo = (await client.search(_request())).photos[0]

    data, content_type = await client.fetch_photo(photo.src["large2x"])

    assert data == fake.image
    assert content_type == "image/jpeg"
    (image_request,) = fake.downloads
    assert str(image_request.url) == photo.src["large2x"]
    assert "Authorization" not in image_request.headers  # the key stays with the API
    assert image_request.headers["User-Agent"] == USER_AGENT


async def test_fetch_photo_follows_redirects(fake: FakePexels, clock: FakeClock) -> None:
    def image(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/cdn/"):
            return httpx.Response(200, content=fake.image, headers={"content-type": "image/jpeg"})
        return httpx.Response(302, headers={"Location": f"{IMAGES}/cdn/{request.url.path}"})

    fake.image_handler = image
    http = default_http_client(transport=fake.transport())
    try:
        client = PexelsClient(KEY, base_url=BASE, http=http, clock=clock)
        data, _ = await client.fetch_photo(photo_json()["src"]["original"])
    finally:
        await http.aclose()
    assert data == fake.image
    assert len(fake.downloads) == 2
