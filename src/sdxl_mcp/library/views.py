"""Served views of library images: the original bytes, a cached transform, the metadata.

What the ``image://`` resources and ``GET /api/media/images/{ref}`` serve (docs/TOOLS.md
"Images as resources, and errors"): only the library (anything else is ``NotFound``, never
file contents); the original bytes when a transform changes nothing; each transform rendered
once per file version in the shared :class:`ViewCache` (details: docs/ARCHITECTURE.md
"Guarantees"). Everything here blocks (disk, Pillow): call it from a worker thread.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from typing import Any

from PIL import Image

from sdxl_mcp.errors import BadRequest, NotFound
from sdxl_mcp.library.resolver import IMAGE_URI_PREFIX, ImageResolver, ResolvedImage
from sdxl_mcp.library.transforms import MIME_TYPES, Transform, render, sniff_format

#: The default bound of the shared cache.
CACHE_BYTES = 64 * 1024 * 1024
#: What a library reference may look like (an image_id or a file name): no paths.
_REFERENCE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")
_PIL_TO_FORMAT = {"PNG": "png", "WEBP": "webp", "JPEG": "jpeg", "MPO": "jpeg"}

CacheKey = tuple[str, int, int, Transform]


class ViewCache:
    """Rendered views, least recently used dropped first once ``max_bytes`` is passed."""

    def __init__(self, max_bytes: int = CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[CacheKey, tuple[bytes, str]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def total_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: CacheKey) -> tuple[bytes, str] | None:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def put(self, key: CacheKey, item: tuple[bytes, str]) -> None:
        """Keep ``item`` unless it alone is over the bound; evict the oldest to fit."""
        size = len(item[0])
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= len(old[0])
            self._items[key] = item
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= len(dropped[0])

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0


#: The one cache the MCP resources and the REST route share.
VIEWS = ViewCache()


def served_image(resolver: ImageResolver, reference: str) -> ResolvedImage:
    """The library image ``reference`` names; ``NotFound`` for anything else."""
    ref = reference[len(IMAGE_URI_PREFIX):] if reference.startswith(IMAGE_URI_PREFIX) else reference
    missing = NotFound(f"No image {_short(ref)} on this server; use an image_id from "
                       "find_images or a Result.")
    if not _REFERENCE_RE.match(ref) or ".." in ref:
        raise missing
    try:
        resolved = resolver.resolve(ref, "image_id")
    except (BadRequest, NotFound):  # one answer, whatever the reason
        raise missing from None
    if resolved.record is None:  # only catalogued files are served
        raise missing
    return resolved


def view_transform(
    format: str | None = None,
    width: str | int | None = None,
    height: str | int | None = None,
    fit: str | None = None,
    quality: str | int | None = None,
) -> Transform | None:
    """The transform the query asks for (None when it gives no value); BadRequest names one."""
    if all(value is None for value in (format, width, height, fit, quality)):
        return None
    return Transform(
        format=(format.lower() if isinstance(format, str) else "png"),  # type: ignore[arg-type]
        width=_whole(width),  # type: ignore[arg-type]
        height=_whole(height),  # type: ignore[arg-type]
        fit="cover" if fit is None else fit,  # type: ignore[arg-type]
        quality=85 if quality is None else _whole(quality),  # type: ignore[arg-type]
    )


def view_bytes(
    resolved: ResolvedImage, transform: Transform | None, cache: ViewCache = VIEWS
) -> tuple[bytes, str]:
    """``(bytes, MIME type)`` of ``resolved`` as ``transform`` asks (cached), or the original."""
    source_format = _PIL_TO_FORMAT.get(resolved.format or "")
    if transform is None or (transform.width is None and transform.height is None
                             and transform.format == source_format):
        data = resolved.path.read_bytes()
        return data, mime_type(data)
    stat = resolved.path.stat()
    key: CacheKey = (resolved.image_id or str(resolved.path), stat.st_mtime_ns, stat.st_size,
                     transform)
    cached = cache.get(key)
    if cached is not None:
        return cached
    try:
        with Image.open(resolved.path) as image:
            if image.format == "JPEG":
                # Decode at 1/2, 1/4 or 1/8 scale when the output is that much smaller.
                image.draft("RGB", transform.size_for(image.width, image.height))
            image.load()
            data = render(image, transform)
    except (OSError, ValueError, SyntaxError):  # a truncated or damaged file
        raise NotFound(f"The file of image {_short(resolved.path.name)} cannot be read.") from None
    item = (data, MIME_TYPES[transform.format])
    cache.put(key, item)
    return item


def metadata_json(resolved: ResolvedImage) -> str:
    """The sidecar JSON beside the image, or (a stock photo without one) its catalog row's."""
    sidecar = resolved.path.with_suffix(".json")
    if sidecar.is_file() and not sidecar.is_symlink():
        return sidecar.read_text(encoding="utf-8")
    record = resolved.record
    payload: dict[str, Any] = {"image_id": resolved.image_id, "path": str(resolved.path),
                               "width": resolved.width, "height": resolved.height}
    if record is not None:
        params = record.parameters
        payload.update({
            "source": record.source,
            "prompt": record.prompt,
            "created": record.created,
            "seed": record.seed,
        })
        if record.source == "pexels":
            payload.update({
                "photo_id": record.source_id,
                "attribution": params.get("attribution"),
                "photographer": params.get("photographer"),
                "photographer_url": params.get("photographer_url"),
                "page_url": params.get("page_url"),
                "alt": params.get("alt"),
                "src_url": params.get("src_url"),
            })
    return json.dumps(payload, ensure_ascii=False, indent=2)


def original_mime_type(resolved: ResolvedImage) -> str:
    """The MIME type of the file itself, from the format Pillow identified."""
    kind = _PIL_TO_FORMAT.get(resolved.format or "")
    if kind is None:
        return f"image/{resolved.format.lower()}" if resolved.format else "application/octet-stream"
    return MIME_TYPES[kind]


def mime_type(data: bytes) -> str:
    """The MIME type the magic bytes say (``application/octet-stream`` if unknown)."""
    kind = sniff_format(data)
    return MIME_TYPES.get(kind or "", f"image/{kind}" if kind else "application/octet-stream")


def _whole(value: str | int | None) -> int | str | None:
    """A query value as an int when it is one (else as given, for Transform to refuse)."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 10:
        return int(value)
    return value


def _short(value: str) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


__all__ = ["CACHE_BYTES", "VIEWS", "ViewCache", "metadata_json", "mime_type",
           "original_mime_type", "served_image", "view_bytes", "view_transform"]
