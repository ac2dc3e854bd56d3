"""Image storage: atomic writes, PNG metadata, sidecar JSON and a SQLite catalog.

Guarantees this module gives the rest of the server:

* a published file is always complete: bytes go to a ``.tmp-*`` file in the
  output directory, are fsynced, and only then appear under their final name;
* files never overwrite each other: the final name is claimed with ``os.link``,
  which fails if the name exists, and a ``-1``, ``-2`` ... suffix is tried next;
* on any failure nothing partial is left behind and a :class:`StorageError`
  with an actionable sentence is raised;
* every PNG carries its generation parameters in a ``parameters`` text chunk in
  the AUTOMATIC1111 format, so other tools (A1111, ComfyUI, exif viewers) read it;
* every image the server made is recorded in ``catalog.sqlite3`` in the output
  directory; only catalogued files can be served back by name.

No torch here: stdlib and pillow only.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import logging
import os
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from sdxl_mcp.errors import StorageError

logger = logging.getLogger(__name__)

__all__ = [
    "CATALOG_FILENAME",
    "SCHEMA_VERSION",
    "TEMP_PREFIX",
    "Catalog",
    "CatalogRecord",
    "ImageStore",
    "InfotextParams",
    "SavedImage",
    "format_infotext",
    "parse_infotext",
    "request_key",
]

CATALOG_FILENAME = "catalog.sqlite3"
SCHEMA_VERSION = 2  # 2: the jobs table
TEMP_PREFIX = ".tmp-"
PARAMETERS_CHUNK = "parameters"
SOURCES = ("sdxl", "pexels")

_FIX_HINT = "Free disk space or set SDXL_MCP_OUTPUT_DIR to a writable folder."
# Names this store creates and is willing to serve back: no separators, no
# leading dot (hidden / temp files), nothing a shell or URL would mangle.
_SAFE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")
_SUFFIX_RE = re.compile(r"^\.[A-Za-z0-9]{1,10}$")
# How many "-N" suffixes to try before concluding something is badly wrong.
_MAX_NAME_ATTEMPTS = 1000
# errnos meaning "this filesystem cannot make hard links" (FAT, some network mounts).
_NO_LINK_ERRNOS = frozenset(
    code
    for code in (
        getattr(errno, "EPERM", None),
        getattr(errno, "EOPNOTSUPP", None),
        getattr(errno, "ENOTSUP", None),
        getattr(errno, "ENOSYS", None),
        getattr(errno, "EXDEV", None),
    )
    if code is not None
)


# --------------------------------------------------------------------------
# AUTOMATIC1111 "parameters" infotext
# --------------------------------------------------------------------------

_NEGATIVE_PREFIX = "Negative prompt:"
# One "Key: value" pair of the last line; values with , : " or newlines are
# JSON-quoted by format_infotext (A1111 does the same).
_PARAM_RE = re.compile(r'\s*(\w[\w \-/]*?):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')
# A1111's rule: a last line with fewer key/value pairs is part of the prompt.
_MIN_PARAMS_ON_LAST_LINE = 3


@dataclass(frozen=True, kw_only=True)
class InfotextParams:
    """What goes into the ``parameters`` chunk of a generated PNG."""

    prompt: str
    negative_prompt: str | None = None
    steps: int
    sampler: str = "Euler"
    cfg_scale: float
    seed: int
    width: int
    height: int
    model: str
    refiner: str | None = None
    refiner_switch_at: float | None = None
    refiner_mode: str | None = None
    refiner_steps: int | None = None
    refiner_strength: float | None = None


def _quote(value: str) -> str:
    """Quote a value only when it would otherwise break the ``Key: value, ...`` line."""
    if value and value == value.strip() and not any(c in value for c in ',:"\n\r'):
        return value
    return json.dumps(value, ensure_ascii=False)


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        try:
            decoded = json.loads(value)
        except json.JSONDecodeError:
            return value
        if isinstance(decoded, str):
            return decoded
    return value


def _fmt_number(value: float) -> str:
    # ints stay ints; floats keep Python's shortest round-trip form (8.0, 0.8).
    return str(value) if isinstance(value, int) else repr(float(value))


def format_infotext(params: InfotextParams) -> str:
    """Render ``params`` in the AUTOMATIC1111 ``parameters`` format.

    ``<prompt>\\nNegative prompt: <neg>\\nSteps: N, Sampler: ..., ...``; the
    negative line is omitted when there is no negative prompt and the Refiner
    keys when there is no refiner.
    """
    pairs: list[tuple[str, str]] = [
        ("Steps", str(params.steps)),
        ("Sampler", params.sampler),
        ("CFG scale", _fmt_number(params.cfg_scale)),
        ("Seed", str(params.seed)),
        ("Size", f"{params.width}x{params.height}"),
        ("Model", params.model),
    ]
    if params.refiner:
        pairs.append(("Refiner", params.refiner))
        if params.refiner_switch_at is not None:
            pairs.append(("Refiner switch at", _fmt_number(params.refiner_switch_at)))
        if params.refiner_mode is not None:
            pairs.append(("Refiner mode", params.refiner_mode))
        if params.refiner_steps is not None:
            pairs.append(("Refiner steps", str(params.refiner_steps)))
        if params.refiner_strength is not None:
            pairs.append(("Refiner strength", _fmt_number(params.refiner_strength)))

    lines = [params.prompt]
    if params.negative_prompt:
        lines.append(f"{_NEGATIVE_PREFIX} {params.negative_prompt}")
    lines.append(", ".join(f"{key}: {_quote(value)}" for key, value in pairs))
    return "\n".join(lines)


def _parse_params_line(line: str) -> dict[str, str] | None:
    pairs = {m.group(1): _unquote(m.group(2)) for m in _PARAM_RE.finditer(line) if m.group(1)}
    return pairs if len(pairs) >= _MIN_PARAMS_ON_LAST_LINE else None


def parse_infotext(text: str) -> dict[str, str]:
    """Parse an AUTOMATIC1111 ``parameters`` text back into a flat dict.

    Returns ``{"prompt": ..., "negative_prompt": ..., "Steps": "50", ...}``; all
    values are strings, ``negative_prompt`` is ``""`` when absent. As in A1111,
    every line before the first ``Negative prompt:`` line is the prompt, the
    last line holds the key/value pairs, and lines in between are the negative
    prompt. (So a prompt that itself contains a line starting with
    ``Negative prompt:`` cannot round-trip; A1111 has the same limit.)
    """
    lines = text.split("\n")  # not splitlines(): it also splits on \x0b, \x1c, ...
    params = _parse_params_line(lines[-1])
    body = lines[:-1] if params is not None else lines

    prompt_lines: list[str] = []
    negative_lines: list[str] = []
    in_negative = False
    for line in body:
        if not in_negative and line.startswith(_NEGATIVE_PREFIX):
            in_negative = True
            line = line[len(_NEGATIVE_PREFIX) :]
            line = line[1:] if line.startswith(" ") else line
        (negative_lines if in_negative else prompt_lines).append(line)

    result = {"prompt": "\n".join(prompt_lines), "negative_prompt": "\n".join(negative_lines)}
    result.update(params or {})
    return result


def request_key(params: dict[str, Any]) -> str:
    """A stable key for a request: sha256 of its canonical JSON (sorted keys).

    Used to find an identical earlier request with an explicit seed. Callers
    should pass normalised values (e.g. a pydantic ``model_dump()``) so that
    8 and 8.0 do not give two keys.
    """
    canonical = json.dumps(
        params, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------
# Catalog
# --------------------------------------------------------------------------


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
    source: str = "sdxl"  # 'sdxl' | 'pexels'
    negative_prompt: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    source_id: str | None = None  # e.g. the Pexels photo id
    request_key: str | None = None
    created: str = field(default_factory=_utc_now_iso)  # ISO-8601 UTC
    result_json: str | None = None  # the full Result as JSON, if known
    id: int | None = None  # set by the catalog

    @classmethod
    def from_saved(cls, saved: SavedImage, *, prompt: str, **fields: Any) -> CatalogRecord:
        """A record for a file just written by :class:`ImageStore`."""
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
    request_key TEXT,
    sha256 TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    created TEXT NOT NULL,
    result_json TEXT
);
CREATE INDEX IF NOT EXISTS images_request_key ON images (request_key);
CREATE INDEX IF NOT EXISTS images_source_id ON images (source, source_id);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    created TEXT NOT NULL,
    updated TEXT NOT NULL,
    result_json TEXT
);
"""

