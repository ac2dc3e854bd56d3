"""Pexels stock photos: search (cached, rate-limit aware) and download into the store.

The client speaks the public Pexels v1 API over an injected ``httpx.AsyncClient``
(the caller owns it and closes it; :func:`default_http_client` builds one with
sensible timeouts). What it guarantees:

* ``GET {base_url}/search`` with the key in the ``Authorization`` header, the
  whole call capped at ``call_timeout_s`` on top of httpx's connect/read timeouts;
* results parsed into :class:`~sdxl_mcp.schemas.PexelsPhoto`; the latest
  ``X-Ratelimit-*`` headers kept in :attr:`PexelsClient.rate_limit`;
* identical searches within ``cache_ttl_s`` are answered from memory (``cached``);
* a photo is downloaded once: the catalog is asked for its Pexels id first; a
  download is streamed into memory (bounded) and only then published atomically
  by :meth:`~sdxl_mcp.storage.ImageStore.save_bytes`, so a failure half way
  leaves no file behind;
* every failure is a :mod:`sdxl_mcp.errors` ``Stock*`` error with one actionable
  sentence; no upstream body (HTML or otherwise) is passed on, and the API key
  never appears in a message, a log line or a result.

No torch here: httpx, pydantic, pillow and the stdlib.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import math
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import anyio
import anyio.to_thread
import httpx
from PIL import Image
from pydantic import SecretStr, ValidationError

from sdxl_mcp import __version__
from sdxl_mcp.errors import (
    StockAuthError,
    StockError,
    StockNotConfigured,
    StockRateLimited,
    StockUnavailable,
)
from sdxl_mcp.schemas import DownloadedPhoto, PexelsPhoto, StockSearchRequest, StockSearchResult
from sdxl_mcp.storage import CatalogRecord, ImageStore

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_BASE_URL",
    "KEY_MISSING_MESSAGE",
    "USER_AGENT",
    "PexelsClient",
    "RateLimit",
    "attribution_markdown",
    "attribution_text",
    "choose_src_size",
    "default_http_client",
]

DEFAULT_BASE_URL = "https://api.pexels.com/v1"
USER_AGENT = f"sdxl-mcp/{__version__}"
SOURCE = "pexels"

KEY_MISSING_MESSAGE = "PEXELS_API_KEY is not set: get a free key at pexels.com/api"
_CANNOT_READ = (
    "Pexels sent a response this client cannot read; try again later, "
    "or update sdxl-mcp if it keeps happening."
)
# Pexels' documented default quota, for messages when it does not say when to retry.
_DEFAULT_QUOTA_HINT = "the free plan allows 200 requests per hour and 20,000 per month"

# A search answer is a few hundred kB at most (80 photos); anything bigger is wrong.
_MAX_SEARCH_BYTES = 5 * 1024 * 1024
_DEFAULT_MAX_DOWNLOAD_BYTES = 50 * 1024 * 1024
_DEFAULT_CACHE_SIZE = 256

# Visible ASCII only: anything else cannot go into a header and would make
# h11 raise an error whose text contains the header value (the key).
_KEY_RE = re.compile(r"^[\x21-\x7e]+$")
_WS_RE = re.compile(r"\s+")

_SUFFIX_BY_FORMAT = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif"}
_SUFFIX_BY_CONTENT_TYPE = {
    "image/jpeg": ".jpg",
    "image/jpg": ".jpg",
    "image/png": ".png",
    "image/webp": ".webp",
    "image/gif": ".gif",
}

# The boxes Pexels' resized ``src`` variants fit into (width, height), largest
# last; ``original`` is the photo itself. portrait/landscape/tiny are crops.
_FITTED_SIZES: tuple[tuple[str, float, float], ...] = (
    ("medium", math.inf, 350),
    ("large", 940, 650),
    ("large2x", 1880, 1300),
)
_ALL_SIZES = (
    "original",
    "large2x",
    "large",
    "landscape",
    "portrait",
    "medium",
    "small",
    "tiny",
)


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


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


def _clean(text: str) -> str:
    """One line, no control characters (names end up in blog posts)."""
    return _WS_RE.sub(" ", "".join(c if c.isprintable() else " " for c in text)).strip()


def attribution_text(photo: PexelsPhoto) -> str:
    """The credit Pexels asks for, with links:
    ``Photo by NAME (PHOTOGRAPHER_URL) on Pexels (PHOTO_PAGE_URL)``."""
    name = _clean(photo.photographer) or "an unknown photographer"
    by = f"{name} ({photo.photographer_url.strip()})" if photo.photographer_url.strip() else name
    page = f" ({photo.url.strip()})" if photo.url.strip() else ""
    return f"Photo by {by} on Pexels{page}"


def attribution_markdown(photo: PexelsPhoto) -> str:
    """The same credit as Markdown: ``Photo by [NAME](URL) on [Pexels](PAGE)``."""
    name = _clean(photo.photographer) or "an unknown photographer"
    name = re.sub(r"([\\\[\]])", r"\\\1", name)
    by = f"[{name}]({photo.photographer_url.strip()})" if photo.photographer_url.strip() else name
    site = f"[Pexels]({photo.url.strip()})" if photo.url.strip() else "Pexels"
    return f"Photo by {by} on {site}"


def _fitted(photo: PexelsPhoto, box_w: float, box_h: float) -> tuple[float, float]:
    """The size of ``photo`` scaled to fit ``box`` (Pexels never upscales)."""
    if photo.width <= 0 or photo.height <= 0:
        return box_w, box_h
    scale = min(box_w / photo.width, box_h / photo.height, 1.0)
    return round(photo.width * scale), round(photo.height * scale)


def choose_src_size(
    photo: PexelsPhoto,
    *,
    width: int | None = None,
    height: int | None = None,
    orientation: str | None = None,
) -> str:
    """The ``src`` key to download.

    With a wanted size: the smallest uncropped variant at least that big
    (medium, large ~940 px, large2x ~1880 px), else ``original``. Without one:
    the ``portrait`` / ``landscape`` crop for that orientation, else ``large2x``.
    Falls back to whatever variant the photo has. Raises StockUnavailable when
    it has none.
    """
    available = [key for key in _ALL_SIZES if photo.src.get(key)]
    available += [key for key, url in photo.src.items() if url and key not in available]
    if not available:
        raise StockUnavailable(_CANNOT_READ)
    preference: list[str]
    if width or height:
        want_w, want_h = width or 0, height or 0
        preference = [
            key
            for key, box_w, box_h in _FITTED_SIZES
            if (fit := _fitted(photo, box_w, box_h))[0] >= want_w and fit[1] >= want_h
        ]
        preference += ["original", "large2x", "large"]
    elif orientation == "portrait":
        preference = ["portrait", "large2x", "original", "large"]
    elif orientation == "landscape":
        preference = ["landscape", "large2x", "original", "large"]
    else:
        preference = ["large2x", "original", "large"]
    return next((key for key in preference if key in available), available[0])


def _int_or(value: Any, default: int) -> int:
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return default


def _header_number(headers: Mapping[str, str], name: str) -> float | None:
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        value = float(raw.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _retry_after_header(raw: str | None, now: float) -> float | None:
    """Seconds from a ``Retry-After`` header (delta seconds or an HTTP date)."""
    if raw is None:
        return None
    raw = raw.strip()
    if raw.isdigit():
        return float(raw)
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def _epoch_to_delay(reset: float, now: float) -> float:
    # Pexels sends a UNIX timestamp; a small number can only be a delay in seconds.
    return reset if reset < 1_000_000_000 else max(0.0, reset - now)


def _describe_wait(seconds: float, now: float) -> str:
    at = datetime.fromtimestamp(now + seconds, UTC)
    if seconds < 90:
        return f"in {max(1, math.ceil(seconds))} seconds"
    if seconds < 2 * 3600:
        return f"in about {math.ceil(seconds / 60)} minutes (after {at:%H:%M} UTC)"
    return f"after {at:%Y-%m-%d %H:%M} UTC"


@dataclass(frozen=True)
class RateLimit:
    """The latest ``X-Ratelimit-*`` headers Pexels sent.

    ``limit`` and ``remaining`` count requests in the current quota period;
    ``reset`` is the UNIX time (seconds) when that period rolls over.
    """

    limit: int | None
    remaining: int | None
    reset: float | None

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> RateLimit | None:
        limit = _header_number(headers, "x-ratelimit-limit")
        remaining = _header_number(headers, "x-ratelimit-remaining")
        reset = _header_number(headers, "x-ratelimit-reset")
        if limit is None and remaining is None and reset is None:
            return None
        return cls(
            limit=None if limit is None else int(limit),
            remaining=None if remaining is None else int(remaining),
            reset=reset,
        )

    def seconds_until_reset(self, now: float | None = None) -> float | None:
        if self.reset is None:
            return None
        return _epoch_to_delay(self.reset, time.time() if now is None else now)

    def as_dict(self) -> dict[str, Any]:
        return {
            "limit": self.limit,
            "remaining": self.remaining,
            "reset": self.reset,
            "reset_utc": (
                datetime.fromtimestamp(self.reset, UTC).isoformat()
                if self.reset is not None and self.reset >= 1_000_000_000
                else None
            ),
        }


def _search_params(request: StockSearchRequest) -> dict[str, str | int]:
    params: dict[str, str | int | None] = {
        "query": request.query,
        "orientation": request.orientation,
        "size": request.size,
        "color": request.color,
        "per_page": request.per_page,
        "page": request.page,
    }
    return {key: value for key, value in params.items() if value is not None}


_CacheKey = tuple[str, str | None, str | None, str | None, int, int]


def _cache_key(request: StockSearchRequest) -> _CacheKey:
    """The request, normalised, minus ``download`` (it does not change the search)."""
    return (
        _WS_RE.sub(" ", request.query).strip().casefold(),
        request.orientation,
        request.size,
        request.color.lower().lstrip("#") if request.color else None,
        request.per_page,
        request.page,
    )


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


@dataclass
class _PhotoLock:
    lock: anyio.Lock
    users: int = 0


# --------------------------------------------------------------------------
# Client
# --------------------------------------------------------------------------


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
        key = (key or "").strip()
        if not key:
            raise StockNotConfigured(KEY_MISSING_MESSAGE)
        if not _KEY_RE.match(key):
            raise StockNotConfigured(
                "PEXELS_API_KEY contains spaces or characters a key cannot have: "
                "copy it again from pexels.com/api."
            )
        try:
            url = httpx.URL(base_url.strip())
        except (httpx.InvalidURL, TypeError):
            url = None
        if url is None or url.scheme not in ("http", "https") or not url.host:
            raise StockNotConfigured(
                f"SDXL_MCP_PEXELS_BASE_URL must be an http(s) URL such as {DEFAULT_BASE_URL}."
            )
        if call_timeout_s <= 0 or download_timeout_s <= 0:
            raise ValueError("timeouts must be positive")
        if cache_ttl_s < 0 or cache_size < 0 or max_download_bytes <= 0:
            raise ValueError("cache_ttl_s, cache_size and max_download_bytes must be positive")
        self._api_key = key
        self.base_url = str(url).rstrip("/")
        self._search_url = f"{self.base_url}/search"
        self._http = http
        self._cache_ttl_s = cache_ttl_s
        self._cache_size = cache_size
        self._call_timeout_s = call_timeout_s
        self._download_timeout_s = download_timeout_s
        self._max_download_bytes = max_download_bytes
        self._clock = clock
        self._cache: OrderedDict[_CacheKey, tuple[float, StockSearchResult]] = OrderedDict()
        self._photo_locks: dict[int, _PhotoLock] = {}
        #: The latest X-Ratelimit-* headers Pexels sent (None before the first answer).
        self.rate_limit: RateLimit | None = None

    def __repr__(self) -> str:  # never the key
        return f"PexelsClient(base_url={self.base_url!r})"

    # -- public API ----------------------------------------------------------

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

        ``request.download`` is ignored here (see :meth:`search_and_download`).
        """
        key = _cache_key(request)
        hit = self._cache_get(key)
        if hit is not None:
            logger.info("Pexels search %r: answered from the cache", request.query)
            remaining = self.rate_limit.remaining if self.rate_limit else None
            return hit.model_copy(
                update={
                    "query": request.query,
                    "cached": True,
                    "rate_limit_remaining": (
                        remaining if remaining is not None else hit.rate_limit_remaining
                    ),
                },
                deep=True,
            )
        self._check_quota()
        started = time.perf_counter()
        try:
            with anyio.fail_after(self._call_timeout_s):
                data = await self._get_search(_search_params(request))
        except TimeoutError:
            logger.warning("Pexels search timed out after %g s", self._call_timeout_s)
            raise StockUnavailable(
                f"Pexels timed out (no answer within {self._call_timeout_s:g} s); "
                "try again in a minute."
            ) from None
        result = self._parse_search(data, request)
        self._cache_put(key, result)
        logger.info(
            "Pexels search %r (page %d): %d photo(s) of %d in %.2f s; quota left: %s",
            request.query,
            result.page,
            len(result.photos),
            result.total_results,
            time.perf_counter() - started,
            "unknown" if result.rate_limit_remaining is None else result.rate_limit_remaining,
        )
        return result.model_copy(deep=True)

    async def download(
        self,
        photo: PexelsPhoto,
        store: ImageStore,
        *,
        width: int | None = None,
        height: int | None = None,
        orientation: str | None = None,
        query: str | None = None,
    ) -> DownloadedPhoto:
        """Save ``photo`` into ``store`` (once) and catalog it with its attribution.

        A photo already in the catalog (by Pexels id, file still on disk, at
        least the wanted size) is returned with ``cached=True`` and no request.
        Otherwise the chosen ``src`` variant (:func:`choose_src_size`) is
        streamed into memory (at most ``max_download_bytes``), checked to be an
        image and published atomically; a failure leaves no file.
        """
        size_key = choose_src_size(photo, width=width, height=height, orientation=orientation)
        src_url = photo.src[size_key]
        attribution = attribution_text(photo)
        async with self._lock_photo(photo.id):
            existing = await anyio.to_thread.run_sync(
                store.catalog.find_by_source_id, SOURCE, str(photo.id)
            )
            if existing is not None and _satisfies(existing, photo, width, height):
                logger.info("Pexels photo %d already saved at %s", photo.id, existing.path)
                return DownloadedPhoto(
                    photo_id=photo.id,
                    path=str(existing.path),
                    source_url=str(existing.parameters.get("src_url") or src_url),
                    attribution=attribution,
                    cached=True,
                    width=existing.width,
                    height=existing.height,
                )
            started = time.perf_counter()
            data, content_type = await self._download_bytes(src_url)
            image_format, (img_w, img_h) = _identify_image(data)
            suffix = (
                _SUFFIX_BY_FORMAT.get(image_format or "")
                or _SUFFIX_BY_CONTENT_TYPE.get(content_type)
                or ".jpg"
            )
            parameters = {
                "photographer": photo.photographer,
                "photographer_url": photo.photographer_url,
                "page_url": photo.url,
                "src_url": src_url,
                "src_size": size_key,
                "attribution": attribution,
                "alt": photo.alt,
                "avg_color": photo.avg_color,
                "query": query,
            }
            prompt = photo.alt.strip() or (query or "").strip() or f"Pexels photo {photo.id}"
            record = await anyio.to_thread.run_sync(
                _save_and_catalog,
                store,
                data,
                photo.id,
                suffix,
                prompt,
                parameters,
                img_w or photo.width,
                img_h or photo.height,
            )
            logger.info(
                "Downloaded Pexels photo %d (%s, %d bytes) to %s in %.2f s",
                photo.id,
                size_key,
                len(data),
                record.path,
                time.perf_counter() - started,
            )
            return DownloadedPhoto(
                photo_id=photo.id,
                path=str(record.path),
                source_url=src_url,
                attribution=attribution,
                cached=False,
                width=record.width,
                height=record.height,
            )

    async def search_and_download(
        self,
        request: StockSearchRequest,
        store: ImageStore,
        *,
        width: int | None = None,
        height: int | None = None,
    ) -> StockSearchResult:
        """:meth:`search`, then (``request.download`` and a match) :meth:`download`
        the best (first) match into ``store``; it goes into ``result.downloaded``."""
        result = await self.search(request)
        if request.download and result.photos:
            downloaded = await self.download(
                result.photos[0],
                store,
                width=width,
                height=height,
                orientation=request.orientation,
                query=request.query,
            )
            result = result.model_copy(update={"downloaded": downloaded})
        return result

    # -- search internals ----------------------------------------------------

    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": self._api_key,
            "User-Agent": USER_AGENT,
            "Accept": "application/json",
        }

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "[redacted]")

    async def _get_search(self, params: dict[str, str | int]) -> Any:
        """One GET /search; returns the decoded JSON or raises a Stock* error."""
        try:
            async with self._http.stream(
                "GET", self._search_url, params=params, headers=self._headers()
            ) as response:
                self._note_rate_limit(response.headers)
                self._check_status(response, what="search")
                content_type = _content_type(response)
                if "html" in content_type:
                    raise self._unavailable(response.status_code, "an HTML page")
                body = await _read_capped(response, _MAX_SEARCH_BYTES, _too_big_answer)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, "searching Pexels") from None
        if body.lstrip()[:1] == b"<":
            raise self._unavailable(response.status_code, "an HTML page")
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError):
            logger.warning(
                "Pexels answered HTTP %d with a body that is not JSON (%s, %d bytes)",
                response.status_code,
                content_type or "no content type",
                len(body),
            )
            raise StockUnavailable(_CANNOT_READ) from None

    def _note_rate_limit(self, headers: Mapping[str, str]) -> None:
        rate_limit = RateLimit.from_headers(headers)
        if rate_limit is not None:
            self.rate_limit = rate_limit

    def _check_quota(self) -> None:
        """Fail fast (no request) when Pexels said the quota is used up until ``reset``."""
        rl = self.rate_limit
        if rl is None or rl.remaining is None or rl.remaining > 0 or rl.reset is None:
            return
        now = time.time()
        wait = rl.seconds_until_reset(now)
        if wait is None or wait <= 0:
            return
        logger.warning("Pexels quota used up; not searching until %s", rl.as_dict()["reset_utc"])
        raise StockRateLimited(
            f"The Pexels request quota is used up: try again {_describe_wait(wait, now)}.",
            retry_after_s=float(math.ceil(wait)),
        )

    def _check_status(self, response: httpx.Response, *, what: str) -> None:
        status = response.status_code
        if status == 200:
            return
        logger.warning("Pexels %s answered HTTP %d", what, status)
        if status in (401, 403):
            raise StockAuthError(
                f"Pexels rejected the API key (HTTP {status}): check PEXELS_API_KEY."
            )
        if status == 429:
            raise _rate_limited(response.headers)
        if status >= 500:
            raise self._unavailable(status)
        if status >= 400:
            raise StockError(
                f"Pexels refused the {what} (HTTP {status}); check the query and the "
                "orientation, size and color filters."
            )
        raise StockUnavailable(
            f"Pexels sent an unexpected answer (HTTP {status}); try again in a minute."
        )

    @staticmethod
    def _unavailable(status: int, what: str | None = None) -> StockUnavailable:
        detail = f"HTTP {status}" if what is None else f"HTTP {status}, {what}"
        return StockUnavailable(f"Pexels is unavailable ({detail}); try again in a minute.")

    def _transport_error(self, exc: httpx.HTTPError, doing: str) -> StockError:
        """A Stock* error for an httpx failure; httpx's text is logged redacted, never shown."""
        logger.warning(
            "Pexels request failed while %s: %s: %s",
            doing,
            type(exc).__name__,
            self._redact(str(exc)) or "no details",
        )
        if isinstance(exc, httpx.TimeoutException):
            return StockUnavailable(f"Pexels timed out while {doing}; try again in a minute.")
        if isinstance(exc, httpx.ConnectError):
            return StockUnavailable(
                f"Could not connect to Pexels while {doing}; check the network "
                "(and SDXL_MCP_PEXELS_BASE_URL) and try again in a minute."
            )
        if isinstance(exc, httpx.DecodingError):
            return StockUnavailable(_CANNOT_READ)
        if isinstance(exc, httpx.TransportError):
            return StockUnavailable(
                f"The connection to Pexels failed while {doing} ({type(exc).__name__}); "
                "try again in a minute."
            )
        return StockUnavailable(
            f"The request to Pexels failed while {doing} ({type(exc).__name__}); "
            "try again in a minute."
        )

    def _parse_search(self, data: Any, request: StockSearchRequest) -> StockSearchResult:
        if not isinstance(data, dict) or not isinstance(data.get("photos"), list):
            logger.warning("Pexels search answer has no 'photos' list")
            raise StockUnavailable(_CANNOT_READ)
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
                raise StockUnavailable(_CANNOT_READ)
        remaining = self.rate_limit.remaining if self.rate_limit else None
        return StockSearchResult(
            query=request.query,
            page=_int_or(data.get("page"), request.page),
            per_page=_int_or(data.get("per_page"), request.per_page),
            total_results=_int_or(data.get("total_results"), len(photos)),
            photos=photos,
            rate_limit_remaining=remaining,
        )

    # -- cache ---------------------------------------------------------------

    def _cache_get(self, key: _CacheKey) -> StockSearchResult | None:
        entry = self._cache.get(key)
        if entry is None:
            return None
        expires, result = entry
        if self._clock() >= expires:
            del self._cache[key]
            return None
        self._cache.move_to_end(key)
        return result

    def _cache_put(self, key: _CacheKey, result: StockSearchResult) -> None:
        if self._cache_ttl_s <= 0 or self._cache_size <= 0:
            return
        self._cache[key] = (self._clock() + self._cache_ttl_s, result.model_copy(deep=True))
        self._cache.move_to_end(key)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    # -- download internals --------------------------------------------------

    @contextlib.asynccontextmanager
    async def _lock_photo(self, photo_id: int) -> AsyncIterator[None]:
        """One download per photo id at a time, so two callers do not fetch it twice."""
        entry = self._photo_locks.get(photo_id)
        if entry is None:
            entry = self._photo_locks[photo_id] = _PhotoLock(anyio.Lock())
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if entry.users == 0:
                self._photo_locks.pop(photo_id, None)

    async def _download_bytes(self, url: str) -> tuple[bytes, str]:
        """The whole body of ``url`` (bounded, time-capped) and its content type."""
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError):
            parsed = None
        if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
            raise StockUnavailable(_CANNOT_READ)
        max_bytes = self._max_download_bytes
        try:
            with anyio.fail_after(self._download_timeout_s):
                # No Authorization header: image URLs are public and on another host.
                async with self._http.stream(
                    "GET", parsed, headers={"User-Agent": USER_AGENT, "Accept": "image/*"}
                ) as response:
                    status = response.status_code
                    if status != 200:
                        logger.warning("Pexels photo download answered HTTP %d", status)
                        if status == 429:
                            raise _rate_limited(response.headers)
                        if status >= 500:
                            raise self._unavailable(status)
                        raise StockUnavailable(
                            f"The Pexels photo could not be downloaded (HTTP {status}); "
                            "search again or pick another photo."
                        )
                    content_type = _content_type(response)
                    if "html" in content_type or content_type.startswith("text/"):
                        raise self._unavailable(status, "a web page instead of the photo")
                    declared = _header_number(response.headers, "content-length")
                    if declared is not None and declared > max_bytes:
                        raise _too_big_photo(max_bytes)
                    data = await _read_capped(
                        response, max_bytes, lambda: _too_big_photo(max_bytes)
                    )
                    encoded = "content-encoding" in response.headers
                    if declared is not None and not encoded and len(data) != int(declared):
                        logger.warning(
                            "Pexels photo download ended early: %d of %d bytes",
                            len(data),
                            int(declared),
                        )
                        raise StockUnavailable(
                            "The Pexels photo download broke off half way; try again in a minute."
                        )
        except TimeoutError:
            logger.warning("Pexels photo download timed out after %g s", self._download_timeout_s)
            raise StockUnavailable(
                f"Downloading the Pexels photo timed out (over {self._download_timeout_s:g} s); "
                "try again in a minute."
            ) from None
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, "downloading the photo") from None
        return data, content_type


