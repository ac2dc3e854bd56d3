"""``--hotpath``: median ms of each step the server adds after the engine returns an image.

PNG save at three compression levels, the preview JPEG (from the file and from
memory), the result model and its JSON, the atomic sidecar write and the
catalog insert, each timed on its own with the server's own functions. The
image is noise (like the tiny model's output): the worst case for PNG. No
engine, no torch.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


def hotpath(size: int, runs: int) -> dict[str, Any]:
    """At least three runs; per step the median and minimum milliseconds."""
    import numpy as np
    from PIL import Image

    from sdxl_mcp.library import CatalogRecord, ImageStore
    from sdxl_mcp.preview import preview_jpeg, preview_jpeg_image
    from sdxl_mcp.schemas import GenerationResult, ImageInfo

    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    tmp = Path(tempfile.mkdtemp(prefix="sdxl-bench-"))
    store = ImageStore(tmp)
    timings: dict[str, list[float]] = {}

    def timed(name: str, fn: Any) -> Any:
        started = time.perf_counter()
        out = fn()
        timings.setdefault(name, []).append((time.perf_counter() - started) * 1000)
        return out

    def once(i: int) -> None:
        for level in (0, 1, 6):
            saved = timed(f"png save, compress_level={level}",
                          lambda level=level: store.save_image(  # type: ignore[misc]
                              image, seed=i, infotext="x", compress_level=level))
        timed("preview JPEG ≤512 px, from the file", lambda: preview_jpeg(saved.path))
        timed("preview JPEG ≤512 px, from memory", lambda: preview_jpeg_image(image))
        result = timed("result model + JSON", lambda: GenerationResult(
            success=True, status="succeeded", message="ok", path=str(saved.path),
            image=ImageInfo(url=str(saved.path), source="sdxl", width=size, height=size),
        ).model_dump_json())
        timed("sidecar JSON write (atomic)",
              lambda: store.write_sidecar(saved.path, json.loads(result)))
        timed("catalog insert (SQLite WAL)", lambda: store.catalog.add(
            CatalogRecord.from_saved(saved, prompt="x", seed=i, result_json=result)))

    for i in range(max(3, runs)):
        once(i)
    store.close()
    rows = [{"step": name, "median_ms": round(statistics.median(v), 2),
             "min_ms": round(min(v), 2)} for name, v in timings.items()]
    return {"benchmark": "hotpath", "size": size, "runs": max(3, runs), "table": rows}
