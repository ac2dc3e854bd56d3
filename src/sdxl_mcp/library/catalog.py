"""The SQLite catalog of the images a server holds (``catalog.sqlite3``).

Guarantees:

* one row per published file (generated or downloaded): name, absolute path,
  prompt, parameters, seed, source (``sdxl`` | ``pexels`` | ``url`` | ``upload``),
  source id, sha256, size, creation time and the full Result JSON;
* the catalog lives in the output directory, in WAL mode, and a schema newer
  than this version knows is refused, never rewritten;
* one connection shared by all threads, serialised by a lock;
* every SQLite failure is a :class:`~sdxl_mcp.errors.StorageError` with one
  actionable sentence.

Only catalogued files are served back by name (see
:meth:`~sdxl_mcp.library.store.ImageStore.resolve_name`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sdxl_mcp.errors import StorageError
from sdxl_mcp.library.sqlite import locked

if TYPE_CHECKING:
    from sdxl_mcp.library.files import SavedImage

logger = logging.getLogger(__name__)

__all__ = ["CATALOG_FILENAME", "SCHEMA_VERSION", "SOURCES", "Catalog", "CatalogRecord"]

CATALOG_FILENAME = "catalog.sqlite3"
# 2: the jobs table (now sdxl_mcp.service.jobtable); 3: image ids and full-text search
SCHEMA_VERSION = 3
#: Generated, a Pexels download, fetched from a URL, or a data URI (library.outside_images).
SOURCES = ("sdxl", "pexels", "url", "upload")



_WORD_RE = re.compile(r"\w+", re.UNICODE)


def fts_query(text: str | None) -> str | None:
    """``text`` as an FTS5 query of plain words (None when it has no words)."""
    words = _WORD_RE.findall(text or "")[:32]
    if not words:
        return None
    quoted = [f'"{word}"' for word in words]
    quoted[-1] += "*"  # the last word may still be being typed
    return " ".join(quoted)


def _free_image_id(name: str, taken: Callable[[str], bool]) -> str:
    """The file stem as an image id (URL-safe), made unique if another file has it."""
    stem, _, suffix = name.rpartition(".")
    base = re.sub(r"[^A-Za-z0-9_-]+", "_", stem or name)[:70].strip("_-") or "image"
    base = base if len(base) >= 6 else f"image_{base}"
    candidates = [base, f"{base}-{suffix}"] + [f"{base}-{n}" for n in range(2, 10_000)]
    return next(c for c in candidates if not taken(c))


def _utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


@dataclass
class CatalogRecord:
    """One row of the ``images`` table."""

    name: str
    path: Path
    prompt: str
    sha256: str
    width: int
    height: int
    source: str = "sdxl"  # one of SOURCES
    negative_prompt: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    source_id: str | None = None  # the Pexels photo id; the sha256 of a url/upload
    created: str = field(default_factory=_utc_now_iso)  # ISO-8601 UTC
    result_json: str | None = None  # the full Result as JSON, if known
    #: Identical requests with an explicit seed share it (see ``library.reuse``).
    request_key: str | None = None
    image_id: str | None = None  # set by the catalog (the file stem) when not given
    id: int | None = None  # set by the catalog

    @classmethod
    def from_saved(cls, saved: SavedImage, *, prompt: str, **fields: Any) -> CatalogRecord:
        """A record for a file just written by :meth:`ImageStore.save_image`."""
        return cls(
            name=saved.name,
            path=saved.path,
            prompt=prompt,
            sha256=saved.sha256,
            width=saved.width,
            height=saved.height,
            **fields,
        )


_SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    path TEXT NOT NULL,
    prompt TEXT NOT NULL,
    negative_prompt TEXT,
    parameters TEXT NOT NULL DEFAULT '{}',
    seed INTEGER,
    source TEXT NOT NULL,
    source_id TEXT,
    request_key TEXT,  -- reserved for request reuse (docs/LIBRARY.md); unused
    sha256 TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    created TEXT NOT NULL,
    result_json TEXT
);
CREATE INDEX IF NOT EXISTS images_request_key ON images (request_key);
CREATE INDEX IF NOT EXISTS images_source_id ON images (source, source_id);
"""
# Schema 3: a stable, URL-safe image_id per row, and full-text search over the
# words a person would search by (rowid = images.id).
_SCHEMA_3 = """
CREATE UNIQUE INDEX IF NOT EXISTS images_image_id ON images (image_id);
CREATE VIRTUAL TABLE IF NOT EXISTS images_fts USING fts5(
    prompt, negative_prompt, alt, photographer, tokenize = 'unicode61 remove_diacritics 2'
);
"""
_FTS_COLUMNS = "prompt, negative_prompt, alt, photographer"

