"""Small inline previews an agent can see: JPEG, longest side ≤ 512 px, well under 1 MiB.

MCP clients drop tool results over ~1 MiB, so the full PNG travels as a
resource link and only this preview goes inline. :func:`while_previewing` makes
a preview in a worker thread while the caller's work (the PNG save) runs, and
returns both only once both are done, the work's error first.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import TypeVar

from PIL import Image

PREVIEW_MAX_SIDE = 512
PREVIEW_MAX_BYTES = 1024 * 1024

T = TypeVar("T")
# Two: enough for the Ray backend's parallel saves; a preview takes milliseconds.
_previewer = ThreadPoolExecutor(max_workers=2, thread_name_prefix="preview")


def while_previewing(image: Image.Image, work: Callable[[], T]) -> tuple[T, bytes]:
    """Run ``work()`` here while the preview of ``image`` is made in a worker thread.

    Both encoders release the GIL, so on two or more cores the preview is off
    the critical path after the engine (``sdxl-mcp bench --hotpath``).
    """
    future = _previewer.submit(preview_jpeg_image, image)
    try:
        out = work()
    except BaseException:
        wait([future])  # the worker is done with the image before the caller goes on
        raise
    return out, future.result()


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