#: Jobs the catalog remembers (newest kept); plenty for "what happened to my job".
MAX_JOB_ROWS = 10_000

_COLUMNS = (
    "id, name, path, prompt, negative_prompt, parameters, seed, source, source_id, "
    "request_key, sha256, width, height, created, result_json"
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
                f"Could not open the image catalog {self.path}: {exc}. {_FIX_HINT}"
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
                self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            logger.info("Catalog %s: schema version %d", self.path, SCHEMA_VERSION)

    @contextlib.contextmanager
    def _locked(self, action: str) -> Iterator[sqlite3.Connection]:
        """Hold the lock and turn sqlite errors into an actionable StorageError."""
        with self._lock:
            try:
                yield self._conn
            except sqlite3.Error as exc:
                raise StorageError(
                    f"Could not {action} the image catalog {self.path}: {exc}. {_FIX_HINT}"
                ) from exc

    # -- jobs: so a restart can say "lost", and finished results outlive it ----

    def save_job(self, job_id: str, status: str, result_json: str | None = None) -> None:
        now = _utc_now_iso()
        with self._locked("record a job in"), self._conn:
            self._conn.execute(
                "INSERT INTO jobs (id, status, created, updated, result_json) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
                "status=excluded.status, updated=excluded.updated, "
                "result_json=excluded.result_json",
                (job_id, status, now, now, result_json),
            )

    def get_job(self, job_id: str) -> tuple[str, str | None] | None:
        """(status, result JSON) of a job this output dir has seen, or None."""
        with self._locked("read a job from"):
            row = self._conn.execute(
                "SELECT status, result_json FROM jobs WHERE id = ?", (job_id,)
            ).fetchone()
        return None if row is None else (row["status"], row["result_json"])

    def mark_unfinished_jobs_lost(self) -> int:
        """At start-up: jobs a previous process queued or ran never finished."""
        with self._locked("update jobs in"), self._conn:
            lost = self._conn.execute(
                "UPDATE jobs SET status = 'lost', updated = ? "
                "WHERE status IN ('queued', 'running')",
                (_utc_now_iso(),),
            ).rowcount
            self._conn.execute(
                "DELETE FROM jobs WHERE id NOT IN "
                "(SELECT id FROM jobs ORDER BY updated DESC LIMIT ?)",
                (MAX_JOB_ROWS,),
            )
        return int(lost)

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
            record.request_key,
            record.sha256,
            record.width,
            record.height,
            record.created,
            record.result_json,
        )
        with self._locked("write to") as conn, conn:
            cursor = conn.execute(
                "INSERT INTO images (name, path, prompt, negative_prompt, parameters, seed, "
                "source, source_id, request_key, sha256, width, height, created, result_json) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                values,
            )
        row_id = cursor.lastrowid
        assert row_id is not None
        record.id = row_id
        return row_id

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
            request_key=row["request_key"],
            sha256=row["sha256"],
            width=row["width"],
            height=row["height"],
            created=row["created"],
            result_json=row["result_json"],
        )

    def get_by_name(self, name: str) -> CatalogRecord | None:
        rows = self._query("WHERE name = ?", (name,))
        return rows[0] if rows else None

    def find_by_request_key(self, key: str) -> CatalogRecord | None:
        """The newest record for ``key`` whose file still exists on disk."""
        rows = self._query("WHERE request_key = ? ORDER BY created DESC, id DESC", (key,))
        return next((r for r in rows if r.path.is_file()), None)

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


