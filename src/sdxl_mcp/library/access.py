"""What the faces ask of the library: resolve, view, find, export.

One object per started service, over its opened store: the resolver (the only
reader of image arguments), images from outside (URLs and data URIs, brought
into the library before the resolver reads them), the view cache and the
exporter. Every method runs its blocking work (disk, SQLite, Pillow) in a
worker thread, so the event loop never stalls. No MCP or HTTP-server code here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import anyio.to_thread

from sdxl_mcp.library.catalog import SOURCES, CatalogRecord
from sdxl_mcp.library.exports import Exporter
from sdxl_mcp.library.outside_images import OutsideImages, is_outside
from sdxl_mcp.library.resolver import ImageResolver, ResolvedImage
from sdxl_mcp.library.store import ImageStore
from sdxl_mcp.library.transforms import Transform
from sdxl_mcp.library.views import served_image, view_bytes
from sdxl_mcp.schemas import (
    ExportRequest,
    ExportResult,
    FindImagesRequest,
    FindImagesResult,
    LibraryImage,
)

if TYPE_CHECKING:
    from sdxl_mcp.library.url_fetch import UrlFetcher


class Library:
    """What tools, REST routes and the gallery ask of the library."""

    def __init__(self, store: ImageStore, input_dirs: Sequence[Path] = (), *,
                 make_url_fetcher: Callable[[], UrlFetcher] | None = None) -> None:
        self.store = store
        #: Reads image arguments (image_id, image:// URI, allowed path); blocking calls.
        self.resolver = ImageResolver(store, tuple(input_dirs))
        #: URLs and data URIs; ``make_url_fetcher`` None turns URL input off.
        self.outside = OutsideImages(store, make_url_fetcher)
        self._exporter = Exporter(store.output_dir)

    async def aclose(self) -> None:
        """Close the URL fetcher's connections (if one was made)."""
        await self.outside.aclose()

    async def resolve(self, reference: str, argument: str = "image") -> ResolvedImage:
        """The image an argument names (``library.resolver``); a URL or a data URI is
        brought into the library first (``library.outside_images``)."""
        if is_outside(reference):
            record = await self.outside.bring_in(reference, argument)
            reference = record.image_id or record.name
        return await anyio.to_thread.run_sync(self.resolver.resolve, reference, argument)

    async def view_image(self, reference: str, transform: Transform | None) -> tuple[bytes, str]:
        """(bytes, MIME type) of a library image, transformed (cached) or the original.

        ``reference`` is an image_id, a catalogued file name or an image:// URI;
        anything else is NotFound (see ``library.views``).
        """
        return await anyio.to_thread.run_sync(
            lambda: view_bytes(served_image(self.resolver, reference), transform))

    async def find_images(self, request: FindImagesRequest) -> FindImagesResult:
        """The library, newest first or ranked by full-text match."""
        total, records = await anyio.to_thread.run_sync(lambda: self.store.catalog.search(
            request.query, source=request.source, limit=request.limit, offset=request.offset))
        return FindImagesResult(total=total, images=[library_image(r) for r in records])

    async def export_image(self, request: ExportRequest) -> ExportResult:
        """A web-ready copy in OUTPUT_DIR/exports (see ``library.exports``)."""
        resolved = await self.resolve(request.image, "image")
        return await anyio.to_thread.run_sync(self._exporter.export, resolved, request)


def library_image(record: CatalogRecord) -> LibraryImage:
    """One ``find_images`` entry from its catalog row."""
    alt = record.parameters.get("alt") if record.source == "pexels" else None
    return LibraryImage(
        image_id=record.image_id or record.path.stem,
        uri=f"image://{record.image_id or record.path.stem}",
        path=str(record.path),
        source=record.source if record.source in SOURCES else "sdxl",  # type: ignore[arg-type]
        prompt=record.prompt,
        alt=str(alt) if alt else None,
        width=record.width,
        height=record.height,
        seed=record.seed,
        created=record.created,
    )
