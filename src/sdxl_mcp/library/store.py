"""ImageStore: the output directory's files and their catalog, as one object.

Guarantees (each kept by the module named):

* files are published atomically and never overwrite each other
  (:mod:`sdxl_mcp.library.files`);
* every image the server made or downloaded is recorded in ``catalog.sqlite3``
  in the output directory (:mod:`sdxl_mcp.library.catalog`);
* only catalogued plain files in the output directory are served back by name
  (:meth:`ImageStore.resolve_name`): a file dropped into the folder, a symlink,
  a temp file or the catalog itself never is.

Opening a store creates the folder if needed, proves it writable and opens
(or creates) the catalog; close it with :meth:`ImageStore.close` or use it as
a context manager. No torch here.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from PIL import Image

from sdxl_mcp.library.catalog import CATALOG_FILENAME, Catalog
from sdxl_mcp.library.files import FileStore, SavedImage

logger = logging.getLogger(__name__)

__all__ = ["ImageStore"]


class ImageStore:
    """Writes images into one output directory and catalogues them.

    ``files`` is the atomic file store, ``catalog`` the SQLite catalog; the
    methods here are what the service calls. Thread-safe.
    """

    def __init__(self, output_dir: str | os.PathLike[str]) -> None:
        self.files = FileStore(output_dir)
        self.output_dir: Path = self.files.output_dir
        self.catalog = Catalog(self.output_dir / CATALOG_FILENAME)
        logger.info("Image store at %s (%d catalogued)", self.output_dir, self.catalog.count())

    # -- context manager ---------------------------------------------------

    def close(self) -> None:
        self.catalog.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- writing (see FileStore for the guarantees) --------------------------

    def save_image(
        self,
        image: Image.Image,
        *,
        seed: int | None,
        infotext: str | None,
        prefix: str = "generated_image",
        compress_level: int = 1,
    ) -> SavedImage:
        """Encode ``image`` as PNG and publish it; see :meth:`FileStore.save_image`."""
        return self.files.save_image(
            image, seed=seed, infotext=infotext, prefix=prefix, compress_level=compress_level
        )

    def save_bytes(self, data: bytes, *, name_hint: str, suffix: str) -> Path:
        """Publish already-encoded bytes; see :meth:`FileStore.save_bytes`."""
        return self.files.save_bytes(data, name_hint=name_hint, suffix=suffix)

    def write_sidecar(self, image_path: Path, payload: dict[str, Any]) -> Path:
        """Write ``<image stem>.json`` beside ``image_path`` (atomic replace)."""
        return self.files.write_sidecar(image_path, payload)

    def discard(self, image_path: Path) -> None:
        """Remove a published image and its sidecar whose recording failed."""
        self.files.discard(image_path)

    def cleanup_temp_files(self, min_age_s: float = 0.0) -> int:
        """Remove leftover ``.tmp-*`` files (from a crash); returns how many."""
        return self.files.cleanup_temp_files(min_age_s)

    # -- reading -----------------------------------------------------------

    def resolve_name(self, name: str) -> Path | None:
        """The path of a catalogued file in the output dir called ``name``, else None.

        Refuses anything that is not a plain file name this store made: path
        separators, traversal, absolute paths, NUL, hidden/temp files, symlinks,
        the catalog itself and files the catalog does not know.
        """
        path = self.files.resolve_name(name)
        if path is None or name == CATALOG_FILENAME or self.catalog.get_by_name(name) is None:
            return None
        return path
