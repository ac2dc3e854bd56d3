"""Images for tests: noise, masks, and pictures catalogued as the service does it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from sdxl_mcp.library import CatalogRecord, ImageStore


def catalogue(store: ImageStore, image: Image.Image, *, prompt: str = "a red square",
              source: str = "sdxl", **fields: Any) -> CatalogRecord:
    """A PNG published and catalogued as the service does it; its record."""
    saved = store.save_image(image, seed=1, infotext=None)
    record = CatalogRecord.from_saved(saved, prompt=prompt, source=source,
                                      image_id=store.catalog.new_image_id(saved.name), **fields)
    store.catalog.add(record)
    return record


def noise(size: tuple[int, int] = (256, 256)) -> Image.Image:
    return Image.fromarray(
        np.random.RandomState(0).randint(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def half_mask(size: tuple[int, int] = (256, 256), fill: int = 255) -> Image.Image:
    mask = Image.new("L", size, 0)
    mask.paste(fill, (0, 0, size[0] // 2, size[1]))
    return mask


def files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file() and "catalog" not in p.name}
