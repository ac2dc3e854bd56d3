"""Pexels' request quota: the ``X-Ratelimit-*`` and ``Retry-After`` headers.

Guarantees:

* :meth:`RateLimit.from_headers` reads ``X-Ratelimit-Limit / -Remaining /
  -Reset``; a missing, negative, infinite or unreadable value is ``None``,
  never an exception;
* :func:`rate_limited_error` turns an HTTP 429 into a :class:`StockRateLimited`
  that says when to retry (``Retry-After`` first, then ``X-Ratelimit-Reset``)
  and carries ``retry_after_s``; without either it names Pexels' default quota;
* :func:`quota_error` says, before any request is sent, that a used-up quota
  has not been reset yet.

Plain functions over header mappings: no httpx, no I/O.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from sdxl_mcp.errors import StockRateLimited

__all__ = ["RateLimit", "header_number", "quota_error", "rate_limited_error"]

# Pexels' documented default quota, for messages when it does not say when to retry.
_DEFAULT_QUOTA_HINT = "the free plan allows 200 requests per hour and 20,000 per month"


def header_number(headers: Mapping[str, str], name: str) -> float | None:
    """A finite, non-negative number from header ``name``, else None."""
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
        limit = header_number(headers, "x-ratelimit-limit")
        remaining = header_number(headers, "x-ratelimit-remaining")
        reset = header_number(headers, "x-ratelimit-reset")
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


def quota_error(rate_limit: RateLimit | None) -> StockRateLimited | None:
    """The error to raise without a request while the quota is used up, else None."""
    rl = rate_limit
    if rl is None or rl.remaining is None or rl.remaining > 0 or rl.reset is None:
        return None
    now = time.time()
    wait = rl.seconds_until_reset(now)
    if wait is None or wait <= 0:
        return None
    return StockRateLimited(
        f"The Pexels request quota is used up: try again {_describe_wait(wait, now)}.",
        retry_after_s=float(math.ceil(wait)),
    )


def rate_limited_error(headers: Mapping[str, str]) -> StockRateLimited:
    """The error for an HTTP 429, saying when to retry."""
    now = time.time()
    wait = _retry_after_header(headers.get("retry-after"), now)
    if wait is None:
        reset = header_number(headers, "x-ratelimit-reset")
        wait = None if reset is None else _epoch_to_delay(reset, now)
    if wait is None:
        return StockRateLimited(
            f"Pexels rate limit reached (HTTP 429): try again in an hour ({_DEFAULT_QUOTA_HINT})."
        )
    return StockRateLimited(
        f"Pexels rate limit reached (HTTP 429): try again {_describe_wait(wait, now)}.",
        retry_after_s=float(math.ceil(wait)),
    )
