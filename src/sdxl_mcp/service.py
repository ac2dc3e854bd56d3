"""ImageService: the workflow behind every transport (MCP, REST, CLI).

A facade: stock first (``stockflow``), then generation (or an edit:
``editflow``; variations: ``varyflow``) through the job queue (``jobs``) on the
backend (``backend``), results shaped by ``results`` and kept (``keeping``) by
the library (``library``); status by ``status``. It knows nothing of MCP or HTTP, reaches
the engine and the cluster only through ``sdxl_mcp.backend``, and runs blocking
work (torch, disk, SQLite) in worker threads so the event loop never stalls.
Storage opens once, at start-up (``async with``).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, Self

import anyio
import anyio.to_thread
from anyio.abc import TaskGroup

from sdxl_mcp import status
from sdxl_mcp.archive import find_reusable
from sdxl_mcp.backend import (
    ENGINE_EXTRA_MISSING,
    Backend,
    EngineOutput,
    EngineStatus,
    backend_capacity,
    engine_installed,
    make_backend,
)
from sdxl_mcp.editflow import EditSources, load_sources
from sdxl_mcp.errors import (
    ModelUnavailable,
    NoImageFound,
    SdxlMcpError,
    StockNotConfigured,
    StorageError,
)
from sdxl_mcp.jobs import Job, JobQueue, ProgressListener
from sdxl_mcp.jobtable import JobTable
from sdxl_mcp.keeping import Keeper
from sdxl_mcp.library import ImageStore
from sdxl_mcp.libraryflow import Library
from sdxl_mcp.loraflow import admit, list_loras, warn_missing_dirs
from sdxl_mcp.schemas import (
    EditRequest,
    GenerationRequest,
    GenerationResult,
    GpuStatus,
    StockSearchRequest,
    StockSearchResult,
    VariationsResult,
    VaryRequest,
)
from sdxl_mcp.schemas.loras import LoraList
from sdxl_mcp.settings import Settings
from sdxl_mcp.stockflow import StockWorkflow
from sdxl_mcp.varyflow import VariationPlan, plan_variations, run_variations, variations_result

log = logging.getLogger(__name__)

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
            timeout_s=settings.generation_timeout_s, execute=self._execute)
        self._stock: StockWorkflow | None = None
        #: Transports that show previews (MCP) set this; REST callers do not pay for them.
        self.make_previews = False
        self._keeper = Keeper(settings, lambda: self.store)

    # ------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> Self:
        await anyio.to_thread.run_sync(self._open_storage)
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self.jobs.start(self._tg, self._table)
        self._stock = StockWorkflow(self.settings, lambda: self.store)
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
        if self._stock is not None:
            await self._stock.aclose()
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
            self._library = Library(self._store, self.settings.input_dirs)
            removed = self._store.cleanup_temp_files()
            lost = self._table.mark_unfinished_lost()
        except StorageError as exc:
            log.error("Storage unavailable: %s", exc.message)
            self._storage_error = exc
            return
        if removed or lost:
            log.warning("Start-up: removed %d temp file(s); %d job(s) of a previous run "
                        "never finished and are reported as lost", removed, lost)

    @property
    def store(self) -> ImageStore:
        if self._store is None:
            raise self._storage_error or RuntimeError("ImageService is not started")
        return self._store

    @property
    def backend(self) -> Backend:
        """The backend, built on first use (blocking: it imports torch or ray)."""
        with self._backend_lock:
            if self._backend is None:
                self._backend = make_backend(self.settings)
            return self._backend

    async def _preload(self) -> None:
        self._preloading = True
        try:
            await anyio.to_thread.run_sync(lambda: self.backend.load())
        except SdxlMcpError as exc:
            log.error("Preload failed: %s", exc.message)
        except Exception:
            log.exception("Preload failed")

    # ------------------------------------------------------------- workflow
    async def generate(self, request: GenerationRequest,
                       on_progress: ProgressListener | None = None,
                       wait_s: float | None = None) -> GenerationResult:
        """Stock photo first (``use_pexels``), else one generation; wait up to ``wait_s``.

        Raises ``SdxlMcpError`` subclasses; still running after the wait: ``status="running"``
        with a ``job_id`` to follow with :meth:`wait_job`.
        """
        request = await anyio.to_thread.run_sync(admit, self.settings, request)  # loraflow
        stock_error: SdxlMcpError | None = None
        if request.use_pexels:
            try:
                stock = await self._stock_flow().first_match(request)
            except SdxlMcpError as exc:
                stock, stock_error = None, exc
                log.warning("Stock photo search failed: %s", exc.message)
            if stock is not None:
                return stock
        if request.use_generation and request.reuse and request.seed is not None:
            reused = await self._reused(request)
            if reused is not None:
                return reused
        if not request.use_generation:
            # The guide's message when no source can serve; a Pexels fault other
            # than "no key" is more useful to the caller than the generic line.
            if stock_error is not None and not isinstance(stock_error, StockNotConfigured):
                raise stock_error
            raise NoImageFound()
        return await self._follow(self.submit(request, on_progress), on_progress, wait_s)

    async def edit(self, request: EditRequest, on_progress: ProgressListener | None = None,
                   wait_s: float | None = None) -> GenerationResult:
        """One edit (``editflow``): image and mask resolved and checked before admission."""
        request = await anyio.to_thread.run_sync(admit, self.settings, request)  # loraflow
        source = await self.library.resolve(request.image, "image")
        mask = (await self.library.resolve(request.mask, "mask")
                if request.mask is not None else None)
        sources = await anyio.to_thread.run_sync(load_sources, source, mask)
        return await self._follow(self.submit(request, on_progress, sources),
                                  on_progress, wait_s)

    async def vary(self, request: VaryRequest, on_progress: ProgressListener | None = None,
                   wait_s: float | None = None) -> VariationsResult:
        """``count`` variations of a generated image as one job (``varyflow``)."""
        plan = plan_variations(await self.library.resolve(request.image, "image"), request)
        plan.requests = [await anyio.to_thread.run_sync(admit, self.settings, r)
                         for r in plan.requests]
        job = self.submit(plan.requests[0], on_progress, vary=plan)
        return variations_result(plan, await self._follow(job, on_progress, wait_s))

    async def _follow(
        self, job: Job, on_progress: ProgressListener | None, wait_s: float | None
    ) -> GenerationResult:
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

    async def _reused(self, request: GenerationRequest) -> GenerationResult | None:
        if self._store is None:
            return None
        decided = self._backend.status().dtype if self._backend is not None else None
        return await anyio.to_thread.run_sync(
            find_reusable, self._store, self.settings, request, decided)

    def submit(
        self,
        request: GenerationRequest | EditRequest,
        on_progress: ProgressListener | None = None,
        edit: EditSources | None = None,
        vary: VariationPlan | None = None,
    ) -> Job:
        """Admit one generation (see ``JobQueue.submit``) unless it cannot run at all."""
        if self._engine_missing:
            raise ModelUnavailable(ENGINE_EXTRA_MISSING)
        if self._backend is not None and self._backend.state == "failed":
            error = self._backend.status().error or "model loading failed"
            raise ModelUnavailable(f"Image generation is unavailable: {error}")
        if self._storage_error is not None:
            raise self._storage_error
        return self.jobs.submit(request, on_progress, edit, vary)

    async def wait_job(self, job_id: str, wait_s: float) -> GenerationResult:
        return await self.jobs.wait(job_id, wait_s)

    async def cancel_job(self, job_id: str) -> GenerationResult:
        return await self.jobs.cancel_and_wait(job_id)

    def _execute(self, job: Job, progress: ProgressListener) -> GenerationResult:
        """One job's blocking work (worker thread): build the backend, run, save."""
        started = time.perf_counter()
        # The first request builds the backend (torch and diffusers imports, seconds),
        # or waits while the preload thread does: part of model_load, not hidden.
        backend = self.backend
        building_s = time.perf_counter() - started
        if job.vary is not None:
            return run_variations(job, progress, backend, lambda request, output: self._save(
                job, request, output, 0.0 if job.vary and job.vary.results else building_s))
        request, edit = job.request, job.edit
        if isinstance(request, EditRequest):
            assert edit is not None
            output = backend.edit(request, job.seed, edit.source, edit.mask, progress, job.cancel)
        else:
            output = backend.generate(request, job.seed, progress, job.cancel)
        return self._save(job, request, output, building_s)

    def _save(self, job: Job, request: GenerationRequest | EditRequest, output: EngineOutput,
              building_s: float) -> GenerationResult:
        return self._keeper.keep(job.id, request, output, edit=job.edit,
                                 queue_wait_s=job.queue_wait_s, building_s=building_s,
                                 preview=self.make_previews)

    async def preview(self, path: str) -> bytes:
        """The inline JPEG preview of an image this service saved (cached if fresh)."""
        return await self._keeper.preview(path)

    def resolve_image(self, name: str) -> Path | None:
        """The path of a catalogued image this server saved, by file name, else None."""
        return None if self._store is None else self._store.resolve_name(name)

    @property
    def library(self) -> Library:
        """Resolve, view, find and export library images (see ``libraryflow``)."""
        if self._library is None:
            raise self._storage_error or RuntimeError("ImageService is not started")
        return self._library

    # ---------------------------------------------------------------- stock
    def _stock_flow(self) -> StockWorkflow:
        if self._stock is None:
            raise RuntimeError("ImageService must be used as an async context manager")
        return self._stock

    @property
    def stock_configured(self) -> bool:
        """Whether stock photo search can run (a Pexels key is set)."""
        return self.settings.pexels_api_key is not None

    async def search_stock(self, request: StockSearchRequest) -> StockSearchResult:
        return await self._stock_flow().search(request)

    async def list_loras(self) -> LoraList:
        return await anyio.to_thread.run_sync(list_loras, self.settings, self._backend)

    # --------------------------------------------------------------- status
    def queue_status(self) -> dict[str, Any]:
        return self.jobs.status()

    def engine_status(self, plan: bool = False) -> EngineStatus:
        """The backend's status; before it is built, what the service knows."""
        if self._backend is not None or plan:
            return self.backend.status(plan=plan)
        return status.unbuilt_engine_status(self.settings, loading=self._preloading)

    def engine_state(self) -> str | None:
        """not_loaded, loading, ready or failed (for health checks)."""
        return self.engine_status().state

    async def gpu_status(self, plan: bool = False) -> GpuStatus:
        """At once, even while models load, with no GPU or NVML; ``plan=True`` (``sdxl-mcp
        gpu``) builds the backend if needed and reports its precision decision (no loading).
        """
        try:
            engine = await anyio.to_thread.run_sync(self.engine_status, plan)
        except SdxlMcpError as exc:  # e.g. the engine extra is not installed
            engine = status.unbuilt_engine_status(self.settings, error=exc.message)
        return await status.gpu_status(
            engine=engine,
            precision_setting=self.settings.precision,
            queue=self.queue_status(),
            last_generation_s=self.jobs.last_generation_s,
            pexels=self._stock.status() if self._stock else {"configured": self.stock_configured},
        )