# --------------------------------------------------------------------------
# Image store
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class SavedImage:
    """A file that :meth:`ImageStore.save_image` published."""

    path: Path  # absolute
    name: str
    sha256: str
    width: int
    height: int
    bytes_written: int


def _json_default(value: Any) -> Any:
    # Sidecars hold results that mention paths and times; anything else is a bug.
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _utc_stamp() -> str:
    # 20261126T005227123456Z: sortable, no characters that need quoting anywhere.
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")


class ImageStore:
    """Writes images into one output directory and catalogues them.

    Thread-safe: any number of threads may save at once; names never collide.
    """

    def __init__(self, output_dir: str | os.PathLike[str]) -> None:
        self.output_dir = Path(output_dir).expanduser().resolve()
        try:
            self.output_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(
                f"Could not create the output folder {self.output_dir}: {_reason(exc)}. "
                f"Set SDXL_MCP_OUTPUT_DIR to a writable folder."
            ) from exc
        self._check_writable()
        # Flipped once if the filesystem refuses hard links; then os.replace is used.
        self._links_supported = True
        self._fallback_lock = threading.Lock()
        self.catalog = Catalog(self.output_dir / CATALOG_FILENAME)
        logger.info("Image store at %s (%d catalogued)", self.output_dir, self.catalog.count())

    def _check_writable(self) -> None:
        # Really create a file: os.access() lies for root and on read-only mounts.
        try:
            fd, probe = self._create_temp(".probe")
            os.close(fd)
            probe.unlink()
        except OSError as exc:
            raise StorageError(
                f"The output folder {self.output_dir} is not writable: {_reason(exc)}. "
                f"Set SDXL_MCP_OUTPUT_DIR to a writable folder."
            ) from exc

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

    # -- writing -----------------------------------------------------------

    def _create_temp(self, suffix: str) -> tuple[int, Path]:
        """Create a new ``.tmp-*`` file in the output dir; returns (fd, path).

        Not tempfile.mkstemp: that makes 0600 files, and the published image
        should get the usual umask-derived permissions.
        """
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        while True:
            path = self.output_dir / f"{TEMP_PREFIX}{secrets.token_hex(8)}{suffix}"
            try:
                return os.open(path, flags, 0o666), path
            except FileExistsError:
                continue

    def _write_temp(self, data: bytes, suffix: str) -> Path:
        """Write ``data`` durably to a new temp file; removes it on failure."""
        fd, tmp = self._create_temp(suffix)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        return tmp

    def _publish(self, tmp: Path, stem: str, suffix: str) -> Path:
        """Give ``tmp`` a final name that did not exist before; never overwrites."""
        for attempt in range(_MAX_NAME_ATTEMPTS):
            name = f"{stem}{suffix}" if attempt == 0 else f"{stem}-{attempt}{suffix}"
            final = self.output_dir / name
            if self._links_supported:
                try:
                    os.link(tmp, final)  # atomic, and fails if the name is taken
                except FileExistsError:
                    continue
                except (AttributeError, NotImplementedError):
                    self._disable_links("os.link is unavailable")
                except OSError as exc:
                    if exc.errno not in _NO_LINK_ERRNOS:
                        raise
                    self._disable_links(_reason(exc))
                else:
                    try:
                        tmp.unlink()
                    except OSError as exc:  # the image is published; only a stray temp
                        logger.warning("Could not remove temp file %s: %s", tmp, exc)
                    return final
            # No hard links here: check-then-rename under a lock. Atomic within
            # this process; another process writing the same dir could race.
            with self._fallback_lock:
                if os.path.lexists(final):
                    continue
                os.replace(tmp, final)
                return final
        raise OSError(errno.EEXIST, f"no free file name for {stem}{suffix}")

    def _disable_links(self, reason: str) -> None:
        if self._links_supported:
            logger.warning(
                "Hard links unsupported in %s (%s); publishing with rename instead",
                self.output_dir,
                reason,
            )
            self._links_supported = False

    def _sync_dir(self) -> None:
        """fsync the directory so the new name survives a crash (POSIX only)."""
        if os.name != "posix":
            return
        try:
            fd = os.open(self.output_dir, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError as exc:
            logger.debug("Directory fsync of %s failed: %s", self.output_dir, exc)
        finally:
            os.close(fd)

    def _store(self, data: bytes, stem: str, suffix: str) -> Path:
        """Temp file + fsync + publish; the StorageError path for every write."""
        tmp: Path | None = None
        try:
            tmp = self._write_temp(data, suffix)
            final = self._publish(tmp, stem, suffix)
        except Exception as exc:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    tmp.unlink()
            logger.error("Saving %s%s in %s failed: %s", stem, suffix, self.output_dir, exc)
            raise StorageError(
                f"Could not save the image to {self.output_dir}: {_reason(exc)}. {_FIX_HINT}"
            ) from exc
        self._sync_dir()
        return final

    def save_image(
        self,
        image: Image.Image,
        *,
        seed: int | None,
        infotext: str | None,
        prefix: str = "generated_image",
        compress_level: int = 1,
    ) -> SavedImage:
        """Encode ``image`` as PNG and publish it under a new, unique name.

        The name is ``<prefix>_<UTC timestamp>_<seed>.png`` (``_<seed>`` left
        out when there is none); ``infotext`` goes into the ``parameters``
        chunk (tEXt, or iTXt when it is not Latin-1). Raises StorageError on
        any failure, leaving nothing behind.
        """
        if not _SAFE_NAME_RE.match(prefix):
            raise ValueError(f"prefix must match {_SAFE_NAME_RE.pattern}, got {prefix!r}")
        if not 0 <= compress_level <= 9:
            raise ValueError(f"compress_level must be 0-9, got {compress_level}")
        started = time.perf_counter()
        stem = f"{prefix}_{_utc_stamp()}" + ("" if seed is None else f"_{seed}")
        try:
            # Encode in memory first: an encoder error then never touches the disk.
            buffer = io.BytesIO()
            pnginfo = PngInfo()
            if infotext is not None:
                pnginfo.add_text(PARAMETERS_CHUNK, infotext)
            image.save(buffer, format="PNG", pnginfo=pnginfo, compress_level=compress_level)
        except Exception as exc:
            logger.error("Encoding %s as PNG failed: %s", stem, exc)
            raise StorageError(
                f"Could not save the image to {self.output_dir}: {_reason(exc)}. {_FIX_HINT}"
            ) from exc
        data = buffer.getvalue()
        path = self._store(data, stem, ".png")
        saved = SavedImage(
            path=path,
            name=path.name,
            sha256=hashlib.sha256(data).hexdigest(),
            width=image.width,
            height=image.height,
            bytes_written=len(data),
        )
        logger.info(
            "Saved %s (%dx%d, %d bytes) in %.3f s",
            path,
            saved.width,
            saved.height,
            saved.bytes_written,
            time.perf_counter() - started,
        )
        return saved

    def save_bytes(self, data: bytes, *, name_hint: str, suffix: str) -> Path:
        """Publish already-encoded bytes (e.g. a downloaded photo) atomically.

        ``name_hint`` is sanitised into a safe file stem; ``suffix`` is like
        ``.jpg``. A taken name gets a ``-1``, ``-2`` ... suffix.
        """
        suffix = suffix if suffix.startswith(".") else f".{suffix}"
        if not _SUFFIX_RE.match(suffix):
            raise ValueError(f"suffix must look like '.jpg', got {suffix!r}")
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name_hint).lstrip("._-")[:100] or "file"
        path = self._store(bytes(data), stem, suffix.lower())
        logger.info("Saved %s (%d bytes)", path, len(data))
        return path

    def write_sidecar(self, image_path: Path, payload: dict[str, Any]) -> Path:
        """Write ``<image stem>.json`` beside ``image_path`` (atomic replace, UTF-8)."""
        sidecar = Path(image_path).with_suffix(".json")
        tmp: Path | None = None
        try:
            text = json.dumps(payload, indent=2, ensure_ascii=False, default=_json_default)
            tmp = self._write_temp((text + "\n").encode("utf-8"), ".json")
            os.replace(tmp, sidecar)
        except Exception as exc:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    tmp.unlink()
            raise StorageError(
                f"Could not write the metadata file {sidecar}: {_reason(exc)}. {_FIX_HINT}"
            ) from exc
        return sidecar

    def discard(self, image_path: Path) -> None:
        """Remove a published image and its sidecar whose recording failed."""
        for path in (Path(image_path), Path(image_path).with_suffix(".json")):
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            except OSError as exc:
                logger.warning("Could not remove %s after a failed save: %s", path, exc)

    # -- reading -----------------------------------------------------------

    def resolve_name(self, name: str) -> Path | None:
        """The path of a catalogued file in the output dir called ``name``, else None.

        Refuses anything that is not a plain file name this store made: path
        separators, traversal, absolute paths, NUL, hidden/temp files, symlinks
        and files the catalog does not know.
        """
        if not isinstance(name, str) or not _SAFE_NAME_RE.match(name) or ".." in name:
            return None
        candidate = self.output_dir / name
        try:
            if candidate.is_symlink() or not candidate.is_file():
                return None
            if candidate.resolve().parent != self.output_dir:
                return None
        except OSError:
            return None
        if name == CATALOG_FILENAME or self.catalog.get_by_name(name) is None:
            return None
        return candidate

    def cleanup_temp_files(self, min_age_s: float = 0.0) -> int:
        """Remove leftover ``.tmp-*`` files (from a crash); returns how many.

        Call at start-up, before saving. ``min_age_s`` spares younger files in
        case another process is writing into the same folder.
        """
        removed = 0
        now = time.time()
        try:
            entries = list(os.scandir(self.output_dir))
        except OSError as exc:
            logger.warning("Could not list %s for temp cleanup: %s", self.output_dir, exc)
            return 0
        for entry in entries:
            if not entry.name.startswith(TEMP_PREFIX):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    continue
                if min_age_s and now - entry.stat(follow_symlinks=False).st_mtime < min_age_s:
                    continue
                os.unlink(entry.path)
                removed += 1
            except FileNotFoundError:
                continue
            except OSError as exc:
                logger.warning("Could not remove temp file %s: %s", entry.path, exc)
        if removed:
            logger.info("Removed %d leftover temp file(s) from %s", removed, self.output_dir)
        return removed
