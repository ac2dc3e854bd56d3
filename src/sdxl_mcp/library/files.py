"""The atomic file store: how a file appears in the output directory.

A published file is always complete (``.tmp-*``, fsync, then its final name); files never
overwrite each other; on any failure nothing partial is left behind and a
:class:`StorageError` is raised; sidecars are replaced atomically; only plain, safe names
directly in the output directory are resolved (details: docs/ARCHITECTURE.md "Guarantees").
Every system call that writes goes through this module's ``os`` (the fault tests replace it
here and nothing else).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from PIL import Image

from sdxl_mcp.errors import StorageError
from sdxl_mcp.library.png import encode_png

logger = logging.getLogger(__name__)

__all__ = ["TEMP_PREFIX", "FileStore", "SavedImage"]

TEMP_PREFIX = ".tmp-"

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


@dataclass(frozen=True)
class SavedImage:
    """A file that :meth:`FileStore.save_image` published."""

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


class FileStore:
    """Publishes files into one output directory, atomically and never overwriting.

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
                f"Could not save the image to {self.output_dir}: {_reason(exc)}. "
                f"{StorageError.HINT}"
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
            data = encode_png(image, infotext, compress_level)
        except Exception as exc:
            logger.error("Encoding %s as PNG failed: %s", stem, exc)
            raise StorageError(
                f"Could not save the image to {self.output_dir}: {_reason(exc)}. "
                f"{StorageError.HINT}"
            ) from exc
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
                f"Could not write the metadata file {sidecar}: {_reason(exc)}. {StorageError.HINT}"
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
        """The path of a plain file in the output dir called ``name``, else None.

        Refuses anything that is not a plain file name this store could have
        made: path separators, traversal, absolute paths, NUL, hidden/temp
        files and symlinks. (Whether the file is catalogued is the caller's
        check: :meth:`~sdxl_mcp.library.store.ImageStore.resolve_name`.)
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
