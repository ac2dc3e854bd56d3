"""Stock photos in the library: each Pexels photo downloaded once, then catalogued.

Guarantees (:meth:`StockPhotos.download`):

* a photo already in the catalog (by Pexels id, its file still on disk, at
  least the wanted size or the biggest there is) is returned with
  ``cached=True`` and no request;
* otherwise the chosen ``src`` variant (:func:`~sdxl_mcp.stock.sizes.choose_src_size`)
  is fetched (the fetcher bounds and time-caps it), checked to be an image,
  published atomically (:mod:`sdxl_mcp.library.files`) and catalogued as
  source ``pexels`` with its photographer, page, ``src`` URL and attribution;
  a failure anywhere leaves no file and no row;
* one download per photo id at a time: concurrent callers for the same photo
  wait for the first and get its file.

The bytes come from a :class:`PhotoFetcher` (the Pexels client): no HTTP here.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
import anyio.to_thread
from PIL import Image

from sdxl_mcp.errors import StockUnavailable
from sdxl_mcp.library.catalog import CatalogRecord
from sdxl_mcp.library.store import ImageStore
from sdxl_mcp.schemas import DownloadedPhoto, PexelsPhoto
from sdxl_mcp.stock.attribution import attribution_text
from sdxl_mcp.stock.sizes import choose_src_size

logger = logging.getLogger(__name__)

__all__ = ["SOURCE", "PhotoFetcher", "StockPhotos"]

SOURCE = "pexels"

_SUFFIX_BY_FORMAT = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif"}
_SUFFIX_BY_CONTENT_TYPE = {
    "image/jpeg": ".jpg",
    "image/jpg": ".jpg",
    "image/png": ".png",
    "image/webp": ".webp",
    "image/gif": ".gif",
}


class PhotoFetcher(Protocol):
    """What fetches a photo's bytes (:class:`~sdxl_mcp.stock.pexels.PexelsClient`)."""

    async def fetch_photo(self, url: str) -> tuple[bytes, str]:
        """The whole body of ``url`` and its content type, or a Stock* error."""
        ...


@dataclass
class _PhotoLock:
    lock: anyio.Lock
    users: int = 0


class StockPhotos:
    """Downloads Pexels photos into ``store`` once each, fetching with ``fetcher``."""

    def __init__(self, store: ImageStore, fetcher: PhotoFetcher) -> None:
        self.store = store
        self._fetcher = fetcher
        self._photo_locks: dict[int, _PhotoLock] = {}

    async def download(
        self,
        photo: PexelsPhoto,
        *,
        width: int | None = None,
        height: int | None = None,
        orientation: str | None = None,
        query: str | None = None,
    ) -> DownloadedPhoto:
        """Save ``photo`` into the store (once) and catalog it with its attribution."""
        size_key = choose_src_size(photo, width=width, height=height, orientation=orientation)
        src_url = photo.src[size_key]
        attribution = attribution_text(photo)
        async with self._lock_photo(photo.id):
            existing = await anyio.to_thread.run_sync(
                self.store.catalog.find_by_source_id, SOURCE, str(photo.id)
            )
            if existing is not None and _satisfies(existing, photo, width, height):
                logger.info("Pexels photo %d already saved at %s", photo.id, existing.path)
                return DownloadedPhoto(
                    photo_id=photo.id,
                    image_id=existing.image_id,
                    path=str(existing.path),
                    source_url=str(existing.parameters.get("src_url") or src_url),
                    attribution=attribution,
                    cached=True,
                    width=existing.width,
                    height=existing.height,
                )
            started = time.perf_counter()
            data, content_type = await self._fetcher.fetch_photo(src_url)
            image_format, (img_w, img_h) = _identify_image(data)
            suffix = (
                _SUFFIX_BY_FORMAT.get(image_format or "")
                or _SUFFIX_BY_CONTENT_TYPE.get(content_type)
                or ".jpg"
            )
            parameters = {
                "photographer": photo.photographer,
                "photographer_url": photo.photographer_url,
                "page_url": photo.url,
                "src_url": src_url,
                "src_size": size_key,
                "attribution": attribution,
                "alt": photo.alt,
                "avg_color": photo.avg_color,
                "query": query,
            }
            prompt = photo.alt.strip() or (query or "").strip() or f"Pexels photo {photo.id}"
            record = await anyio.to_thread.run_sync(
                _save_and_catalog,
                self.store,
                data,
                photo.id,
                suffix,
                prompt,
                parameters,
                img_w or photo.width,
                img_h or photo.height,
            )
            logger.info(
                "Downloaded Pexels photo %d (%s, %d bytes) to %s in %.2f s",
                photo.id,
                size_key,
                len(data),
                record.path,
                time.perf_counter() - started,
            )
            return DownloadedPhoto(
                photo_id=photo.id,
                image_id=record.image_id,
                path=str(record.path),
                source_url=src_url,
                attribution=attribution,
                cached=False,
                width=record.width,
                height=record.height,
            )

    @contextlib.asynccontextmanager
    async def _lock_photo(self, photo_id: int) -> AsyncIterator[None]:
        """One download per photo id at a time, so two callers do not fetch it twice."""
        entry = self._photo_locks.get(photo_id)
        if entry is None:
            entry = self._photo_locks[photo_id] = _PhotoLock(anyio.Lock())
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if entry.users == 0:
                self._photo_locks.pop(photo_id, None)


def _satisfies(
    record: CatalogRecord, photo: PexelsPhoto, width: int | None, height: int | None
) -> bool:
    """Whether an already-saved copy serves this request (big enough, or the best there is)."""
    if not width and not height:
        return True
    if record.width >= (width or 0) and record.height >= (height or 0):
        return True
    if record.parameters.get("src_size") == "original":
        return True
    return record.width >= photo.width and record.height >= photo.height


def _identify_image(data: bytes) -> tuple[str | None, tuple[int, int]]:
    """The image format and size of ``data``; StockUnavailable if it is not an image."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.format, image.size
    except Exception as exc:  # PIL raises many kinds for "not an image"
        logger.warning("Pexels download is not a readable image (%s)", type(exc).__name__)
        raise StockUnavailable(
            "The Pexels download was not an image; try again in a minute."
        ) from None


def _save_and_catalog(
    store: ImageStore,
    data: bytes,
    photo_id: int,
    suffix: str,
    prompt: str,
    parameters: dict[str, Any],
    width: int,
    height: int,
) -> CatalogRecord:
    """Publish ``data`` and record it; runs in a worker thread (fsync, SQLite).

    One function so a cancelled caller cannot leave a published file without
    its catalog row: if the row cannot be written, the file is removed again.
    """
    path = store.save_bytes(data, name_hint=f"pexels_{photo_id}", suffix=suffix)
    record = CatalogRecord(
        name=path.name,
        path=path,
        prompt=prompt,
        sha256=hashlib.sha256(data).hexdigest(),
        width=width,
        height=height,
        source=SOURCE,
        source_id=str(photo_id),
        parameters=parameters,
        result_json=None,
    )
    try:
        store.catalog.add(record)
    except BaseException:
        with contextlib.suppress(OSError):
            path.unlink()
        raise
    return record
