"""Seconds left of a job's denoising, from its progress events: pure arithmetic.

Guarantees (``tests/service/test_eta.py`` checks each): a stage's first step is never timed;
no estimate before :data:`MIN_TIMED` steps were timed; the current stage's steps cost its own
time per step once enough were timed, later ones the mean; :meth:`EtaTracker.remaining` never
goes below zero (details: docs/ARCHITECTURE.md "Guarantees"). Nothing here reads a clock:
callers pass ``now`` (``time.perf_counter()``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sdxl_mcp.backend.base import ProgressEvent, eta_text

__all__ = ["MIN_TIMED", "EtaTracker", "eta_text"]

#: Steps timed before any estimate ("once a few steps have run").
MIN_TIMED = 2


@dataclass
class _Rate:
    seconds: float = 0.0
    steps: int = 0

    def per_step(self) -> float | None:
        return self.seconds / self.steps if self.steps else None


@dataclass
class EtaTracker:
    """One job's step times; :meth:`observe` each event, in order."""

    _stages: dict[str, _Rate] = field(default_factory=dict)
    _last: ProgressEvent | None = None
    _last_at: float = 0.0
    _estimate: float | None = None

    def observe(self, event: ProgressEvent, now: float) -> float | None:
        """Record ``event`` (finished at ``now``); the seconds left, or None (too early)."""
        last = self._last
        if (last is not None and last.stage == event.stage and event.step == last.step + 1
                and event.done == last.done + 1):
            rate = self._stages.setdefault(event.stage, _Rate())
            rate.seconds += max(0.0, now - self._last_at)
            rate.steps += 1
        self._last, self._last_at = event, now
        self._estimate = self._seconds_left(event)
        return self._estimate

    def remaining(self, now: float) -> float | None:
        """The last estimate less the time since it was made (None before there is one)."""
        if self._estimate is None:
            return None
        return max(0.0, self._estimate - max(0.0, now - self._last_at))

    def _seconds_left(self, event: ProgressEvent) -> float | None:
        timed = sum(r.steps for r in self._stages.values())
        if timed < MIN_TIMED:
            return None
        mean = sum(r.seconds for r in self._stages.values()) / timed
        own = self._stages.get(event.stage)
        current = own.per_step() if own is not None and own.steps >= MIN_TIMED else None
        in_stage = max(0, event.stage_total - event.step)
        after = max(0, event.total - event.done - in_stage)
        return in_stage * (current if current is not None else mean) + after * mean

