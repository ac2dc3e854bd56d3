"""SQLite as this server uses it: one connection shared by threads, behind a lock.

Writes are tiny and rare (one row per image or job state), so one connection
serialised by a lock is simpler and safer than a pool. Every ``sqlite3.Error``
becomes a :class:`~sdxl_mcp.errors.StorageError` with one actionable sentence.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator

from sdxl_mcp.errors import StorageError


@contextlib.contextmanager
def locked(
    lock: threading.Lock, conn: sqlite3.Connection, doing: str
) -> Iterator[sqlite3.Connection]:
    """Hold ``lock`` while using ``conn``; ``doing`` completes "Could not ..."."""
    with lock:
        try:
            yield conn
        except sqlite3.Error as exc:
            raise StorageError(f"Could not {doing}: {exc}. {StorageError.HINT}") from exc