# --------------------------------------------------------------------------
# Module-private pieces of the client
# --------------------------------------------------------------------------


def _content_type(response: httpx.Response) -> str:
    return response.headers.get("content-type", "").split(";")[0].strip().lower()


async def _read_capped(
    response: httpx.Response, max_bytes: int, too_big: Callable[[], StockError]
) -> bytes:
    buffer = bytearray()
    async for chunk in response.aiter_bytes():
        if len(buffer) + len(chunk) > max_bytes:
            raise too_big()
        buffer += chunk
    return bytes(buffer)


def _too_big_answer() -> StockError:
    logger.warning("Pexels search answer is larger than %d bytes", _MAX_SEARCH_BYTES)
    return StockUnavailable(_CANNOT_READ)


def _too_big_photo(max_bytes: int) -> StockError:
    limit = (
        f"{max_bytes / (1024 * 1024):g} MB" if max_bytes >= 1024 * 1024 else f"{max_bytes} bytes"
    )
    return StockError(
        f"The Pexels photo is larger than {limit}; ask for a smaller width and height."
    )


def _rate_limited(headers: Mapping[str, str]) -> StockRateLimited:
    now = time.time()
    wait = _retry_after_header(headers.get("retry-after"), now)
    if wait is None:
        reset = _header_number(headers, "x-ratelimit-reset")
        wait = None if reset is None else _epoch_to_delay(reset, now)
    if wait is None:
        return StockRateLimited(
            f"Pexels rate limit reached (HTTP 429): try again in an hour ({_DEFAULT_QUOTA_HINT})."
        )
    return StockRateLimited(
        f"Pexels rate limit reached (HTTP 429): try again {_describe_wait(wait, now)}.",
        retry_after_s=float(math.ceil(wait)),
    )


