"""Stock photo sources (Pexels): the HTTP API client and its plain helpers.

``sdxl_mcp.stock.pexels`` holds :class:`~sdxl_mcp.stock.pexels.PexelsClient`
(it imports httpx, so it is imported on first use, not here). The helpers
re-exported here are pure and light: the attribution line, the ``src`` size
choice and the rate-limit headers. Saving a photo once and cataloguing it is
the library's job (:mod:`sdxl_mcp.library.stock_photos`). No torch here.
"""

from sdxl_mcp.stock.attribution import attribution_markdown, attribution_text
from sdxl_mcp.stock.ratelimit import RateLimit
from sdxl_mcp.stock.sizes import choose_src_size

__all__ = ["RateLimit", "attribution_markdown", "attribution_text", "choose_src_size"]
