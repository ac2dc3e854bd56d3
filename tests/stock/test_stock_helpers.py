"""The Pexels helpers that need no network: src sizes, attribution, rate limit, statuses."""

from __future__ import annotations

import time

import pytest

from sdxl_mcp.errors import (
    StockAuthError,
    StockError,
    StockRateLimited,
    StockRequestRejected,
    StockUnavailable,
)
from sdxl_mcp.schemas import PexelsPhoto
from sdxl_mcp.stock import RateLimit, attribution_markdown, attribution_text, choose_src_size
from sdxl_mcp.stock.ratelimit import quota_error, rate_limited_error
from sdxl_mcp.stock.statuses import error_for_status
from tests.helpers_pexels import photo_json

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


# --------------------------------------------------------------------------- rate limit


def test_rate_limit_headers_are_read_leniently() -> None:
    headers = {"x-ratelimit-limit": "200", "x-ratelimit-remaining": "17",
               "x-ratelimit-reset": "1767225600"}
    assert RateLimit.from_headers(headers) == RateLimit(limit=200, remaining=17,
                                                        reset=1767225600.0)
    assert RateLimit.from_headers({}) is None
    odd = RateLimit.from_headers({"x-ratelimit-limit": "-1", "x-ratelimit-remaining": "nan",
                                  "x-ratelimit-reset": "soon"})
    assert odd is None
    partial = RateLimit.from_headers({"x-ratelimit-remaining": "3"})
    assert partial == RateLimit(limit=None, remaining=3, reset=None)
    assert partial.as_dict()["reset_utc"] is None


def test_rate_limited_error_prefers_retry_after_then_the_reset() -> None:
    assert rate_limited_error({"retry-after": "30"}).retry_after_s == 30.0
    reset = str(int(time.time()) + 600)
    error = rate_limited_error({"x-ratelimit-reset": reset})
    assert error.retry_after_s is not None and 590 <= error.retry_after_s <= 601
    bare = rate_limited_error({})
    assert bare.retry_after_s is None and "try again in an hour" in str(bare)


def test_quota_error_only_while_used_up_and_not_reset() -> None:
    later = time.time() + 3600
    assert quota_error(None) is None
    assert quota_error(RateLimit(limit=200, remaining=5, reset=later)) is None
    assert quota_error(RateLimit(limit=200, remaining=0, reset=time.time() - 5)) is None
    error = quota_error(RateLimit(limit=200, remaining=0, reset=later))
    assert isinstance(error, StockRateLimited)
    assert "quota is used up" in str(error) and error.retry_after_s is not None


# --------------------------------------------------------------------------- statuses


@pytest.mark.parametrize(
    ("status", "api", "expected"),
    [
        (200, True, None),
        (200, False, None),
        (401, True, StockAuthError),
        (403, True, StockAuthError),
        (400, True, StockRequestRejected),
        (404, True, StockRequestRejected),
        (422, True, StockRequestRejected),
        (429, True, StockRateLimited),
        (429, False, StockRateLimited),
        (500, True, StockUnavailable),
        (503, False, StockUnavailable),
        (302, True, StockUnavailable),
        # A photo URL carries no key: a refusal there is that photo, not the key.
        (401, False, StockUnavailable),
        (404, False, StockUnavailable),
    ],
)
def test_error_for_status_is_the_one_mapping(
    status: int, api: bool, expected: type[StockError] | None
) -> None:
    error = error_for_status(status, {}, api=api)
    if expected is None:
        assert error is None
    else:
        assert type(error) is expected
        assert error is not None and "\n" not in str(error)
