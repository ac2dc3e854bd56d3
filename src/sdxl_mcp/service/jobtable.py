"""The SQLite table of job outcomes, so a restart can tell "lost" from "never existed".

Guarantees:

* the table lives in the output folder's ``catalog.sqlite3`` (its own
  connection, WAL like the image catalog), so job ids outlive the process;
* a job queued or running when a process stopped is reported as ``lost`` by the
  next one (:meth:`JobTable.mark_unfinished_lost`, called once at start-up);
* at most :data:`MAX_JOB_ROWS` jobs are kept (the newest);
* every SQLite failure is a :class:`~sdxl_mcp.errors.StorageError` with one
  actionable sentence.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

from sdxl_mcp.errors import StorageError
from sdxl_mcp.library.sqlite import locked

#: Jobs the table remembers (newest kept); plenty for "what happened to my job".
MAX_JOB_ROWS = 10_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    created TEXT NOT NULL,
    updated TEXT NOT NULL,
    result_json TEXT
);
"""


def _utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


class JobTable:
    """Job id -> (status, result JSON). One connection, serialised by a lock."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(self.path, check_same_thread=False, timeout=10.0)
            self._conn.execute("PRAGMA journal_mode=WAL")
            with self._conn:
                self._conn.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            with contextlib.suppress(Exception):
                self._conn.close()
            raise StorageError(
                f"Could not open the job table in {self.path}: {exc}. {StorageError.HINT}"
            ) from exc

    def _locked(self, action: str) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return locked(self._lock, self._conn, f"{action} the job table in {self.path}")

    def save(self, job_id: str, status: str, result_json: str | None = None) -> None:
        now = _utc_now_iso()
        with self._locked("record a job in") as conn, conn:
            conn.execute(
                "INSERT INTO jobs (id, status, created, updated, result_json) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
                "status=excluded.status, updated=excluded.updated, "
                "result_json=excluded.result_json",
                (job_id, status, now, now, result_json),
            )

    def get(self, job_id: str) -> tuple[str, str | None] | None:
        """(status, result JSON) of a job this output folder has seen, or None."""
        with self._locked("read a job from") as conn:
            row = conn.execute(
                "SELECT status, result_json FROM jobs WHERE id = ?", (job_id,)
            ).fetchone()
        return None if row is None else (row[0], row[1])

    def mark_unfinished_lost(self) -> int:
        """At start-up: jobs a previous process queued or ran never finished."""
        with self._locked("update jobs in") as conn, conn:
            lost = conn.execute(
                "UPDATE jobs SET status = 'lost', updated = ? "
                "WHERE status IN ('queued', 'running')",
                (_utc_now_iso(),),
            ).rowcount
            conn.execute(
                "DELETE FROM jobs WHERE id NOT IN "
                "(SELECT id FROM jobs ORDER BY updated DESC LIMIT ?)",
                (MAX_JOB_ROWS,),
            )
        return int(lost)

    def close(self) -> None:
        with self._lock:
            self._conn.close()