def _satisfies(
    record: CatalogRecord, photo: PexelsPhoto, width: int | None, height: int | None
) -> bool:
    """Whether an already-saved copy serves this request (big enough, or the best there is)."""
    if not width and not height:
        return True
    if record.width >= (width or 0) and record.height >= (height or 0):
        return True
    if record.parameters.get("src_size") == "original":
        return True
    return record.width >= photo.width and record.height >= photo.height


def _identify_image(data: bytes) -> tuple[str | None, tuple[int, int]]:
    """The image format and size of ``data``; StockUnavailable if it is not an image."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.format, image.size
    except Exception as exc:  # PIL raises many kinds for "not an image"
        logger.warning("Pexels download is not a readable image (%s)", type(exc).__name__)
        raise StockUnavailable(
            "The Pexels download was not an image; try again in a minute."
        ) from None


def _save_and_catalog(
    store: ImageStore,
    data: bytes,
    photo_id: int,
    suffix: str,
    prompt: str,
    parameters: dict[str, Any],
    width: int,
    height: int,
) -> CatalogRecord:
    """Publish ``data`` and record it; runs in a worker thread (fsync, SQLite).

    One function so a cancelled caller cannot leave a published file without
    its catalog row: if the row cannot be written, the file is removed again.
    """
    path = store.save_bytes(data, name_hint=f"pexels_{photo_id}", suffix=suffix)
    record = CatalogRecord(
        name=path.name,
        path=path,
        prompt=prompt,
        sha256=hashlib.sha256(data).hexdigest(),
        width=width,
        height=height,
        source=SOURCE,
        source_id=str(photo_id),
        parameters=parameters,
        result_json=None,
    )
    try:
        store.catalog.add(record)
    except BaseException:
        with contextlib.suppress(OSError):
            path.unlink()
        raise
    return record