_COLUMNS = (
    "id, name, path, prompt, negative_prompt, parameters, seed, source, source_id, "
    "sha256, width, height, created, result_json, request_key, image_id"
)


class Catalog:
    """The SQLite catalog of images this server wrote.

    One connection, shared by all threads and serialised by a lock: writes are
    tiny and rare (one per image), so a pool would only add failure modes.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(self.path, check_same_thread=False, timeout=10.0)
        except sqlite3.Error as exc:
            raise StorageError(
                f"Could not open the image catalog {self.path}: {exc}. {StorageError.HINT}"
            ) from exc
        self._conn.row_factory = sqlite3.Row
        try:
            self._init_schema()
        except (sqlite3.Error, StorageError) as exc:
            self._conn.close()
            if isinstance(exc, StorageError):
                raise
            raise StorageError(
                f"Could not open the image catalog {self.path}: {exc}. "
                f"Move the damaged file aside or set SDXL_MCP_OUTPUT_DIR to another folder."
            ) from exc

    def _init_schema(self) -> None:
        mode = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            # e.g. a network filesystem; the catalog still works, just slower.
            logger.warning("Catalog %s uses journal mode %s, not WAL", self.path, mode)
        self._conn.execute("PRAGMA synchronous=NORMAL")
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StorageError(
                f"The image catalog {self.path} was written by a newer sdxl-mcp "
                f"(schema {version}, this version knows {SCHEMA_VERSION}). Upgrade "
                f"sdxl-mcp or set SDXL_MCP_OUTPUT_DIR to another folder."
            )
        if version < SCHEMA_VERSION:
            with self._conn:
                self._conn.executescript(_SCHEMA)
                self._migrate_to_3()
                self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            logger.info("Catalog %s: schema version %d", self.path, SCHEMA_VERSION)

    def _migrate_to_3(self) -> None:
        """Give every row an image_id and index every row for search (idempotent)."""
        conn = self._conn
        columns = {row[1] for row in conn.execute("PRAGMA table_info(images)")}
        if "image_id" not in columns:
            conn.execute("ALTER TABLE images ADD COLUMN image_id TEXT")
        taken: set[str] = set()
        for row in conn.execute("SELECT id, name FROM images ORDER BY id").fetchall():
            image_id = _free_image_id(row["name"], taken.__contains__)
            taken.add(image_id)
            conn.execute("UPDATE images SET image_id = ? WHERE id = ?", (image_id, row["id"]))
        conn.executescript(_SCHEMA_3)
        conn.execute("DELETE FROM images_fts")
        for row in conn.execute(f"SELECT {_COLUMNS} FROM images").fetchall():
            self._index(self._to_record(row))
        logger.info("Catalog %s: image ids and search index for %d image(s)",
                    self.path, len(taken))

    def _index(self, record: CatalogRecord) -> None:
        parameters = record.parameters
        conn = self._conn
        conn.execute(
            f"INSERT INTO images_fts (rowid, {_FTS_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
            (record.id, record.prompt, record.negative_prompt or "",
             str(parameters.get("alt") or ""), str(parameters.get("photographer") or "")),
        )

    def _locked(self, action: str) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """Hold the lock; sqlite errors become an actionable StorageError."""
        return locked(self._lock, self._conn, f"{action} the image catalog {self.path}")

    def add(self, record: CatalogRecord) -> int:
        """Insert ``record``; returns its id (also set on ``record.id``)."""
        if record.source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {record.source!r}")
        values = (
            record.name,
            str(record.path),
            record.prompt,
            record.negative_prompt,
            json.dumps(record.parameters, sort_keys=True, ensure_ascii=False, default=str),
            record.seed,
            record.source,
            record.source_id,
            record.sha256,
            record.width,
            record.height,
            record.created,
            record.result_json,
            record.request_key,
        )
        with self._locked("write to") as conn, conn:
            image_id = record.image_id or _free_image_id(record.name, self._image_id_taken)
            cursor = conn.execute(
                "INSERT INTO images (name, path, prompt, negative_prompt, parameters, seed, "
                "source, source_id, sha256, width, height, created, result_json, "
                "request_key, image_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*values, image_id),
            )
            row_id = cursor.lastrowid
            assert row_id is not None
            record.id, record.image_id = row_id, image_id
            self._index(record)
        return row_id

    def new_image_id(self, name: str) -> str:
        """The image_id a file called ``name`` will get when it is added now."""
        with self._locked("read"):
            return _free_image_id(name, self._image_id_taken)

    def _image_id_taken(self, image_id: str) -> bool:
        return self._conn.execute(
            "SELECT 1 FROM images WHERE image_id = ?", (image_id,)).fetchone() is not None

    def _query(self, sql: str, args: tuple[Any, ...]) -> list[CatalogRecord]:
        with self._locked("read") as conn:
            rows = conn.execute(f"SELECT {_COLUMNS} FROM images {sql}", args).fetchall()
        return [self._to_record(row) for row in rows]

    @staticmethod
    def _to_record(row: sqlite3.Row) -> CatalogRecord:
        try:
            parameters = json.loads(row["parameters"] or "{}")
        except json.JSONDecodeError:
            parameters = {}
        return CatalogRecord(
            id=row["id"],
            name=row["name"],
            path=Path(row["path"]),
            prompt=row["prompt"],
            negative_prompt=row["negative_prompt"],
            parameters=parameters,
            seed=row["seed"],
            source=row["source"],
            source_id=row["source_id"],
            sha256=row["sha256"],
            width=row["width"],
            height=row["height"],
            created=row["created"],
            result_json=row["result_json"],
            request_key=row["request_key"],
            image_id=row["image_id"],
        )

    def get_by_name(self, name: str) -> CatalogRecord | None:
        rows = self._query("WHERE name = ?", (name,))
        return rows[0] if rows else None

    def get_by_image_id(self, image_id: str) -> CatalogRecord | None:
        rows = self._query("WHERE image_id = ?", (image_id,))
        return rows[0] if rows else None

    def find_by_request_key(self, key: str) -> CatalogRecord | None:
        """The newest image of an identical request whose file still exists."""
        rows = self._query("WHERE request_key = ? ORDER BY created DESC, id DESC", (key,))
        return next((r for r in rows if r.path.is_file()), None)

    def search(
        self, query: str | None, *, source: str | None = None, limit: int = 10, offset: int = 0
    ) -> tuple[int, list[CatalogRecord]]:
        """(total, one page): newest first, or ranked by full-text match of ``query``.

        The query is read as words (FTS syntax such as ``"``, ``*``, ``NEAR(`` or
        ``-`` has no special meaning); every word must match, the last as a prefix.
        """
        match = fts_query(query)
        join, where, args = "", [], []
        if match:
            join = ("JOIN (SELECT rowid AS hit, rank FROM images_fts WHERE images_fts MATCH ?) "
                    "ON hit = images.id")
            args.append(match)
        if source is not None:
            where.append("source = ?")
            args.append(source)
        condition = f"{join} {'WHERE ' + ' AND '.join(where) if where else ''}"
        order = "ORDER BY " + ("rank, " if match else "") + "created DESC, images.id DESC"
        with self._locked("search") as conn:
            total = int(conn.execute(
                f"SELECT COUNT(*) FROM images {condition}", args).fetchone()[0])
        rows = self._query(f"{condition} {order} LIMIT ? OFFSET ?", (*args, limit, offset))
        return total, rows

    def find_by_source_id(self, source: str, source_id: str) -> CatalogRecord | None:
        """The newest record of e.g. a Pexels photo id whose file still exists."""
        rows = self._query(
            "WHERE source = ? AND source_id = ? ORDER BY created DESC, id DESC",
            (source, source_id),
        )
        return next((r for r in rows if r.path.is_file()), None)

    def count(self) -> int:
        with self._locked("read") as conn:
            return int(conn.execute("SELECT COUNT(*) FROM images").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()
