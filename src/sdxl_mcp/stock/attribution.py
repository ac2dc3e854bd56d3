"""The credit Pexels asks for under every photo, as text and as Markdown.

Guarantees: one line, no control characters, the photographer's name and
profile link and the photo's Pexels page, in the form
``Photo by NAME (PHOTOGRAPHER_URL) on Pexels (PHOTO_PAGE_URL)``; a missing name
reads "an unknown photographer" and missing links are left out. Markdown
brackets in a name are escaped. Pure functions.
"""

from __future__ import annotations

import re

from sdxl_mcp.schemas import PexelsPhoto

__all__ = ["attribution_markdown", "attribution_text"]

_WS_RE = re.compile(r"\s+")


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
