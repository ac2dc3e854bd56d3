"""PexelsClient: the Pexels v1 HTTP API, and nothing else.

It speaks the API over an injected ``httpx.AsyncClient`` (the caller owns and closes it;
:func:`default_http_client` builds one): searches under a time cap, with a rate-limit view
and a cache; photo bytes under a size and time cap. Every failure is a ``Stock*`` error with
one actionable sentence; no upstream body is passed on and the API key never appears in a
message, a log line or a result (details: docs/ARCHITECTURE.md "Guarantees").
No torch, no storage here.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import anyio
import httpx
from pydantic import SecretStr

from sdxl_mcp import __version__
from sdxl_mcp.errors import StockNotConfigured, StockUnavailable
from sdxl_mcp.schemas import StockSearchRequest, StockSearchResult
from sdxl_mcp.settings import (
    DEFAULT_PEXELS_BASE_URL,
    PEXELS_BASE_URL_INVALID,
    PEXELS_KEY_INVALID,
    PEXELS_KEY_MISSING,
    check_pexels_base_url,
    check_pexels_key,
)
from sdxl_mcp.stock.ratelimit import RateLimit, quota_error
from sdxl_mcp.stock.search import SearchCache, parse_search, search_params
from sdxl_mcp.stock.statuses import CANNOT_READ, error_for_status, unavailable
from sdxl_mcp.stock.transport import content_type_of, read_capped, read_photo, transport_error

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_BASE_URL", "KEY_MISSING_MESSAGE", "USER_AGENT", "PexelsClient",
           "default_http_client"]

DEFAULT_BASE_URL = DEFAULT_PEXELS_BASE_URL
USER_AGENT = f"sdxl-mcp/{__version__}"
KEY_MISSING_MESSAGE = PEXELS_KEY_MISSING

# A search answer is a few hundred kB at most (80 photos); anything bigger is wrong.
_MAX_SEARCH_BYTES = 5 * 1024 * 1024
_DEFAULT_MAX_DOWNLOAD_BYTES = 50 * 1024 * 1024
_DEFAULT_CACHE_SIZE = 256


def default_http_client(*, transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` fit for Pexels: 5 s connect / 20 s read timeouts,
    redirects followed (image URLs redirect), and the sdxl-mcp User-Agent.

    The caller owns it: close it with ``await client.aclose()``.
    """
    return httpx.AsyncClient(
        timeout=httpx.Timeout(20.0, connect=5.0),
        follow_redirects=True,
        headers={"User-Agent": USER_AGENT},
        limits=httpx.Limits(max_connections=10, max_keepalive_connections=5),
        transport=transport,
    )


