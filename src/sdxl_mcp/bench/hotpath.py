"""``--hotpath``: median ms of each step the server adds after the engine returns an image.

PNG save (the fast encoder, libpng + zlib-ng, at levels 0, 1 and 6, and Pillow at
level 1: the encoder without them, and the default before it), each on
noise (like the tiny model's output: the worst case for PNG) and on a
photo-like image (a smooth gradient, shapes and a little grain), and on each
``--image`` given (resized to the bench's size: a real photograph, or an
engine's output), with the file's size; the preview JPEG (from the file and from memory), the result
model and its JSON, the atomic sidecar write and the catalog insert; and
"after the engine, all of it": the service's own ``service.keeping.Keeper.keep`` (PNG,
sidecar, catalog row, Result, with the preview made beside it), as a generation
for an MCP caller runs it.
Each is timed on its own with the server's own functions. The export rows
(``export_image``) start from the photo-like image. No engine, no torch.
"""

from __future__ import annotations

import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from unittest import mock


def hotpath(size: int, runs: int, extra_images: Sequence[Path] = ()) -> dict[str, Any]:
    """At least three runs; per step the median and minimum milliseconds (and bytes).

    ``extra_images`` are timed like the photo-like image, each under its file name.
    """
    import numpy as np
    from PIL import Image

    from sdxl_mcp.library import CatalogRecord, ImageStore, png
    from sdxl_mcp.library.previews import preview_jpeg, preview_jpeg_image
    from sdxl_mcp.schemas import GenerationResult, ImageInfo

    rng = np.random.default_rng(0)
    images = {"noise": Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)),
              "photo-like": _photo_like(size)}
    for path in extra_images:
        images[Path(path).name] = _load(Path(path), size)
    image = images["noise"]
    tmp = Path(tempfile.mkdtemp(prefix="sdxl-bench-"))
    store = ImageStore(tmp)
    timings: dict[str, list[float]] = {}
    sizes: dict[str, int] = {}

    def timed(name: str, fn: Any) -> Any:
        started = time.perf_counter()
        out = fn()
        timings.setdefault(name, []).append((time.perf_counter() - started) * 1000)
        if hasattr(out, "bytes_written"):
            sizes[name] = out.bytes_written
        return out

    def save(picture: Any, i: int, level: int) -> Any:
        return store.save_image(picture, seed=i, infotext="x", compress_level=level)

    after_engine = _after_engine(store, tmp)
    encoder = ("libpng + zlib-ng" if png.fast_encoder_available()
               else "Pillow (no imagecodecs or zlib-ng)")

    def once(i: int) -> None:
        for label, picture in images.items():
            for level in (0, 1, 6):
                used = encoder if level <= png.FAST_MAX_LEVEL else "Pillow, as above level 3"
                timed(f"png save {label}, level {level} ({used})",
                      lambda p=picture, lv=level: save(p, i, lv))  # type: ignore[misc]
            with mock.patch.object(png, "_codecs", False):  # as without the fast encoder
                timed(f"png save {label}, level 1, Pillow (the light install; before)",
                      lambda p=picture: save(p, i, 1))  # type: ignore[misc]
            timed(f"after the engine, all of it: {label} (save_generation ‖ preview)",
                  lambda p=picture: after_engine(p, i))  # type: ignore[misc]
        saved = save(image, i, 1)
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

    try:
        export_steps = _export_steps(store, size, timed)
        for i in range(max(3, runs)):
            once(i)
            export_steps()
    finally:
        store.close()
        shutil.rmtree(tmp, ignore_errors=True)  # hundreds of MB of PNGs at 1024²
    rows = [{"step": name, "median_ms": round(statistics.median(v), 2),
             "min_ms": round(min(v), 2), "bytes": sizes.get(name)}
            for name, v in timings.items()]
    return {"benchmark": "hotpath", "size": size, "runs": max(3, runs), "encoder": encoder,
            "table": rows}


