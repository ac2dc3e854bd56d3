"""httpx plumbing for the Pexels client: failures as Stock* errors, bounded reads.

Guarantees: an httpx failure (timeout, refused connection, broken connection,
undecodable body) becomes a retryable :class:`~sdxl_mcp.errors.StockUnavailable`
with one sentence saying what was being done; httpx's own text, which may
quote a header, is only logged, with the key redacted, and never shown. A body
is read into memory only up to a cap; a photo body (:func:`read_photo`) is
refused when it is a web page, over the cap (declared or sent), or shorter
than its ``Content-Length`` (a connection that broke off).
"""

from __future__ import annotations

import logging

import httpx

from sdxl_mcp.errors import StockError, StockUnavailable
from sdxl_mcp.stock.ratelimit import header_number
from sdxl_mcp.stock.statuses import CANNOT_READ, too_big_photo, unavailable

logger = logging.getLogger(__name__)

__all__ = ["content_type_of", "read_capped", "read_photo", "transport_error"]


def transport_error(exc: httpx.HTTPError, doing: str, *, secret: str) -> StockError:
    """A Stock* error for an httpx failure while ``doing``; ``secret`` is redacted in the log."""
    logger.warning(
        "Pexels request failed while %s: %s: %s",
        doing,
        type(exc).__name__,
        str(exc).replace(secret, "[redacted]") or "no details",
    )
    if isinstance(exc, httpx.TimeoutException):
        return StockUnavailable(f"Pexels timed out while {doing}; try again in a minute.")
    if isinstance(exc, httpx.ConnectError):
        return StockUnavailable(
            f"Could not connect to Pexels while {doing}; check the network "
            "(and SDXL_MCP_PEXELS_BASE_URL) and try again in a minute."
        )
    if isinstance(exc, httpx.DecodingError):
        return StockUnavailable(CANNOT_READ)
    if isinstance(exc, httpx.TransportError):
        return StockUnavailable(
            f"The connection to Pexels failed while {doing} ({type(exc).__name__}); "
            "try again in a minute."
        )
    return StockUnavailable(
        f"The request to Pexels failed while {doing} ({type(exc).__name__}); "
        "try again in a minute."
    )


def content_type_of(response: httpx.Response) -> str:
    """The media type of ``response``, lower case, without parameters ("" if none)."""
    return response.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_capped(response: httpx.Response, max_bytes: int) -> bytes | None:
    """The whole body, or None as soon as it passes ``max_bytes``."""
    buffer = bytearray()
    async for chunk in response.aiter_bytes():
        if len(buffer) + len(chunk) > max_bytes:
            return None
        buffer += chunk
    return bytes(buffer)


async def read_photo(response: httpx.Response, max_bytes: int) -> tuple[bytes, str]:
    """The complete photo body of a 200 answer and its content type, or a Stock* error."""
    content_type = content_type_of(response)
    if "html" in content_type or content_type.startswith("text/"):
        raise unavailable(response.status_code, "a web page instead of the photo")
    declared = header_number(response.headers, "content-length")
    if declared is not None and declared > max_bytes:
        raise too_big_photo(max_bytes)
    data = await read_capped(response, max_bytes)
    if data is None:
        raise too_big_photo(max_bytes)
    encoded = "content-encoding" in response.headers
    if declared is not None and not encoded and len(data) != int(declared):
        logger.warning(
            "Pexels photo download ended early: %d of %d bytes", len(data), int(declared)
        )
        raise StockUnavailable(
            "The Pexels photo download broke off half way; try again in a minute."
        )
    return data, content_type
