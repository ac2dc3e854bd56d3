"""Small inline previews an agent can see: JPEG, longest side ≤ 512 px, well under 1 MiB.

MCP clients drop tool results over ~1 MiB, so the full PNG travels as a
resource link and only this preview goes inline.
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

PREVIEW_MAX_SIDE = 512
PREVIEW_MAX_BYTES = 1024 * 1024


def preview_jpeg(path: str | Path, max_side: int = PREVIEW_MAX_SIDE, quality: int = 85) -> bytes:
    """Encode a downscaled JPEG of the image at ``path``."""
    with Image.open(path) as source:
        source.draft("RGB", (max_side, max_side))  # JPEG sources decode at reduced size
        return preview_jpeg_image(source, max_side, quality)


def preview_jpeg_image(
    source: Image.Image, max_side: int = PREVIEW_MAX_SIDE, quality: int = 85
) -> bytes:
    """Encode a downscaled JPEG of an in-memory image (no PNG decode needed)."""
    image = source.convert("RGB")  # a copy: the caller's image is not touched
    # reducing_gap=1: a box-filter reduce by the whole factor, then LANCZOS for the
    # rest; a preview needs no finer filter, and the 1024² preview went from 32 ms
    # to 5 ms (`sdxl-mcp bench --hotpath`, docs/PERFORMANCE.md).
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS, reducing_gap=1.0)
    while True:
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=quality, optimize=False)
        data = buffer.getvalue()
        # Noise-like images compress badly; step quality down rather than exceed the cap.
        if len(data) < PREVIEW_MAX_BYTES // 2 or quality <= 30:
            return data
        quality -= 15
