"""The library: every image the server holds, on disk and in the catalog.

* :mod:`~sdxl_mcp.library.files`: the atomic file store (temp file + fsync +
  hard-link publish, never overwriting; sidecars; safe names; temp cleanup);
* :mod:`~sdxl_mcp.library.infotext`: the AUTOMATIC1111 ``parameters`` text;
* :mod:`~sdxl_mcp.library.catalog`: the SQLite catalog of images;
* :mod:`~sdxl_mcp.library.store`: :class:`ImageStore`, files and catalog as one;
* :mod:`~sdxl_mcp.library.stock_photos`: each Pexels photo saved once, catalogued.
* :mod:`~sdxl_mcp.library.exports`: web-ready exports (sizes, names, max_bytes,
  metadata) in ``exports/``; :mod:`~sdxl_mcp.library.alt_text`: alt text from prompts.

No torch and no httpx here: stdlib, pillow, anyio and pydantic models.
"""

from sdxl_mcp.library.catalog import (
    CATALOG_FILENAME,
    SCHEMA_VERSION,
    Catalog,
    CatalogRecord,
)
from sdxl_mcp.library.files import TEMP_PREFIX, FileStore, SavedImage
from sdxl_mcp.library.infotext import (
    PARAMETERS_CHUNK,
    InfotextParams,
    format_infotext,
    parse_infotext,
)
from sdxl_mcp.library.stock_photos import PhotoFetcher, StockPhotos
from sdxl_mcp.library.store import ImageStore

__all__ = [
    "CATALOG_FILENAME",
    "PARAMETERS_CHUNK",
    "SCHEMA_VERSION",
    "TEMP_PREFIX",
    "Catalog",
    "CatalogRecord",
    "FileStore",
    "ImageStore",
    "InfotextParams",
    "PhotoFetcher",
    "SavedImage",
    "StockPhotos",
    "format_infotext",
    "parse_infotext",
]
