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
from typing import Self

from sdxl_mcp.library.catalog import CATALOG_FILENAME, Catalog
from sdxl_mcp.library.files import FileStore

logger = logging.getLogger(__name__)

__all__ = ["ImageStore"]


class ImageStore(FileStore):
    """The atomic file store of one output directory, plus the catalog of what it holds.

    Writing is :class:`FileStore`'s (see its guarantees); ``catalog`` is the SQLite
    catalog; names are served back only when catalogued. Thread-safe.
    """

    def __init__(self, output_dir: str | os.PathLike[str]) -> None:
        super().__init__(output_dir)
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

    # -- reading -----------------------------------------------------------

    def resolve_name(self, name: str) -> Path | None:
        """The path of a catalogued file in the output dir called ``name``, else None.

        Refuses anything that is not a plain file name this store made: path
        separators, traversal, absolute paths, NUL, hidden/temp files, symlinks,
        the catalog itself and files the catalog does not know.
        """
        path = super().resolve_name(name)
        if path is None or name == CATALOG_FILENAME or self.catalog.get_by_name(name) is None:
            return None
        return path
