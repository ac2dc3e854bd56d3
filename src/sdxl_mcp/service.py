"""ImageService: the workflow behind every transport (MCP, REST, CLI).

It owns admission (one generation slot, at most MAX_QUEUE waiting), jobs,
storage and the result shape. It knows nothing of MCP or HTTP, and reaches
the engine only through ``sdxl_mcp.backend.Backend``; blocking engine work runs
in a worker thread so the event loop never stalls.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Self

import anyio
import anyio.to_thread
from anyio.abc import TaskGroup

from sdxl_mcp.backend import Backend, CancelToken, EngineOutput, ProgressEvent
from sdxl_mcp.errors import (
    Busy,
    Cancelled,
    GenerationTimeout,
    JobLost,
    ModelUnavailable,
    NoImageFound,
    NotFound,
    SdxlMcpError,
    StockNotConfigured,
)
from sdxl_mcp.preview import preview_jpeg, preview_jpeg_image
from sdxl_mcp.schemas import (
    GenerationRequest,
    GenerationResult,
    GpuStatus,
    ImageInfo,
    StepCounts,
    StockSearchRequest,
    StockSearchResult,
    Timings,
)
from sdxl_mcp.settings import Settings
from sdxl_mcp.storage import CatalogRecord, ImageStore, InfotextParams, format_infotext

if TYPE_CHECKING:
    import httpx

    from sdxl_mcp.stock.pexels import PexelsClient

log = logging.getLogger(__name__)

JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]
ProgressListener = Callable[[ProgressEvent], None]

#: Finished jobs are kept at least this long (and at most MAX_JOBS of them).
JOB_RETENTION_S = 3600.0
MAX_JOBS = 1000
#: How long shutdown waits for running work to stop (it stops within one step).
SHUTDOWN_GRACE_S = 30.0
PREVIEW_CACHE_SIZE = 32
PEXELS_KEY_MISSING = "PEXELS_API_KEY is not set: get a free key at pexels.com/api"


@dataclass
class Job:
    id: str
    request: GenerationRequest
    seed: int
    created: float = field(default_factory=time.monotonic)
    state: JobState = "queued"
    progress: ProgressEvent | None = None
    result: GenerationResult | None = None
    cancel: CancelToken = field(default_factory=CancelToken)
    done: anyio.Event = field(default_factory=anyio.Event)
    listeners: list[ProgressListener] = field(default_factory=list)
    finished: float | None = None
    started: float | None = None
    #: The wait for the generation slot; cancelling it takes a queued job out at once.
    queue_wait: anyio.CancelScope | None = None


class ImageService:
    """Use as ``async with ImageService(settings) as service:``."""

    def __init__(
        self,
        settings: Settings,
        backend: Backend | None = None,
        store: ImageStore | None = None,
    ) -> None:
        self.settings = settings
        self._backend = backend
        self._store = store
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        # One slot per engine replica: 1 locally, REPLICAS on the Ray backend.
        self.capacity = settings.replicas if settings.backend == "ray" else 1
        self._slot = anyio.Semaphore(self.capacity)
        self._waiting = 0
        self._running: dict[str, Job] = {}
        self._tg: TaskGroup | None = None
        self._last_generation_s: float | None = None
        self._avg_generation_s: float | None = None
        self._preloading = False
        self._backend_lock = threading.Lock()
        self._pexels: PexelsClient | None = None
        self._closing = False
        #: Transports that show previews (MCP) set this; REST callers do not pay for them.
        self.make_previews = False
        self._previews: OrderedDict[str, bytes] = OrderedDict()
        self._pexels_http: httpx.AsyncClient | None = None

    # ------------------------------------------------------------ lifecycle
    @property
    def backend(self) -> Backend:
        """The backend, created on first use (in a worker thread: it imports torch)."""
        with self._backend_lock:
            if self._backend is None:
                if self.settings.backend == "ray":
                    # Only this import path needs ray (an optional extra).
                    from sdxl_mcp.cluster.ray_backend import RayBackend

                    self._backend = RayBackend(self.settings)
                else:
                    from sdxl_mcp.engine.sdxl import SDXLEngine

                    self._backend = SDXLEngine(self.settings)
            return self._backend

    @property
    def store(self) -> ImageStore:
        if self._store is None:
            store = ImageStore(self.settings.output_dir)
            removed = store.cleanup_temp_files()
            lost = store.catalog.mark_unfinished_jobs_lost()
            if removed or lost:
                log.warning("Start-up: removed %d temp file(s); %d job(s) of a previous run "
                            "never finished and are reported as lost", removed, lost)
            self._store = store
        return self._store

    async def __aenter__(self) -> Self:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        if self.settings.preload:
            self._tg.start_soon(self._preload)
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        """Graceful shutdown: stop admitting, stop running work within a step, persist."""
        assert self._tg is not None
        self._closing = True
        unfinished = [j for j in self._jobs.values() if j.state in ("queued", "running")]
        for job in unfinished:
            self._cancel(job, "cancelled by shutdown")
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
        if self._pexels_http is not None:
            await self._pexels_http.aclose()
            self._pexels_http, self._pexels = None, None
        if self._store is not None:
            self._store.close()
            self._store = None  # a later `async with` reopens it

    async def _preload(self) -> None:
        self._preloading = True
        try:
            await anyio.to_thread.run_sync(lambda: self.backend.load())
        except SdxlMcpError as exc:
            log.error("Preload failed: %s", exc.message)
        except Exception:
            log.exception("Preload failed")

    # ------------------------------------------------------------ generation
    async def generate(
        self,
        request: GenerationRequest,
        on_progress: ProgressListener | None = None,
        wait_s: float | None = None,
    ) -> GenerationResult:
        """Admit and run one request; wait up to ``wait_s`` (MAX_WAIT_S) for it.

        Raises ``SdxlMcpError`` subclasses for what the caller can act on. If the
        job is still running when the wait ends, returns ``status="running"``
        with a ``job_id`` to follow with :meth:`get_job`.
        """
        stock_error: SdxlMcpError | None = None
        if request.use_pexels:
            try:
                stock = await self._stock_first(request)
            except SdxlMcpError as exc:
                stock, stock_error = None, exc
                log.warning("Stock photo search failed: %s", exc.message)
            if stock is not None:
                return stock
        if not request.use_generation:
            # The guide's message when no source can serve; a Pexels fault other
            # than "no key" is more useful to the caller than the generic line.
            if stock_error is not None and not isinstance(stock_error, StockNotConfigured):
                raise stock_error
            raise NoImageFound()
        job = self.submit(request, on_progress)
        try:
            return await self.wait_job(
                job.id, self.settings.max_wait_s if wait_s is None else wait_s
            )
        except anyio.get_cancelled_exc_class():
            # The caller went away (client cancel or disconnect): nobody will
            # collect this image, so stop it and free the slot.
            self._cancel(job, "cancelled by the client")
            raise
        finally:
            if on_progress is not None and on_progress in job.listeners:
                job.listeners.remove(on_progress)

    def submit(
        self, request: GenerationRequest, on_progress: ProgressListener | None = None
    ) -> Job:
        """Admission: one running plus MAX_QUEUE waiting; more is ``Busy``."""
        if self._tg is None:
            raise RuntimeError("ImageService must be used as an async context manager")
        if self._closing:
            raise Busy("The server is shutting down; retry once it has restarted.",
                       retry_after_s=10.0)
        if self._backend is not None and self._backend.state == "failed":
            raise ModelUnavailable(self._backend_error())
        active = self._waiting + len(self._running)
        if active >= self.capacity + self.settings.max_queue:
            raise Busy(
                f"The server is busy ({active} generations running or queued, "
                f"MAX_QUEUE={self.settings.max_queue}); retry in about "
                f"{self._retry_after():.0f} s.",
                retry_after_s=self._retry_after(),
            )
        seed = request.seed if request.seed is not None else secrets.randbelow(2**32)
        job = Job(id=uuid.uuid4().hex, request=request, seed=seed)
        if on_progress is not None:
            job.listeners.append(on_progress)
        job.queue_wait = anyio.CancelScope()
        self._remember(job)
        self._waiting += 1
        self._tg.start_soon(self._run_job, job)
        return job

    async def wait_job(self, job_id: str, wait_s: float) -> GenerationResult:
        job = self._jobs.get(job_id)
        if job is None:
            return await self._past_job(job_id)
        with anyio.move_on_after(max(0.0, wait_s)):
            await job.done.wait()
        return self.job_result(job)

    async def cancel_job(self, job_id: str) -> GenerationResult:
        job = self._jobs.get(job_id)
        if job is None:
            return await self._past_job(job_id)
        if job.state in ("queued", "running"):
            self._cancel(job, "cancelled by the caller")
            with anyio.move_on_after(self.settings.max_wait_s):
                await job.done.wait()
        return self.job_result(job)

    def job_result(self, job: Job) -> GenerationResult:
        if job.result is not None:
            return job.result
        progress = job.progress
        done = f" ({progress.message}, {progress.done}/{progress.total} steps)" if progress else ""
        return GenerationResult(
            success=False,
            status="running",
            job_id=job.id,
            seed=job.seed,
            message=f"Generation {job.state}{done}; call get_generation with this job_id "
            "to wait for the result.",
        )

    async def _past_job(self, job_id: str) -> GenerationResult:
        """A job this process does not hold: finished before a restart, or lost by one."""
        record = await anyio.to_thread.run_sync(
            lambda: self.store.catalog.get_job(job_id) if len(job_id) <= 64 else None
        )
        if record is None:
            raise NotFound(f"No job with id {job_id!r} on this server; check the id.")
        status, result_json = record
        if status == "lost":
            raise JobLost(
                f"Job {job_id} was lost: the server restarted before it finished. "
                "Send the request again."
            )
        if result_json:
            return GenerationResult.model_validate_json(result_json)
        raise JobLost(f"Job {job_id} has no stored result; send the request again.")

    def _remember(self, job: Job) -> None:
        now = time.monotonic()
        self._jobs[job.id] = job
        while len(self._jobs) > MAX_JOBS:
            oldest = next(iter(self._jobs.values()))
            if oldest.finished is None:
                break
            self._jobs.popitem(last=False)
        for key in [k for k, j in self._jobs.items()
                    if j.finished is not None and now - j.finished > JOB_RETENTION_S]:
            del self._jobs[key]

    async def _persist(self, job: Job) -> None:
        """Record the job's state, so a restart can tell "lost" from "never existed"."""
        result = job.result.model_dump_json() if job.result is not None else None
        try:
            await anyio.to_thread.run_sync(
                lambda: self.store.catalog.save_job(job.id, job.state, result)
            )
        except SdxlMcpError as exc:  # never fail a generation over bookkeeping
            log.warning("Could not record job %s: %s", job.id, exc.message)

    async def _run_job(self, job: Job) -> None:
        queued_at = time.perf_counter()
        waiting = True
        try:
            queue_wait = job.queue_wait or anyio.CancelScope()
            with queue_wait:  # cancelled by _cancel: a queued job leaves the queue at once
                await self._persist(job)
                await self._slot.acquire()
            job.queue_wait = None
            if queue_wait.cancelled_caught:
                raise Cancelled(f"Generation {job.cancel.reason} while it was queued.")
            try:
                self._waiting -= 1
                waiting = False
                self._running[job.id] = job
                job.started = time.perf_counter()
                try:
                    job.result = await self._execute(job, job.started - queued_at)
                    job.state = "succeeded"
                finally:
                    self._running.pop(job.id, None)
            finally:
                self._slot.release()
        except SdxlMcpError as exc:
            job.state = "cancelled" if isinstance(exc, Cancelled) else "failed"
            job.result = self._error_result(job, exc)
        except anyio.get_cancelled_exc_class():
            job.state = "cancelled"
            job.result = self._error_result(job, Cancelled("Generation cancelled by shutdown."))
            raise
        except Exception as exc:
            log.exception("Generation %s failed unexpectedly", job.id)
            job.state = "failed"
            job.result = self._error_result(
                job, SdxlMcpError(f"Generation failed unexpectedly ({type(exc).__name__}).")
            )
        finally:
            if waiting:  # cancelled while waiting for the slot
                self._waiting -= 1
            job.finished = time.monotonic()
            with anyio.CancelScope(shield=True):
                await self._persist(job)
            job.done.set()

    def _cancel(self, job: Job, reason: str) -> None:
        """Stop a job: a running one within a denoising step, a queued one at once."""
        job.cancel.cancel(reason)
        if job.queue_wait is not None:
            job.queue_wait.cancel()

    async def _execute(self, job: Job, queue_wait: float) -> GenerationResult:
        if job.cancel.cancelled:
            raise Cancelled(f"Generation {job.cancel.reason} before it started.")
        job.state = "running"
        await self._persist(job)
        token = anyio.lowlevel.current_token()

        def progress(event: ProgressEvent) -> None:  # called in the worker thread
            job.progress = event
            if job.listeners:
                anyio.from_thread.run_sync(self._notify, job, event, token=token)

        timeout = self.settings.generation_timeout_s
        started = time.perf_counter()
        timed_out = False

        watchdog_scope = anyio.CancelScope()

        async def watchdog() -> None:
            nonlocal timed_out
            with watchdog_scope:
                await anyio.sleep(timeout)
                timed_out = True
                job.cancel.cancel(f"timed out after GENERATION_TIMEOUT_S={timeout:g} s")

        assert self._tg is not None
        self._tg.start_soon(watchdog)
        try:
            # abandon_on_cancel=False: the thread always finishes (the cancel token
            # stops it within a step), so the slot is never freed while it runs.
            output = await anyio.to_thread.run_sync(self._generate_in_thread, job, progress)
        except Cancelled as exc:
            if timed_out:
                raise GenerationTimeout(
                    f"The generation was interrupted after {timeout:g} s "
                    "(SDXL_MCP_GENERATION_TIMEOUT_S). Use fewer steps or a smaller size, "
                    "or raise the timeout."
                ) from exc
            raise
        finally:
            watchdog_scope.cancel()
        result = await anyio.to_thread.run_sync(self._store_result, job, output, queue_wait)
        elapsed = time.perf_counter() - started
        self._last_generation_s = elapsed
        self._avg_generation_s = (
            elapsed if self._avg_generation_s is None
            else 0.7 * self._avg_generation_s + 0.3 * elapsed
        )
        return result

    def _generate_in_thread(
        self, job: Job, progress: Callable[[ProgressEvent], None]
    ) -> EngineOutput:
        started = time.perf_counter()
        # The first request builds the backend (torch and diffusers imports, seconds),
        # or waits while the preload thread does: part of model_load, not hidden.
        backend = self.backend
        building_s = time.perf_counter() - started
        output = backend.generate(job.request, job.seed, progress, job.cancel)
        output.timings["model_load"] = round(
            output.timings.get("model_load", 0.0) + building_s, 4)
        return output

    def _notify(self, job: Job, event: ProgressEvent) -> None:
        for listener in list(job.listeners):
            try:
                listener(event)
            except Exception:
                log.exception("A progress listener failed")

    def _store_result(self, job: Job, output: EngineOutput, queue_wait: float) -> GenerationResult:
        request = job.request
        t0 = time.perf_counter()
        infotext = format_infotext(_infotext_params(request, output))
        saved = self.store.save_image(
            output.image,
            seed=output.seed,
            infotext=infotext,
            compress_level=self.settings.png_compress_level,
        )
        if self.make_previews:
            # From the in-memory image: half the cost of decoding the PNG again.
            self._previews[str(saved.path)] = preview_jpeg_image(output.image)
            while len(self._previews) > PREVIEW_CACHE_SIZE:
                self._previews.popitem(last=False)
        save_s = time.perf_counter() - t0
        t = output.timings
        timings = Timings(
            queue_wait=round(queue_wait, 4),
            model_load=t.get("model_load", 0.0),
            base=t.get("base", 0.0),
            refiner=t.get("refiner", 0.0),
            decode=t.get("decode", 0.0),
            save=round(save_s, 4),
        )
        timings.total = round(
            timings.queue_wait + timings.model_load + timings.base + timings.refiner
            + timings.decode + timings.save,
            4,
        )
        path = str(saved.path)
        if output.refiner_error:
            message = (
                "Image generated with the base model only: refinement failed "
                f"({output.refiner_error})."
            )
        elif output.notes:
            message = "Image generated successfully (" + "; ".join(output.notes) + ")."
        else:
            message = "Image generated successfully"
        result = GenerationResult(
            success=True,
            status="succeeded",
            job_id=job.id,
            message=message,
            image_url=path,
            image=ImageInfo(url=path, source="sdxl", width=saved.width, height=saved.height),
            generation_time=timings.total,
            path=path,
            metadata_path=str(saved.path.with_suffix(".json")),
            seed=output.seed,
            precision=output.precision,
            device=output.device,
            refined=output.refined,
            refiner_error=output.refiner_error,
            steps=StepCounts(base=output.steps_base, refiner=output.steps_refiner),
            timings=timings,
        )
        payload = result.model_dump(mode="json")
        payload["request"] = request.model_dump(mode="json")
        payload["models"] = {"base": output.base_model, "refiner": output.refiner_model}
        try:
            self.store.write_sidecar(saved.path, payload)
            self.store.catalog.add(
                CatalogRecord.from_saved(
                    saved,
                    prompt=request.prompt,
                    negative_prompt=request.negative_prompt,
                    parameters=payload["request"],
                    seed=output.seed,
                    source="sdxl",
                    result_json=result.model_dump_json(),
                )
            )
        except BaseException:
            # The caller is told it failed: leave no image the catalog does not
            # know (it could never be served or found again) and no sidecar.
            self.store.discard(saved.path)
            raise
        return result

    async def preview(self, path: str) -> bytes:
        """The inline JPEG preview of an image this service saved (cached if fresh)."""
        cached = self._previews.get(path)
        if cached is not None:
            return cached
        return await anyio.to_thread.run_sync(preview_jpeg, path)

    def _error_result(self, job: Job, exc: SdxlMcpError) -> GenerationResult:
        status: Literal["failed", "cancelled"] = (
            "cancelled" if isinstance(exc, Cancelled) and not isinstance(exc, GenerationTimeout)
            else "failed"
        )
        return GenerationResult(
            success=False,
            status=status,
            job_id=job.id,
            seed=job.seed,
            message=exc.message,
            error_code=exc.code,
            retryable=exc.retryable,
        )

    # --------------------------------------------------------------- status
    def _retry_after(self) -> float:
        per_job = self._avg_generation_s or 30.0
        return max(1.0, per_job * (self._waiting + 1) / self.capacity)

    def _backend_error(self) -> str:
        error = self.engine_status().get("error") or "model loading failed"
        return f"Image generation is unavailable: {error}"

    def resolve_image(self, name: str) -> Path | None:
        """The path of a catalogued image this server saved, by file name, else None."""
        return self.store.resolve_name(name)

    def engine_state(self) -> str | None:
        """not_loaded, loading, ready or failed (for health checks)."""
        return self.engine_status().get("state")

    def queue_status(self) -> dict[str, Any]:
        return {
            "running": len(self._running),
            "waiting": self._waiting,
            "max_queue": self.settings.max_queue,
            "running_jobs": list(self._running),
            "capacity": self.capacity,
        }

    def engine_status(self) -> dict[str, Any]:
        if self._backend is not None:
            return self._backend.status()
        # Not constructed yet (torch may still be importing for the preload).
        return {"state": "loading" if self._preloading else "not_loaded",
                "base_model": self.settings.base_model,
                "refiner_model": self.settings.refiner_model or None}

    async def gpu_status(self) -> GpuStatus:
        """Answers at once, even while models load; works with no GPU and no NVML."""
        from sdxl_mcp.engine.gpu import nvml_devices

        devices = await anyio.to_thread.run_sync(nvml_devices)
        engine = self.engine_status()
        cuda = engine.get("cuda_available")
        if cuda is None and devices:
            cuda = True
        return GpuStatus(
            cuda_available=cuda,
            devices=devices,
            precision={
                "dtype": engine.get("dtype"),
                "device": engine.get("device"),
                "reason": engine.get("precision_reason"),
                "warning": engine.get("precision_warning"),
                "setting": self.settings.precision,
            },
            engine=engine,
            queue=self.queue_status(),
            last_generation_time=self._last_generation_s,
            pexels=self.stock_status(),
        )

    @property
    def stock_configured(self) -> bool:
        """Whether stock photo search can run (a Pexels key is set)."""
        return self.settings.pexels_api_key is not None

    def stock_status(self) -> dict[str, Any]:
        if self._pexels is not None:
            return self._pexels.status()
        return {"configured": self.stock_configured}

    # ---------------------------------------------------------------- stock
    def _stock_client(self) -> PexelsClient:
        """One client per service, so its cache and rate-limit view are shared."""
        if self._pexels is None:
            if self.settings.pexels_api_key is None:
                raise StockNotConfigured(PEXELS_KEY_MISSING)
            # Imported on first use: httpx and what its package pulls in cost
            # ~80 ms that a server start-up need not pay.
            from sdxl_mcp.stock.pexels import PexelsClient, default_http_client

            http = default_http_client()
            self._pexels = PexelsClient(
                self.settings.pexels_api_key,
                base_url=self.settings.pexels_base_url,
                http=http,
                cache_ttl_s=self.settings.pexels_cache_ttl_s,
            )
            self._pexels_http = http
        return self._pexels

    async def search_stock(self, request: StockSearchRequest) -> StockSearchResult:
        store = await anyio.to_thread.run_sync(lambda: self.store)
        return await self._stock_client().search_and_download(request, store)

    async def _stock_first(self, request: GenerationRequest) -> GenerationResult | None:
        """The guide's workflow: a free Pexels photo that fits, or None."""
        started = time.perf_counter()
        client = self._stock_client()
        ratio = request.width / request.height
        orientation = "square" if 0.9 <= ratio <= 1.1 else (
            "landscape" if ratio > 1 else "portrait")
        search = StockSearchRequest(query=request.prompt[:200], orientation=orientation,
                                    per_page=5, download=True)
        store = await anyio.to_thread.run_sync(lambda: self.store)
        found = await client.search_and_download(
            search, store, width=request.width, height=request.height
        )
        if found.downloaded is None:
            log.info("No Pexels photo for %r", request.prompt[:80])
            return None
        photo = found.photos[0]
        saved = found.downloaded
        elapsed = round(time.perf_counter() - started, 4)
        return GenerationResult(
            success=True,
            status="succeeded",
            message="Found a free stock photo on Pexels"
            + (" (already downloaded)" if saved.cached else "")
            + f". Credit it: {saved.attribution}",
            image_url=saved.path,
            image=ImageInfo(
                url=saved.path,
                source="pexels",
                photographer=photo.photographer,
                photographer_url=photo.photographer_url,
                width=saved.width or photo.width,
                height=saved.height or photo.height,
            ),
            generation_time=elapsed,
            path=saved.path,
            timings=Timings(total=elapsed),
            cached=saved.cached,
            pexels_photo_id=photo.id,
            pexels_page_url=photo.url,
            attribution=saved.attribution,
        )


def _infotext_params(request: GenerationRequest, output: EngineOutput) -> InfotextParams:
    ensemble = request.refiner_mode == "ensemble"
    refined = output.refiner_model is not None
    return InfotextParams(
        prompt=request.prompt,
        negative_prompt=request.negative_prompt,
        steps=request.num_inference_steps,
        sampler="Euler",
        cfg_scale=request.guidance_scale,
        seed=output.seed,
        width=request.width,
        height=request.height,
        model=output.base_model,
        refiner=output.refiner_model if refined else None,
        refiner_switch_at=request.high_noise_frac if refined and ensemble else None,
        refiner_mode=None if not refined or ensemble else "sequential",
        refiner_steps=None if not refined or ensemble else output.steps_refiner,
        refiner_strength=None if not refined or ensemble else request.refiner_strength,
    )

