"""Admission and jobs: the generation slots, the queue, the watchdog, cancel, retention.

At most ``capacity`` generations run and MAX_QUEUE wait (one more is ``Busy``); cancel stops
a running job within one denoising step; GENERATION_TIMEOUT_S is enforced; every job's state
goes to the job table (details: docs/ARCHITECTURE.md "Guarantees"). A job carries its own
work, a blocking ``work(job, progress)`` its workflow built, run in a worker thread: the
queue knows nothing of engines, storage, transports or workflows.
"""

from __future__ import annotations

import logging
import secrets
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
from anyio.abc import TaskGroup

from sdxl_mcp.backend.base import CancelToken, ProgressEvent
from sdxl_mcp.errors import (
    Busy,
    Cancelled,
    GenerationTimeout,
    JobLost,
    NotFound,
    SdxlMcpError,
)
from sdxl_mcp.schemas import GenerationResult
from sdxl_mcp.service.eta import EtaTracker
from sdxl_mcp.service.jobtable import JobTable
from sdxl_mcp.service.results import error_result, running_result

log = logging.getLogger(__name__)

JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]
ProgressListener = Callable[[ProgressEvent], None]
#: The blocking work of one job (a worker thread): it reports progress through the
#: listener, stops within a step once ``job.cancel`` is set, and returns the Result.
JobWork = Callable[["Job", ProgressListener], GenerationResult]

#: Finished jobs are kept at least this long (and at most MAX_JOBS of them).
JOB_RETENTION_S = 3600.0
MAX_JOBS = 1000
#: Retry hint per queued job before any generation has been timed.
DEFAULT_JOB_S = 30.0


@dataclass
class Job:
    id: str
    seed: int
    #: What the job does, built by its workflow (generate, edit, vary, ...).
    work: JobWork
    created: float = field(default_factory=time.monotonic)
    state: JobState = "queued"
    progress: ProgressEvent | None = None
    eta: EtaTracker = field(default_factory=EtaTracker)
    result: GenerationResult | None = None
    cancel: CancelToken = field(default_factory=CancelToken)
    done: anyio.Event = field(default_factory=anyio.Event)
    listeners: list[ProgressListener] = field(default_factory=list)
    finished: float | None = None
    started: float | None = None
    #: Seconds spent waiting for a slot (set when the job starts).
    queue_wait_s: float = 0.0
    #: The wait for the generation slot; cancelling it takes a queued job out at once.
    queue_wait: anyio.CancelScope | None = None


