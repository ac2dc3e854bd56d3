"""A Pexels search, without the network: its query parameters, its answer, its cache.

Guarantees:

* :func:`search_params` sends only the filters that are set;
* :func:`parse_search` reads a ``/v1/search`` JSON answer into a
  :class:`~sdxl_mcp.schemas.StockSearchResult`: photos with a null ``alt`` are
  read (as ``""``), unreadable entries are skipped and logged, and an answer
  with no readable photo list is :class:`~sdxl_mcp.errors.StockUnavailable`;
* :class:`SearchCache` answers an identical search (query case and spacing
  ignored, ``download`` ignored) for ``ttl_s`` seconds of its clock, keeps at
  most ``size`` searches (least recently used dropped first) and hands out
  deep copies, so a caller cannot change what the next one gets.

No httpx, no I/O.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from sdxl_mcp.errors import StockUnavailable
from sdxl_mcp.schemas import PexelsPhoto, StockSearchRequest, StockSearchResult
from sdxl_mcp.stock.statuses import CANNOT_READ

logger = logging.getLogger(__name__)

__all__ = ["SearchCache", "parse_search", "search_params"]

_WS_RE = re.compile(r"\s+")

CacheKey = tuple[str, str | None, str | None, str | None, int, int]


def search_params(request: StockSearchRequest) -> dict[str, str | int]:
    """The ``GET /search`` query parameters: the set filters only."""
    params: dict[str, str | int | None] = {
        "query": request.query,
        "orientation": request.orientation,
        "size": request.size,
        "color": request.color,
        "per_page": request.per_page,
        "page": request.page,
    }
    return {key: value for key, value in params.items() if value is not None}


def _int_or(value: Any, default: int) -> int:
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return default


def _parse_photo(item: Any) -> PexelsPhoto:
    if not isinstance(item, dict):
        raise ValueError("photo entry is not an object")
    data = dict(item)
    if data.get("alt") is None:
        data["alt"] = ""
    src = data.get("src")
    data["src"] = (
        {str(k): v for k, v in src.items() if isinstance(v, str) and v}
        if isinstance(src, dict)
        else {}
    )
    return PexelsPhoto.model_validate(data)


def parse_search(
    data: Any, request: StockSearchRequest, rate_limit_remaining: int | None
) -> StockSearchResult:
    """The decoded JSON of a search answer as a result; StockUnavailable if unreadable."""
    if not isinstance(data, dict) or not isinstance(data.get("photos"), list):
        logger.warning("Pexels search answer has no 'photos' list")
        raise StockUnavailable(CANNOT_READ)
    photos: list[PexelsPhoto] = []
    skipped = 0
    for item in data["photos"]:
        try:
            photos.append(_parse_photo(item))
        except (ValidationError, ValueError, TypeError):
            skipped += 1
    if skipped:
        logger.warning("Skipped %d Pexels photo(s) this client cannot read", skipped)
        if not photos:
            raise StockUnavailable(CANNOT_READ)
    return StockSearchResult(
        query=request.query,
        page=_int_or(data.get("page"), request.page),
        per_page=_int_or(data.get("per_page"), request.per_page),
        total_results=_int_or(data.get("total_results"), len(photos)),
        photos=photos,
        rate_limit_remaining=rate_limit_remaining,
    )


def _cache_key(request: StockSearchRequest) -> CacheKey:
    """The request, normalised, minus ``download`` (it does not change the search)."""
    return (
        _WS_RE.sub(" ", request.query).strip().casefold(),
        request.orientation,
        request.size,
        request.color.lower().lstrip("#") if request.color else None,
        request.per_page,
        request.page,
    )


class SearchCache:
    """Recent search results by normalised request; ``clock`` is monotonic seconds."""

    def __init__(self, ttl_s: float, size: int, clock: Callable[[], float]) -> None:
        self._ttl_s = ttl_s
        self._size = size
        self._clock = clock
        self._entries: OrderedDict[CacheKey, tuple[float, StockSearchResult]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()

    def get(self, request: StockSearchRequest) -> StockSearchResult | None:
        """A copy of the fresh result for this search, or None."""
        key = _cache_key(request)
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, result = entry
        if self._clock() >= expires:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return result.model_copy(deep=True)

    def put(self, request: StockSearchRequest, result: StockSearchResult) -> None:
        if self._ttl_s <= 0 or self._size <= 0:
            return
        key = _cache_key(request)
        self._entries[key] = (self._clock() + self._ttl_s, result.model_copy(deep=True))
        self._entries.move_to_end(key)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)
