"""Inline previews: JPEG, longest side ≤ 512 px, aspect kept, colours faithful."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import sdxl_mcp.library.previews
from sdxl_mcp.library.previews import (
    PREVIEW_MAX_BYTES,
    preview_jpeg,
    preview_jpeg_image,
    while_previewing,
)


def _decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    assert image.format == "JPEG"
    return image


def test_a_square_image_previews_at_512_px() -> None:
    source = Image.new("RGB", (1024, 1024), (200, 40, 90))
    assert _decode(preview_jpeg_image(source)).size == (512, 512)


def test_a_non_square_image_keeps_its_aspect_ratio() -> None:
    source = Image.new("RGB", (1152, 896), (10, 120, 230))
    width, height = _decode(preview_jpeg_image(source)).size
    assert width == 512
    assert abs(height - round(512 * 896 / 1152)) <= 1


def test_a_small_image_is_not_enlarged() -> None:
    source = Image.new("RGB", (256, 128), (0, 0, 0))
    assert _decode(preview_jpeg_image(source)).size == (256, 128)


def test_the_preview_keeps_the_colours_of_a_gradient() -> None:
    ramp = np.tile(np.linspace(0, 255, 1024, dtype=np.uint8)[None, :, None], (1024, 1, 3))
    preview = np.asarray(_decode(preview_jpeg_image(Image.fromarray(ramp))), dtype=float)
    expected = np.tile(np.linspace(0, 255, 512)[None, :, None], (512, 1, 3))
    assert np.abs(preview - expected).mean() < 3.0


def test_the_callers_image_is_not_modified() -> None:
    source = Image.new("RGBA", (1024, 768), (1, 2, 3, 255))
    preview_jpeg_image(source)
    assert source.size == (1024, 768) and source.mode == "RGBA"


def test_noise_stays_under_the_inline_size_cap() -> None:
    noise = np.random.default_rng(0).integers(0, 256, (2048, 2048, 3), dtype=np.uint8)
    assert len(preview_jpeg_image(Image.fromarray(noise))) < PREVIEW_MAX_BYTES


def test_a_preview_can_be_made_from_a_saved_png(tmp_path: Path) -> None:
    path = tmp_path / "image.png"
    Image.new("RGB", (1024, 512), (50, 60, 70)).save(path)
    assert _decode(preview_jpeg(path)).size == (512, 256)


def test_while_previewing_returns_the_work_and_the_preview() -> None:
    source = Image.new("RGB", (1024, 512), (10, 120, 200))
    out, preview = while_previewing(source, lambda: "saved")
    assert out == "saved"
    assert _decode(preview).size == (512, 256)


def test_while_previewing_raises_the_works_error_once_the_preview_is_done(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = Image.new("RGB", (64, 64))
    preview_done = threading.Event()

    def slow_preview(image: Image.Image) -> bytes:
        time.sleep(0.2)  # far longer than the failing work takes
        preview_done.set()
        return b""

    def failing_save() -> str:
        raise OSError("disk full")

    monkeypatch.setattr(sdxl_mcp.library.previews, "preview_jpeg_image", slow_preview)
    with pytest.raises(OSError, match="disk full"):
        while_previewing(source, failing_save)
    assert preview_done.is_set(), "the error reached the caller before the preview was done"