class JobQueue:
    """Slots, queue and job records. Start with :meth:`start`, stop with :meth:`close`."""

    def __init__(
        self,
        *,
        capacity: int,
        max_queue: int,
        max_wait_s: float,
        timeout_s: float,
    ) -> None:
        self.capacity = capacity
        self.max_queue = max_queue
        self._max_wait_s = max_wait_s
        self.timeout_s = timeout_s
        self._table: JobTable | None = None
        self._slot = anyio.Semaphore(capacity)
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._waiting = 0
        self._running: dict[str, Job] = {}
        #: ``time.monotonic()`` of the last job admitted or finished (idle unload).
        self.last_active = time.monotonic()
        self._tg: TaskGroup | None = None
        self.closing = False
        self.last_generation_s: float | None = None
        self._avg_generation_s: float | None = None

    def start(self, task_group: TaskGroup, table: JobTable | None) -> None:
        """Run jobs in ``task_group``; record them in ``table`` (None: storage is down)."""
        self._tg, self._table = task_group, table

    def all(self) -> list[Job]:
        """The jobs held in memory, oldest first."""
        return list(self._jobs.values())

    # ------------------------------------------------------------ admission
    def submit(
        self,
        seed: int | None,
        work: JobWork,
        on_progress: ProgressListener | None = None,
    ) -> Job:
        """One running per slot plus MAX_QUEUE waiting; more is ``Busy``.

        ``seed``: the request's (None: a random one, then the job's ``seed``); every
        kind of job shares the slots."""
        if self._tg is None:
            raise RuntimeError("ImageService must be used as an async context manager")
        if self.closing:
            raise Busy("The server is shutting down; retry once it has restarted.",
                       retry_after_s=10.0)
        active = self._waiting + len(self._running)
        if active >= self.capacity + self.max_queue:
            raise Busy(
                f"The server is busy ({active} generations running or queued, "
                f"MAX_QUEUE={self.max_queue}); retry in about {self.retry_after():.0f} s.",
                retry_after_s=self.retry_after(),
            )
        job = Job(id=uuid.uuid4().hex, seed=seed if seed is not None else secrets.randbelow(2**32),
                  work=work)
        if on_progress is not None:
            job.listeners.append(on_progress)
        job.queue_wait = anyio.CancelScope()
        self._remember(job)
        self._waiting += 1
        self.last_active = time.monotonic()
        self._tg.start_soon(self._run, job)
        return job

    def idle(self) -> bool:
        """No job running or waiting."""
        return self._waiting == 0 and not self._running

    def retry_after(self) -> float:
        per_job = self._avg_generation_s or DEFAULT_JOB_S
        return max(1.0, per_job * (self._waiting + 1) / self.capacity)

    # ------------------------------------------------------------ following
    async def wait(self, job_id: str, wait_s: float) -> GenerationResult:
        job = self._jobs.get(job_id)
        if job is None:
            return await self._past_job(job_id)
        with anyio.move_on_after(max(0.0, wait_s)):
            await job.done.wait()
        return self.result_of(job)

    async def cancel_and_wait(self, job_id: str) -> GenerationResult:
        job = self._jobs.get(job_id)
        if job is None:
            return await self._past_job(job_id)
        if job.state in ("queued", "running"):
            self.cancel(job, "cancelled by the caller")
            with anyio.move_on_after(self._max_wait_s):
                await job.done.wait()
        return self.result_of(job)

    def result_of(self, job: Job) -> GenerationResult:
        if job.result is not None:
            return job.result
        eta = job.eta.remaining(time.perf_counter()) if job.state == "running" else None
        return running_result(job.id, job.seed, job.state, job.progress, eta)

    def cancel(self, job: Job, reason: str) -> None:
        """Stop a job: a running one within a denoising step, a queued one at once."""
        job.cancel.cancel(reason)
        if job.queue_wait is not None:
            job.queue_wait.cancel()

    def unfinished(self) -> list[Job]:
        return [j for j in self._jobs.values() if j.state in ("queued", "running")]

    async def _past_job(self, job_id: str) -> GenerationResult:
        """A job this process does not hold: finished before a restart, or lost by one."""
        record = None
        if len(job_id) <= 64 and self._table is not None:
            record = await anyio.to_thread.run_sync(self._table.get, job_id)
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

    # ----------------------------------------------------------------- status
    def status(self) -> dict[str, Any]:
        return {
            "running": len(self._running),
            "waiting": self._waiting,
            "max_queue": self.max_queue,
            "running_jobs": list(self._running),
            "capacity": self.capacity,
        }

    # ---------------------------------------------------------------- running
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
        if self._table is None:
            return
        try:
            await anyio.to_thread.run_sync(self._table.save, job.id, job.state, result)
        except SdxlMcpError as exc:  # never fail a generation over bookkeeping
            log.warning("Could not record job %s: %s", job.id, exc.message)

    async def _run(self, job: Job) -> None:
        queued_at = time.perf_counter()
        waiting = True
        try:
            queue_wait = job.queue_wait or anyio.CancelScope()
            with queue_wait:  # cancelled by cancel(): a queued job leaves the queue at once
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
                job.queue_wait_s = job.started - queued_at
                try:
                    job.result = await self._run_started(job)
                    job.state = "succeeded"
                finally:
                    self._running.pop(job.id, None)
            finally:
                self._slot.release()
        except SdxlMcpError as exc:
            job.state = "cancelled" if isinstance(exc, Cancelled) else "failed"
            job.result = error_result(job.id, job.seed, exc)
        except anyio.get_cancelled_exc_class():
            job.state = "cancelled"
            job.result = error_result(job.id, job.seed,
                                      Cancelled("Generation cancelled by shutdown."))
            raise
        except Exception as exc:
            log.exception("Generation %s failed unexpectedly", job.id)
            job.state = "failed"
            job.result = error_result(
                job.id, job.seed,
                SdxlMcpError(f"Generation failed unexpectedly ({type(exc).__name__})."),
            )
        finally:
            if waiting:  # cancelled while waiting for the slot
                self._waiting -= 1
            job.finished = self.last_active = time.monotonic()
            with anyio.CancelScope(shield=True):
                await self._persist(job)
            job.done.set()

    async def _run_started(self, job: Job) -> GenerationResult:
        if job.cancel.cancelled:
            raise Cancelled(f"Generation {job.cancel.reason} before it started.")
        job.state = "running"
        await self._persist(job)
        token = anyio.lowlevel.current_token()

        def progress(event: ProgressEvent) -> None:  # called in the worker thread
            event = replace(event, eta_s=job.eta.observe(event, time.perf_counter()))
            job.progress = event
            if job.listeners:
                anyio.from_thread.run_sync(_notify, job, event, token=token)

        timeout = self.timeout_s
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
            result = await anyio.to_thread.run_sync(job.work, job, progress)
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
        elapsed = time.perf_counter() - started
        self.last_generation_s = elapsed
        self._avg_generation_s = (
            elapsed if self._avg_generation_s is None
            else 0.7 * self._avg_generation_s + 0.3 * elapsed
        )
        return result


def _notify(job: Job, event: ProgressEvent) -> None:
    for listener in list(job.listeners):
        try:
            listener(event)
        except Exception:
            log.exception("A progress listener failed")
