"""Stock photo sources (Pexels). No torch here: httpx, pydantic and the stdlib."""

from sdxl_mcp.stock.pexels import (
    PexelsClient,
    RateLimit,
    attribution_markdown,
    attribution_text,
    choose_src_size,
    default_http_client,
)

__all__ = [
    "PexelsClient",
    "RateLimit",
    "attribution_markdown",
    "attribution_text",
    "choose_src_size",
    "default_http_client",
]
