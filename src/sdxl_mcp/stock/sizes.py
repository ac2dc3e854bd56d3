"""Which of a Pexels photo's ``src`` variants to download.

Guarantees (:func:`choose_src_size`): with a wanted size, the smallest
uncropped variant at least that big (Pexels never upscales, so the variant's
real size is computed from the photo's), else ``original``; without one, the
``portrait`` / ``landscape`` crop for that orientation, else ``large2x``; a
photo lacking the preferred variants gets one it has. A photo with no variant
at all is :class:`~sdxl_mcp.errors.StockUnavailable`. Pure functions.
"""

from __future__ import annotations

import math

from sdxl_mcp.errors import StockUnavailable
from sdxl_mcp.schemas import PexelsPhoto
from sdxl_mcp.stock.statuses import CANNOT_READ

__all__ = ["choose_src_size"]

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
        raise StockUnavailable(CANNOT_READ)
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
