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

    def __init_subclass__(cls, *, code: str | None = None, http_status: int | None = None,
                          retryable: bool | None = None) -> None:
        # Each error declares its code, status and retry hint on its class line.
        super().__init_subclass__()
        if code is not None:
            cls.code = code
        if http_status is not None:
            cls.http_status = http_status
        if retryable is not None:
            cls.retryable = retryable

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s

    def __str__(self) -> str:
        return self.message


class SettingsError(SdxlMcpError, code="invalid_settings"):
    """A setting has a value the server cannot use; start-up stops."""


class BadRequest(SdxlMcpError, code="bad_request", http_status=422):
    """The request itself is wrong; fix it and send it again."""


class NotFound(SdxlMcpError, code="not_found", http_status=404):
    """An unknown job id or image name."""


class JobLost(NotFound, code="job_lost", http_status=410):
    """The job was queued or running when the server stopped; it never finished."""


class Busy(SdxlMcpError, code="busy", http_status=429, retryable=True):
    """The queue is full; retry after ``retry_after_s`` seconds."""


class Cancelled(SdxlMcpError, code="cancelled", http_status=499):
    """The generation was cancelled (by the caller, a timeout or shutdown)."""


class GenerationTimeout(Cancelled, code="timeout", http_status=504, retryable=True):
    """The generation ran past GENERATION_TIMEOUT_S and was interrupted."""


class ModelUnavailable(SdxlMcpError, code="model_unavailable", http_status=503):
    """The models cannot be loaded or used on this machine (yet)."""


class OutOfMemory(SdxlMcpError, code="out_of_memory", http_status=503, retryable=True):
    """The device ran out of memory even after the low-memory retry."""


class GenerationFailed(SdxlMcpError, code="generation_failed", http_status=500, retryable=True):
    """The pipeline ran but produced no usable image (e.g. a NaN decode)."""


class StorageError(SdxlMcpError, code="storage_error", http_status=507):
    """The image could not be written (disk full, read-only output dir)."""

    #: What to do, ending every storage message.
    HINT = "Free disk space or set SDXL_MCP_OUTPUT_DIR to a writable folder."


class NoImageFound(SdxlMcpError, code="no_image", http_status=503):
    """No image source could serve the request (the source guide's case)."""

    GUIDE_MESSAGE = "No image found. Ensure PEXELS_API_KEY is set or GPU available"

    def __init__(self, message: str = GUIDE_MESSAGE, **kwargs: float | None) -> None:
        super().__init__(message, **kwargs)


class StockError(SdxlMcpError, code="stock_error", http_status=502):
    """Base for Pexels failures."""


class StockNotConfigured(StockError, code="stock_not_configured", http_status=503):
    """No Pexels key is set."""


class StockAuthError(StockError, code="stock_auth"):
    """Pexels refused the key."""


class StockRequestRejected(StockError, code="stock_request_rejected", http_status=422):
    """Pexels refused the request itself (a 4xx other than auth and rate limit):
    the query or its filters must change, so it is the caller's to fix."""


class StockRateLimited(StockError, code="stock_rate_limited", http_status=429, retryable=True):
    """Pexels' rate limit is reached; retry after ``retry_after_s``."""


class StockUnavailable(StockError, code="stock_unavailable", retryable=True):
    """Pexels could not be reached or failed."""


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
