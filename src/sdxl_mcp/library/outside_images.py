"""Images from outside: URLs and data URIs become library images on arrival.

Guarantees (tests/library/test_outside_images.py; docs/LIBRARY.md "Images from
URLs and data URIs"):

* :func:`is_outside` tells an ``http(s)://`` URL or a ``data:`` URI from the
  references :mod:`sdxl_mcp.library.resolver` reads (ids, ``image://``, paths);
* a URL is fetched by :class:`~sdxl_mcp.library.url_fetch.UrlFetcher` (address
  rules, redirects, size and time caps); URL input can be turned off
  (SDXL_MCP_URL_IMPORT=false), and then a URL is refused before any lookup;
* a data URI is ``data:image/png|jpeg|webp;base64,...``, strict base64, at
  most MAX_UPLOAD_BYTES decoded;
* the bytes are sniffed (PNG, JPEG or WebP by their signature; a Content-Type
  or a data URI's media type is never trusted), and Pillow must read the
  header and find at most MAX_PIXELS, all before anything is written;
* the image is saved atomically and catalogued as source ``url`` (the URL and
  the final URL after redirects recorded) or ``upload``, with its sha256 as
  the source id: the same bytes again give the same ``image_id`` and write
  nothing;
* every refusal is a :class:`~sdxl_mcp.errors.BadRequest` naming the argument
  and the rule, never quoting the bytes.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import io
import re
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio.to_thread
from PIL import Image

from sdxl_mcp.errors import BadRequest
from sdxl_mcp.library.catalog import CatalogRecord
from sdxl_mcp.library.resolver import MAX_PIXELS
from sdxl_mcp.library.store import ImageStore
from sdxl_mcp.schemas.fields import MAX_DATA_URI_CHARS, MAX_UPLOAD_BYTES

if TYPE_CHECKING:
    from sdxl_mcp.library.url_fetch import UrlFetcher

__all__ = ["MAX_UPLOAD_BYTES", "OutsideImages", "is_outside", "sniff_format"]

_DATA_URI_RE = re.compile(r"^data:image/(png|jpeg|jpg|webp);base64,", re.IGNORECASE)
_SUFFIX = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp"}
_SHOWN_FORMATS = "PNG, JPEG or WebP"


def is_outside(reference: str) -> bool:
    """Whether ``reference`` is a URL or a data URI (not an id, image:// URI or path)."""
    head = reference.lstrip()[:8].lower()
    return head.startswith(("http://", "https://", "data:"))


def sniff_format(data: bytes) -> str | None:
    """``PNG``, ``JPEG`` or ``WEBP`` from the first bytes, else None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


class OutsideImages:
    """Brings URLs and data URIs into ``store``.

    ``make_fetcher`` builds the URL fetcher on the first URL (its HTTP client is
    not worth building at start-up); None means URL input is off. Close with
    :meth:`aclose`.
    """

    def __init__(self, store: ImageStore,
                 make_fetcher: Callable[[], UrlFetcher] | None) -> None:
        self.store = store
        self._make_fetcher = make_fetcher
        self._fetcher: UrlFetcher | None = None
        self._saving = threading.Lock()  # one check-then-save at a time: no twin rows

    @property
    def fetcher(self) -> UrlFetcher | None:
        """The URL fetcher (built on first use), or None when URL input is off."""
        if self._fetcher is None and self._make_fetcher is not None:
            self._fetcher = self._make_fetcher()
        return self._fetcher

    async def aclose(self) -> None:
        if self._fetcher is not None:
            await self._fetcher.aclose()
            self._fetcher = None

    async def bring_in(self, reference: str, argument: str) -> CatalogRecord:
        """The catalog row of the image ``reference`` carries, saved on first arrival."""
        reference = reference.strip()
        if reference[:5].lower() == "data:":
            data = _decoded(reference, argument)
            return await anyio.to_thread.run_sync(self._keep, data, "upload", {}, argument)
        fetcher = self.fetcher
        if fetcher is None:
            raise BadRequest(f"{argument}: image URLs are turned off on this server "
                             "(SDXL_MCP_URL_IMPORT=false); pass an image_id or a data: URI.")
        fetched = await fetcher.fetch(reference, argument)
        parameters = {"url": reference, "final_url": fetched.url}
        return await anyio.to_thread.run_sync(self._keep, fetched.data, "url", parameters,
                                              argument)

    def _keep(self, data: bytes, source: str, parameters: dict[str, str],
              argument: str) -> CatalogRecord:
        """Check, then save and catalogue once per content (a worker thread: disk, SQLite)."""
        image_format, width, height = _checked_image(data, argument)
        sha256 = hashlib.sha256(data).hexdigest()
        with self._saving:
            for known_source in ("url", "upload"):
                known = self.store.catalog.find_by_source_id(known_source, sha256)
                if known is not None:
                    return known
            path = self.store.save_bytes(data, name_hint=f"{source}_{sha256[:16]}",
                                         suffix=_SUFFIX[image_format])
            record = CatalogRecord(name=path.name, path=path, prompt="", sha256=sha256,
                                   width=width, height=height, source=source,
                                   source_id=sha256, parameters=parameters)
            try:
                self.store.catalog.add(record)
            except BaseException:
                with contextlib.suppress(OSError):
                    path.unlink()
                raise
            return record


def _decoded(uri: str, argument: str) -> bytes:
    match = _DATA_URI_RE.match(uri)
    if match is None:
        raise BadRequest(f"{argument}: a data URI must start with data:image/png;base64, "
                         "(or image/jpeg, image/webp).")
    payload = re.sub(r"\s+", "", uri[match.end():])
    if len(payload) > MAX_DATA_URI_CHARS:
        raise BadRequest(f"{argument}: the data URI holds over "
                         f"{MAX_UPLOAD_BYTES // (1024 * 1024)} MB; pass a URL or a smaller image.")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"{argument}: the data URI is not valid base64.") from None
    if len(data) > MAX_UPLOAD_BYTES:
        raise BadRequest(f"{argument}: the data URI holds over "
                         f"{MAX_UPLOAD_BYTES // (1024 * 1024)} MB; pass a URL or a smaller image.")
    return data


def _checked_image(data: bytes, argument: str) -> tuple[str, int, int]:
    """(format, width, height) of ``data``, read from the header; BadRequest otherwise."""
    image_format = sniff_format(data)
    if image_format is None:
        raise BadRequest(f"{argument}: the bytes are not a {_SHOWN_FORMATS} image "
                         "(whatever their Content-Type says).")
    try:
        with Image.open(io.BytesIO(data), formats=[image_format]) as image:
            width, height = image.size
            if width * height <= MAX_PIXELS:
                image.load()  # a truncated file fails here, not in the middle of a job
    except Image.DecompressionBombError:
        width = height = MAX_PIXELS  # over the cap, refused below
    except Exception:  # Pillow raises many kinds for "not an image"
        raise BadRequest(f"{argument}: the {image_format} image cannot be read "
                         "(truncated or damaged).") from None
    if width * height > MAX_PIXELS:
        raise BadRequest(f"{argument}: the image is over {MAX_PIXELS // 1_000_000} "
                         "megapixels; use a smaller one.")
    return image_format, width, height
