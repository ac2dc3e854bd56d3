"""Compare PNG encoder settings on pictures of your own: median ms and bytes.

    .venv/bin/python -m sdxl_mcp.bench.png_encoders [--size 1024] [--runs 5] IMAGE ...

Each IMAGE is resized to SIZE² (RGB); the bench's photo-like image is always
included. Rows: libpng (imagecodecs.png_encode, level 1) with each filter and
zlib strategy; the server's encoder (sdxl_mcp.library.png.encode_png, level 1:
libpng's stored Paeth rows, zlib-ng RLE in one part per core); Pillow's level 1
(the light install); libspng; and Intel ISA-L level 1 on the same rows when
the `isal` package is installed (it is not a dependency). In memory only, no
file: `sdxl-mcp bench --hotpath --image` times the server's whole path.
docs/PERFORMANCE.md ("Leads we checked and dropped") quotes this script.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import time
import zlib
from collections.abc import Callable
from functools import partial
from pathlib import Path

import imagecodecs
import numpy as np
from PIL import Image

from sdxl_mcp.bench.hotpath import _photo_like
from sdxl_mcp.bench.report import load_average, machine_facts
from sdxl_mcp.library import png

#: One encoder setting: a call that returns the encoded bytes.
Encode = Callable[[], bytes | bytearray]


def _say(line: str) -> None:
    """One line of the report on stdout (this is a command, not the server)."""
    sys.stdout.write(line + "\n")


def _median_ms(fn: Encode, runs: int) -> tuple[float, int]:
    times: list[float] = []
    out: bytes | bytearray = b""
    for _ in range(runs):
        started = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), len(out)


def _rows(pixels: np.ndarray) -> bytes:
    """libpng's Paeth-filtered rows, as the server's encoder starts from."""
    stored = imagecodecs.png_encode(pixels, level=0, filter=imagecodecs.PNG.FILTER.PAETH)
    return zlib.decompress(png._split_at_image_data(bytes(stored))[1])


def _isal(rows: bytes) -> Encode | None:
    try:
        from isal import isal_zlib
    except ImportError:
        return None
    return lambda: isal_zlib.compress(rows, 1)


def _compare(name: str, picture: Image.Image, runs: int) -> None:
    pixels = np.asarray(picture)
    codes = imagecodecs.PNG
    _say(f"{name} ({picture.width}x{picture.height})")
    cases: dict[str, Encode] = {}
    for filt in ("NONE", "SUB", "UP", "AVG", "PAETH"):
        for strategy in ("RLE", "HUFFMAN_ONLY", "DEFAULT"):
            cases[f"libpng {filt} + {strategy}"] = partial(
                imagecodecs.png_encode, pixels, level=1, filter=getattr(codes.FILTER, filt),
                strategy=getattr(codes.STRATEGY, strategy))
    cases["server encode_png, level 1"] = lambda: png.encode_png(picture, None, 1)
    cases["Pillow level 1"] = lambda: png._pillow_png(picture, None, 1)
    cases["libspng level 1"] = lambda: imagecodecs.spng_encode(pixels, level=1)
    isal = _isal(_rows(pixels))
    if isal is not None:
        cases["ISA-L level 1 on the Paeth rows (deflate only)"] = isal
    for label, fn in cases.items():
        ms, size = _median_ms(fn, runs)
        _say(f"  {label:48} {ms:7.1f} ms {size:10d} bytes")
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", compress_level=6)
    _say(f"  {'(Pillow level 6, for the size)':48} {'':10} {len(buffer.getvalue()):10d} bytes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="*", type=Path)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    # What the figures depend on, first: the command, the code, the load, the libraries.
    _say(f"# python -m sdxl_mcp.bench.png_encoders {' '.join(sys.argv[1:])}")
    _say(f"# machine {json.dumps(machine_facts())}; load at start {load_average()}")
    _say(f"# {imagecodecs.version()}")
    _compare("photo-like", _photo_like(args.size), args.runs)
    for path in args.images:
        # Resized as `bench --hotpath --image` does.
        with Image.open(path) as opened:
            picture = opened.convert("RGB").resize((args.size, args.size),
                                                   Image.Resampling.LANCZOS)
        _compare(path.name, picture, args.runs)


if __name__ == "__main__":
    main()
