"""The one place a Pexels HTTP status becomes an error.

Guarantees (:func:`error_for_status`; ``api`` says whether the request went to
the key-authenticated API or fetched a public photo URL):

* 200 is no error;
* 429 is :class:`StockRateLimited` saying when to retry (both kinds);
* 5xx is :class:`StockUnavailable`, retryable ("Pexels is unavailable");
* from the API: 401/403 is :class:`StockAuthError` (check PEXELS_API_KEY);
  another 4xx is :class:`StockRequestRejected`, the caller's to fix (REST 422),
  never an upstream failure; anything else is an unexpected answer;
* from a photo URL (no key is sent there): any other status means that photo
  cannot be had now, :class:`StockUnavailable` ("search again or pick another").

Messages are one sentence and never quote the upstream body. No httpx here.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from sdxl_mcp.errors import (
    StockAuthError,
    StockError,
    StockRequestRejected,
    StockUnavailable,
)
from sdxl_mcp.stock.ratelimit import rate_limited_error

logger = logging.getLogger(__name__)

__all__ = ["CANNOT_READ", "error_for_status", "too_big_photo", "unavailable"]

CANNOT_READ = (
    "Pexels sent a response this client cannot read; try again later, "
    "or update sdxl-mcp if it keeps happening."
)


def unavailable(status: int, what: str | None = None) -> StockUnavailable:
    """``Pexels is unavailable (HTTP <status>[, <what>]); try again in a minute.``"""
    detail = f"HTTP {status}" if what is None else f"HTTP {status}, {what}"
    return StockUnavailable(f"Pexels is unavailable ({detail}); try again in a minute.")


def error_for_status(
    status: int, headers: Mapping[str, str], *, api: bool, what: str = "search"
) -> StockError | None:
    """The error for an answer with HTTP ``status``, or None for 200.

    ``what`` names the API call in messages (``search``); ``api=False`` is a
    photo download from a public image URL.
    """
    if status == 200:
        return None
    logger.warning("Pexels %s answered HTTP %d", what if api else "photo download", status)
    if status == 429:
        return rate_limited_error(headers)
    if status >= 500:
        return unavailable(status)
    if not api:
        return StockUnavailable(
            f"The Pexels photo could not be downloaded (HTTP {status}); "
            "search again or pick another photo."
        )
    if status in (401, 403):
        return StockAuthError(f"Pexels rejected the API key (HTTP {status}): check PEXELS_API_KEY.")
    if status >= 400:
        return StockRequestRejected(
            f"Pexels refused the {what} (HTTP {status}); check the query and the "
            "orientation, size and color filters."
        )
    return StockUnavailable(
        f"Pexels sent an unexpected answer (HTTP {status}); try again in a minute."
    )


def too_big_photo(max_bytes: int) -> StockError:
    """The photo is over the download cap: the caller should ask for a smaller size."""
    limit = (
        f"{max_bytes / (1024 * 1024):g} MB" if max_bytes >= 1024 * 1024 else f"{max_bytes} bytes"
    )
    return StockError(
        f"The Pexels photo is larger than {limit}; ask for a smaller width and height."
    )
