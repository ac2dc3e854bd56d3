"""One small exception hierarchy for everything a caller can act on.

Every error carries a message a user can act on (what happened, what to do),
a stable ``code`` for clients and REST status mapping, and whether retrying the
same request later can succeed. Transports turn these into ``isError`` tool
results or HTTP statuses; nothing else reaches a client.
"""

from __future__ import annotations


class SdxlMcpError(Exception):
    """Base class: an error the caller or the model can act on."""

    code: str = "error"
    retryable: bool = False
    http_status: int = 500

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s

    def __str__(self) -> str:
        return self.message


class SettingsError(SdxlMcpError):
    """A setting has a value the server cannot use; start-up stops."""

    code = "invalid_settings"


class BadRequest(SdxlMcpError):
    """The request itself is wrong; fix it and send it again."""

    code = "bad_request"
    http_status = 422


class NotFound(SdxlMcpError):
    """An unknown job id or image name."""

    code = "not_found"
    http_status = 404


class JobLost(NotFound):
    """The job was queued or running when the server stopped; it never finished."""

    code = "job_lost"
    http_status = 410


class Busy(SdxlMcpError):
    """The queue is full; retry after ``retry_after_s`` seconds."""

    code = "busy"
    retryable = True
    http_status = 429


class Cancelled(SdxlMcpError):
    """The generation was cancelled (by the caller, a timeout or shutdown)."""

    code = "cancelled"
    http_status = 499


class GenerationTimeout(Cancelled):
    """The generation ran past GENERATION_TIMEOUT_S and was interrupted."""

    code = "timeout"
    retryable = True
    http_status = 504


class ModelUnavailable(SdxlMcpError):
    """The models cannot be loaded or used on this machine (yet)."""

    code = "model_unavailable"
    http_status = 503


class OutOfMemory(SdxlMcpError):
    """The device ran out of memory even after the low-memory retry."""

    code = "out_of_memory"
    retryable = True
    http_status = 503


class GenerationFailed(SdxlMcpError):
    """The pipeline ran but produced no usable image (e.g. a NaN decode)."""

    code = "generation_failed"
    retryable = True
    http_status = 500


class StorageError(SdxlMcpError):
    """The image could not be written (disk full, read-only output dir)."""

    #: What to do, ending every storage message.
    HINT = "Free disk space or set SDXL_MCP_OUTPUT_DIR to a writable folder."

    code = "storage_error"
    http_status = 507


class NoImageFound(SdxlMcpError):
    """No image source could serve the request (the source guide's case)."""

    code = "no_image"
    http_status = 503

    GUIDE_MESSAGE = "No image found. Ensure PEXELS_API_KEY is set or GPU available"

    def __init__(self, message: str = GUIDE_MESSAGE, **kwargs: float | None) -> None:
        super().__init__(message, **kwargs)


class StockError(SdxlMcpError):
    """Base for Pexels failures."""

    code = "stock_error"
    http_status = 502


class StockNotConfigured(StockError):
    code = "stock_not_configured"
    http_status = 503


class StockAuthError(StockError):
    code = "stock_auth"


class StockRequestRejected(StockError):
    """Pexels refused the request itself (a 4xx other than auth and rate limit):
    the query or its filters must change, so it is the caller's to fix."""

    code = "stock_request_rejected"
    http_status = 422


class StockRateLimited(StockError):
    code = "stock_rate_limited"
    retryable = True
    http_status = 429


class StockUnavailable(StockError):
    code = "stock_unavailable"
    retryable = True


def error_class(code: str | None) -> type[SdxlMcpError]:
    """The error class with this ``code`` (the base class if unknown)."""
    stack: list[type[SdxlMcpError]] = [SdxlMcpError]
    while stack:
        cls = stack.pop()
        if cls.code == code:
            return cls
        stack.extend(cls.__subclasses__())
    return SdxlMcpError


def status_for_code(code: str | None) -> int:
    """The HTTP status of the error class with this ``code`` (500 if unknown)."""
    cls = error_class(code)
    return cls.http_status if cls.code == code else 500


def first_line(exc: BaseException, limit: int = 300) -> str:
    """An exception's first line (its type's name when it has no text), at most ``limit``
    characters: what an error message quotes of a library's exception."""
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:limit]
