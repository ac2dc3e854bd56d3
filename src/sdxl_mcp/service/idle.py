"""Idle unload: the models leave the device and RAM after SDXL_MCP_KEEP_ALIVE_S without a job.

Guarantees (tests/service/test_idle.py; docs/MEMORY.md "Idle unload"):

* :class:`IdleUnload` watches the service's queue; once no job has run or
  waited for KEEP_ALIVE_S (0: right after each job), it asks the built backend
  to ``unload`` in a worker thread; -1 never starts it;
* it only asks while the queue is idle, and the engine unloads under its
  generation lock, so a job never races an unload: a job admitted meanwhile
  waits for the lock and loads the models again (its progress says so);
* :meth:`IdleUnload.due` is when the next unload is due (None: none is).
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread

if TYPE_CHECKING:
    from sdxl_mcp.backend.base import Backend
    from sdxl_mcp.service.jobs import JobQueue

log = logging.getLogger(__name__)

__all__ = ["IdleUnload"]


class IdleUnload:
    """The keep-alive of one service's backend."""

    def __init__(self, keep_alive_s: float, jobs: JobQueue) -> None:
        self.keep_alive_s = keep_alive_s
        self.jobs = jobs
        self.backend: Backend | None = None  # set once built
        self._tried: float | None = None  # jobs.last_active when we last asked

    def due(self) -> datetime | None:
        """When the models leave memory if no job comes (None: loaded nothing, never, or busy)."""
        backend = self.backend
        if self.keep_alive_s < 0 or backend is None or backend.state != "ready" \
                or not self.jobs.idle() or self.jobs.last_active == self._tried:
            return None
        left = self.keep_alive_s - (time.monotonic() - self.jobs.last_active)
        return datetime.now(UTC) + timedelta(seconds=max(0.0, left))

    async def run(self) -> None:
        """Watch until cancelled (the service's task group owns it)."""
        if self.keep_alive_s < 0:
            return
        tick = min(1.0, max(0.05, self.keep_alive_s / 4))
        while True:
            await anyio.sleep(tick)
            backend = self.backend
            if backend is None or backend.state != "ready" or not self.jobs.idle():
                continue
            if self.jobs.last_active == self._tried:
                continue  # asked already in this idle period (a backend may decline)
            if time.monotonic() - self.jobs.last_active < self.keep_alive_s:
                continue
            self._tried = self.jobs.last_active
            if await anyio.to_thread.run_sync(backend.unload):
                log.info("Models unloaded after %.0f s without a job "
                         "(SDXL_MCP_KEEP_ALIVE_S); the next job loads them again",
                         self.keep_alive_s)