def _after_engine(store: Any, tmp: Path) -> Any:
    """What a generation runs once the engine has returned: its ``generation_entry`` and the
    service's ``Keeper.keep`` (the save with the preview beside it, as for an MCP caller)."""
    from sdxl_mcp.backend.base import EngineOutput
    from sdxl_mcp.schemas import GenerationRequest
    from sdxl_mcp.service.generate import generation_entry
    from sdxl_mcp.service.keeping import Keeper
    from sdxl_mcp.settings import Settings

    settings = Settings(_env_file=None, output_dir=tmp, log_dir=tmp / "logs",  # type: ignore[call-arg]
                        preload=False)
    keeper = Keeper(settings, lambda: store)
    request = GenerationRequest(prompt="a lighthouse on a cliff at dusk, storm, highly detailed",
                                negative_prompt="blurry", seed=1)

    def run(picture: Any, i: int) -> Any:
        output = EngineOutput(
            image=picture, seed=i, steps_base=16, steps_refiner=4, refined=True,
            refiner_error=None, precision="fp16", device="cuda", base_model="base",
            refiner_model="refiner", timings={"base": 1.0, "refiner": 0.2, "decode": 0.1})
        entry = generation_entry(settings, request, output)
        return keeper.keep(f"job-{i}", output, entry, preview=True)

    return run


def _load(path: Path, size: int) -> Any:
    """The picture at ``path`` as RGB, resized to ``size``²; ValueError names a bad file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as picture:
            return picture.convert("RGB").resize((size, size), Image.Resampling.LANCZOS)
    except (OSError, UnidentifiedImageError) as exc:
        raise ValueError(f"--image {path}: not a picture Pillow can read ({exc})") from None


def _photo_like(size: int) -> Any:
    """A gradient with shapes and grain: compresses like a photo, not like noise."""
    import numpy as np
    from PIL import Image, ImageDraw

    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    rgb = np.dstack([80 + 120 * x, 60 + 150 * y, 140 + 80 * np.sin(6 * x * y)])
    image = Image.fromarray(rgb.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    rng = np.random.default_rng(1)
    for _ in range(40):
        x0, y0 = (int(v) for v in rng.integers(0, size, 2))
        w, h = (int(v) for v in rng.integers(4, max(5, size // 4), 2))
        fill = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x0, y0, x0 + w, y0 + h],
                                                                  fill=fill)
    grain = rng.normal(0, 4, (size, size, 3))
    return Image.fromarray((np.asarray(image) + grain).clip(0, 255).astype(np.uint8))


def _export_steps(store: Any, size: int, timed: Any) -> Any:
    """The export rows: og WebP (resize + encode), the max_bytes search, a whole
    export written to exports/ (temp + fsync + rename), and the same export again."""
    from sdxl_mcp.library import CatalogRecord
    from sdxl_mcp.library.exports import Exporter, encode_within, metadata_options
    from sdxl_mcp.library.resolver import ImageResolver
    from sdxl_mcp.library.transforms import Transform, encode, resize
    from sdxl_mcp.schemas import ExportRequest

    image = _photo_like(size)
    saved = store.save_image(image, seed=1, infotext="a lighthouse\nSteps: 20, Seed: 1",
                             prefix="export_source")
    record = CatalogRecord.from_saved(saved, prompt="a lighthouse, highly detailed")
    store.catalog.add(record)
    source = ImageResolver(store).resolve(record.image_id or "")
    exporter = Exporter(store.output_dir)
    og = Transform("webp", 1200, 630)
    options = metadata_options("webp", "a lighthouse\nSteps: 20, Seed: 1")
    full = len(encode(resize(image, og), "webp", 85, **options))
    cap = max(10_000, full // 2)
    found = encode_within(resize(image, og), "webp", 85, cap, options).quality
    request = ExportRequest(image=record.image_id or "")

    def steps() -> None:
        timed(f"export og WebP q85 from {size}² (resize + encode)", lambda: encode(
            resize(image, og), "webp", 85, **options))
        timed(f"export og WebP, max_bytes={cap} (q85 {full} B -> q{found})", lambda: (
            encode_within(resize(image, og), "webp", 85, cap, options)))
        made = timed("export_image og WebP, written (temp + fsync + rename)",
                     lambda: exporter.export(source, request))
        timed("export_image, the same export again (cached)",
              lambda: exporter.export(source, request))
        for path in (made.path, made.path + ".json"):
            Path(path).unlink()

    return steps