class PexelsClient:
    """Async Pexels v1 client over an injected ``httpx.AsyncClient``.

    ``api_key`` empty or missing raises :class:`StockNotConfigured`. ``clock`` is
    the monotonic clock the search cache uses (tests inject one).
    """

    def __init__(
        self,
        api_key: str | SecretStr | None,
        *,
        base_url: str = DEFAULT_BASE_URL,
        http: httpx.AsyncClient,
        cache_ttl_s: float = 300.0,
        call_timeout_s: float = 30.0,
        download_timeout_s: float = 60.0,
        max_download_bytes: int = _DEFAULT_MAX_DOWNLOAD_BYTES,
        cache_size: int = _DEFAULT_CACHE_SIZE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        key = api_key.get_secret_value() if isinstance(api_key, SecretStr) else api_key
        if not (key or "").strip():
            raise StockNotConfigured(KEY_MISSING_MESSAGE)
        try:
            key = check_pexels_key(key or "")
        except ValueError:
            raise StockNotConfigured(f"PEXELS_API_KEY {PEXELS_KEY_INVALID}") from None
        try:
            url = httpx.URL(check_pexels_base_url(base_url))
        except (ValueError, TypeError, httpx.InvalidURL):
            message = f"SDXL_MCP_PEXELS_BASE_URL {PEXELS_BASE_URL_INVALID}"
            raise StockNotConfigured(message) from None
        if call_timeout_s <= 0 or download_timeout_s <= 0:
            raise ValueError("timeouts must be positive")
        if cache_ttl_s < 0 or cache_size < 0 or max_download_bytes <= 0:
            raise ValueError("cache_ttl_s, cache_size and max_download_bytes must be positive")
        self._api_key = key
        self.base_url = str(url).rstrip("/")
        self._search_url = f"{self.base_url}/search"
        self._http = http
        self._call_timeout_s = call_timeout_s
        self._download_timeout_s = download_timeout_s
        self._max_download_bytes = max_download_bytes
        self._cache = SearchCache(cache_ttl_s, cache_size, clock)
        #: The latest X-Ratelimit-* headers Pexels sent (None before the first answer).
        self.rate_limit: RateLimit | None = None

    def __repr__(self) -> str:  # never the key
        return f"PexelsClient(base_url={self.base_url!r})"

    def status(self) -> dict[str, Any]:
        """What ``gpu_status`` can report about Pexels (no key, of course)."""
        return {
            "configured": True,
            "base_url": self.base_url,
            "rate_limit": self.rate_limit.as_dict() if self.rate_limit else None,
            "cached_searches": len(self._cache),
        }

    def clear_cache(self) -> None:
        self._cache.clear()

    async def search(self, request: StockSearchRequest) -> StockSearchResult:
        """Search Pexels (``GET {base_url}/search``); repeated searches hit the cache.

        ``request.download`` is ignored here (downloading is the library's job).
        """
        remaining = self.rate_limit.remaining if self.rate_limit else None
        hit = self._cache.get(request)
        if hit is not None:
            logger.info("Pexels search %r: answered from the cache", request.query)
            left = remaining if remaining is not None else hit.rate_limit_remaining
            update = {"query": request.query, "cached": True, "rate_limit_remaining": left}
            return hit.model_copy(update=update)
        if (used_up := quota_error(self.rate_limit)) is not None:
            reset_utc = self.rate_limit.as_dict()["reset_utc"] if self.rate_limit else None
            logger.warning("Pexels quota used up; not searching until %s", reset_utc)
            raise used_up
        started = time.perf_counter()
        try:
            with anyio.fail_after(self._call_timeout_s):
                data = await self._get_search(search_params(request))
        except TimeoutError:
            logger.warning("Pexels search timed out after %g s", self._call_timeout_s)
            raise StockUnavailable(
                f"Pexels timed out (no answer within {self._call_timeout_s:g} s); "
                "try again in a minute."
            ) from None
        result = parse_search(data, request, self.rate_limit.remaining if self.rate_limit else None)
        self._cache.put(request, result)
        logger.info(
            "Pexels search %r (page %d): %d photo(s) of %d in %.2f s; quota left: %s",
            request.query,
            result.page,
            len(result.photos),
            result.total_results,
            time.perf_counter() - started,
            "unknown" if result.rate_limit_remaining is None else result.rate_limit_remaining,
        )
        return result

    async def fetch_photo(self, url: str) -> tuple[bytes, str]:
        """The whole body of photo ``url`` (bounded, time-capped) and its content type.

        No Authorization header: image URLs are public and on another host.
        """
        try:
            parsed: httpx.URL | None = httpx.URL(url)
        except (httpx.InvalidURL, TypeError):
            parsed = None
        if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
            raise StockUnavailable(CANNOT_READ)
        headers = {"User-Agent": USER_AGENT, "Accept": "image/*"}
        try:
            with anyio.fail_after(self._download_timeout_s):
                async with self._http.stream("GET", parsed, headers=headers) as response:
                    if error := error_for_status(response.status_code, response.headers, api=False):
                        raise error
                    data, content_type = await read_photo(response, self._max_download_bytes)
        except TimeoutError:
            logger.warning("Pexels photo download timed out after %g s", self._download_timeout_s)
            raise StockUnavailable(
                f"Downloading the Pexels photo timed out (over {self._download_timeout_s:g} s); "
                "try again in a minute."
            ) from None
        except httpx.HTTPError as exc:
            raise transport_error(exc, "downloading the photo", secret=self._api_key) from None
        return data, content_type

    # -- internals -----------------------------------------------------------

    async def _get_search(self, params: dict[str, str | int]) -> Any:
        """One GET /search; returns the decoded JSON or raises a Stock* error."""
        headers = {"Authorization": self._api_key, "User-Agent": USER_AGENT,
                   "Accept": "application/json"}
        try:
            async with self._http.stream(
                "GET", self._search_url, params=params, headers=headers
            ) as response:
                if (rate_limit := RateLimit.from_headers(response.headers)) is not None:
                    self.rate_limit = rate_limit
                if error := error_for_status(response.status_code, response.headers, api=True):
                    raise error
                content_type = content_type_of(response)
                if "html" in content_type:
                    raise unavailable(response.status_code, "an HTML page")
                if (body := await read_capped(response, _MAX_SEARCH_BYTES)) is None:
                    logger.warning("Pexels search answer is larger than %d bytes",
                                   _MAX_SEARCH_BYTES)
                    raise StockUnavailable(CANNOT_READ)
        except httpx.HTTPError as exc:
            raise transport_error(exc, "searching Pexels", secret=self._api_key) from None
        if body.lstrip()[:1] == b"<":
            raise unavailable(response.status_code, "an HTML page")
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError):
            logger.warning("Pexels answered HTTP %d with a body that is not JSON (%s, %d bytes)",
                           response.status_code, content_type or "no content type", len(body))
            raise StockUnavailable(CANNOT_READ) from None
