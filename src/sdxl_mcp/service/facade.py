"""ImageService: what every workflow shares, behind every face (MCP, REST, CLI).

The facade holds the shared parts (settings, the job queue, the library and
its store, the backend, the keeper) and their lifecycle; it imports no
workflow. Each workflow (``service.generate``, ``service.edit``,
``service.vary``, ``service.stock``, ...) is a module whose use case is a
function of this service, and the faces' tool and route tables point at those
functions (docs/ARCHITECTURE.md "How a request travels").

It knows nothing of MCP or HTTP, reaches the engine and the cluster only
through ``backend.factory``, and runs blocking work (torch, disk, SQLite) in
worker threads so the event loop never stalls. Storage opens once, at
start-up (``async with``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, TypeVar, cast

import anyio
import anyio.to_thread
from anyio.abc import TaskGroup

from sdxl_mcp.backend.base import (
    Backend,
    CancelToken,
    EngineOutput,
    EngineStatus,
    backend_capacity,
)
from sdxl_mcp.backend.factory import (
    ENGINE_EXTRA_MISSING,
    engine_installed,
    make_backend,
    unbuilt_engine_status,
)
from sdxl_mcp.errors import Cancelled, ModelUnavailable, SdxlMcpError, StorageError
from sdxl_mcp.library import ImageStore
from sdxl_mcp.library.access import Library
from sdxl_mcp.library.loras import warn_missing_dirs
from sdxl_mcp.schemas import GenerationResult
from sdxl_mcp.service.idle import IdleUnload
from sdxl_mcp.service.jobs import Job, JobQueue, JobWork, ProgressListener
from sdxl_mcp.service.jobtable import JobTable
from sdxl_mcp.service.keeping import Entry, Keeper
from sdxl_mcp.settings import Settings

if TYPE_CHECKING:
    from sdxl_mcp.library.url_fetch import UrlFetcher

log = logging.getLogger(__name__)
T = TypeVar("T")

#: How long shutdown waits for running work to stop (it stops within one step).
SHUTDOWN_GRACE_S = 30.0


class ImageService:
    """Use as ``async with ImageService(settings) as service:``."""

    def __init__(self, settings: Settings, backend: Backend | None = None,
                 store: ImageStore | None = None) -> None:
        self.settings = settings
        self._backend = backend
        self._backend_lock = threading.Lock()
        self._preloading = False
        #: Set when a preload has finished (loaded or failed).
        self._preloaded = threading.Event()
        # A light install (no engine extra) serves stock and status, and says which extra to add.
        self._engine_missing = (backend is None and settings.backend == "local"
                                and not engine_installed())
        self._store = store
        self._storage_error: StorageError | None = None
        self._table: JobTable | None = None
        self._library: Library | None = None
        self._tg: TaskGroup | None = None
        self.jobs = JobQueue(
            capacity=backend.capacity if backend is not None else backend_capacity(settings),
            max_queue=settings.max_queue, max_wait_s=settings.max_wait_s,
            timeout_s=settings.generation_timeout_s)
        #: What workflows keep between calls (the Pexels client), by name; see :meth:`shared`.
        self._shared: dict[str, Any] = {}
        self._keeper = Keeper(settings, lambda: self.store)
        #: Gives the models' memory back after SDXL_MCP_KEEP_ALIVE_S without a job.
        self._idle = IdleUnload(settings.keep_alive_s, self.jobs)
        self._idle.backend = backend

    # ------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> Self:
        await anyio.to_thread.run_sync(self._open_storage)
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self.jobs.start(self._tg, self._table)
        self._tg.start_soon(self._idle.run)
        warn_missing_dirs(self.settings)
        if self._engine_missing:
            log.warning("%s", ENGINE_EXTRA_MISSING)
        elif self.settings.preload:
            self._tg.start_soon(self._preload)
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        """Graceful shutdown: stop admitting, stop running work within a step, persist."""
        assert self._tg is not None
        self.jobs.closing = True
        unfinished = self.jobs.unfinished()
        for job in unfinished:
            self.jobs.cancel(job, "cancelled by shutdown")
        # Shielded: shutdown often arrives as a cancellation (signal, closed stdin),
        # and the engine thread must be allowed to reach its next step and stop.
        with anyio.CancelScope(shield=True), anyio.move_on_after(SHUTDOWN_GRACE_S):
            for job in unfinished:
                await job.done.wait()
        # Exiting the task group waits for any engine thread still finishing its
        # step (threads cannot be killed); model loading is the one long wait.
        self._tg.cancel_scope.cancel()
        # The body's own exception is not handed to the task group, so callers see
        # it as raised (an SdxlMcpError), not wrapped in an ExceptionGroup.
        await self._tg.__aexit__(None, None, None)
        self._tg = None
        shared, self._shared = self._shared, {}
        for resource in shared.values():
            aclose = getattr(resource, "aclose", None)
            if aclose is not None:
                await aclose()
        if self._library is not None:
            await self._library.aclose()
        for closable in (self._store, self._table):
            if closable is not None:
                closable.close()
        self._store = self._table = None  # a later `async with` reopens them

    def _open_storage(self) -> None:
        """The image store and the job table; a failure is reported on use, not fatal."""
        try:
            if self._store is None:
                self._store = ImageStore(self.settings.output_dir)
            self._table = JobTable(self._store.catalog.path)
            self._library = Library(self._store, self.settings.input_dirs,
                                    make_url_fetcher=self._url_fetcher_maker())
            removed = self._store.cleanup_temp_files()
            lost = self._table.mark_unfinished_lost()
        except StorageError as exc:
            log.error("Storage unavailable: %s", exc.message)
            self._storage_error = exc
            return
        if removed or lost:
            log.warning("Start-up: removed %d temp file(s); %d job(s) of a previous run "
                        "never finished and are reported as lost", removed, lost)

    def _url_fetcher_maker(self) -> Callable[[], UrlFetcher] | None:
        """How image URLs are fetched, or None when SDXL_MCP_URL_IMPORT is off."""
        if not self.settings.url_import:
            return None
        allow_private = self.settings.url_allow_private

        def make() -> UrlFetcher:
            from sdxl_mcp.library.url_fetch import UrlFetcher  # httpx on the first URL only

            return UrlFetcher(allow_private=allow_private)

        return make

    def shared(self, name: str, make: Callable[[], T]) -> T:
        """The one ``name`` of this started service, made on first use; closed
        (``aclose``, if it has one) at shutdown. Workflows keep clients here."""
        if self._tg is None:
            raise RuntimeError("ImageService must be used as an async context manager")
        if name not in self._shared:
            self._shared[name] = make()
        return cast(T, self._shared[name])

    @property
    def store(self) -> ImageStore:
        if self._store is None:
            raise self._storage_error or RuntimeError("ImageService is not started")
        return self._store

    @property
    def opened_store(self) -> ImageStore | None:
        """The store if it is open, else None (never raises)."""
        return self._store

    @property
    def library(self) -> Library:
        """Resolve, view, find and export library images (``library.access``)."""
        if self._library is None:
            raise self._storage_error or RuntimeError("ImageService is not started")
        return self._library

    @property
    def backend(self) -> Backend:
        """The backend, built on first use (blocking: it imports torch or ray)."""
        with self._backend_lock:
            if self._backend is None:
                self._backend = make_backend(self.settings)
                self._idle.backend = self._backend
            return self._backend

    @property
    def built_backend(self) -> Backend | None:
        """The backend if it has been built, else None (never builds it)."""
        return self._backend

    async def _preload(self) -> None:
        self._preloading = True

        def load() -> None:
            try:
                self.backend.load()
            finally:
                self._preloaded.set()

        try:
            # Abandoned on shutdown: a load (imports, weights) cannot be interrupted, and
            # shutdown must not wait for it (docs/RELIABILITY.md "Exit times").
            await anyio.to_thread.run_sync(load, abandon_on_cancel=True)
        except SdxlMcpError as exc:
            log.error("Preload failed: %s", exc.message)
        except Exception:
            log.exception("Preload failed")

    # ------------------------------------------------------------------ jobs
    def submit(self, seed: int | None, work: JobWork,
               on_progress: ProgressListener | None = None) -> Job:
        """Admit one job (see ``JobQueue.submit``) unless it cannot run at all."""
        if self._engine_missing:
            raise ModelUnavailable(ENGINE_EXTRA_MISSING)
        if self._backend is not None and self._backend.state == "failed":
            error = self._backend.status().error or "model loading failed"
            raise ModelUnavailable(f"Image generation is unavailable: {error}")
        if self._storage_error is not None:
            raise self._storage_error
        return self.jobs.submit(seed, work, on_progress)

    async def follow(self, job: Job, on_progress: ProgressListener | None,
                     wait_s: float | None) -> GenerationResult:
        """Wait up to ``wait_s`` (MAX_WAIT_S) for a job; a caller gone cancels it."""
        try:
            return await self.jobs.wait(
                job.id, self.settings.max_wait_s if wait_s is None else wait_s
            )
        except anyio.get_cancelled_exc_class():
            # The caller went away (client cancel or disconnect): nobody will
            # collect this image, so stop it and free the slot.
            self.jobs.cancel(job, "cancelled by the client")
            raise
        finally:
            if on_progress is not None and on_progress in job.listeners:
                job.listeners.remove(on_progress)

    async def wait_job(self, job_id: str, wait_s: float) -> GenerationResult:
        return await self.jobs.wait(job_id, wait_s)

    async def cancel_job(self, job_id: str) -> GenerationResult:
        return await self.jobs.cancel_and_wait(job_id)

    def timed_backend(self, cancel: CancelToken) -> tuple[Backend, float]:
        """In a job's work: the backend and the seconds spent building it now.

        The first request builds the backend (torch and diffusers imports, seconds),
        or waits while the preload thread does: part of model_load, not hidden. That
        wait ends when ``cancel`` is set (a shutdown does not wait for the load)."""
        started = time.perf_counter()
        while self._preloading and not self._preloaded.wait(0.05):
            if cancel.cancelled:
                raise Cancelled(f"Generation {cancel.reason} while the models were loading.")
        backend = self.backend
        return backend, time.perf_counter() - started

    def keep(self, job: Job, output: EngineOutput, entry: Entry, *,
             building_s: float = 0.0, preview: bool = False) -> GenerationResult:
        """In a job's work: save, catalogue and describe one output (``service.keeping``)."""
        return self._keeper.keep(job.id, output, entry, queue_wait_s=job.queue_wait_s,
                                 building_s=building_s, preview=preview)

    async def preview(self, path: str) -> bytes:
        """The inline JPEG preview of an image this service saved (cached if fresh)."""
        return await self._keeper.preview(path)

    def resolve_image(self, name: str) -> Path | None:
        """The path of a catalogued image this server saved, by file name, else None."""
        return None if self._store is None else self._store.resolve_name(name)

    # --------------------------------------------------------------- status
    def queue_status(self) -> dict[str, Any]:
        return self.jobs.status()

    def engine_status(self, plan: bool = False) -> EngineStatus:
        """The backend's status (before it is built, what the service knows), with the
        keep-alive and when the next idle unload is due."""
        if self._backend is not None or plan:
            status = self.backend.status(plan=plan)
        else:
            status = unbuilt_engine_status(self.settings, loading=self._preloading)
        due = self._idle.due()
        return status.model_copy(update={
            "keep_alive_s": self.settings.keep_alive_s,
            "unload_due": due.isoformat(timespec="seconds") if due is not None else None})

    def engine_state(self) -> str | None:
        """not_loaded, loading, ready or failed (for health checks)."""
        return self.engine_status().state
