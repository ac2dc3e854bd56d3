"""What the faces ask of the library: resolve, view, find, export.

One object per started service, over its opened store: the resolver (the only
reader of image arguments), the view cache and the exporter. Every method runs
its blocking work (disk, SQLite, Pillow) in a worker thread, so the event loop
never stalls. No MCP or HTTP code here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import anyio.to_thread

from sdxl_mcp.library.catalog import CatalogRecord
from sdxl_mcp.library.exports import Exporter
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


class Library:
    """What tools, REST routes and the gallery ask of the library."""

    def __init__(self, store: ImageStore, input_dirs: Sequence[Path] = ()) -> None:
        self.store = store
        #: Reads image arguments (image_id, image:// URI, allowed path); blocking calls.
        self.resolver = ImageResolver(store, tuple(input_dirs))
        self._exporter = Exporter(store.output_dir)

    async def resolve(self, reference: str, argument: str = "image") -> ResolvedImage:
        """The image an argument names (see ``library.resolver``)."""
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
        source="pexels" if record.source == "pexels" else "sdxl",
        prompt=record.prompt,
        alt=str(alt) if alt else None,
        width=record.width,
        height=record.height,
        seed=record.seed,
        created=record.created,
    )
