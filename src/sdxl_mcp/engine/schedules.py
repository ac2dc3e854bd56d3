"""Denoising schedules and the per-step callback: progress events and cancel.

Pure arithmetic plus one small callback class; no pipelines are built here.
"""

from __future__ import annotations

import math
from typing import Any

from sdxl_mcp.backend.base import CancelToken, ProgressCallback, ProgressEvent, Stage
from sdxl_mcp.errors import Cancelled


def sequential_refiner_schedule(steps_to_run: int, strength: float) -> int:
    """Schedule length for img2img so that exactly ``steps_to_run`` steps run.

    diffusers' img2img runs ``int(num_inference_steps * strength)`` steps (the
    guide's "30 refiner steps" at strength 0.3 run only 9), so we lengthen the
    schedule instead of silently running fewer steps than asked.
    """
    first = max(1, math.floor(steps_to_run / strength) - 1)
    for length in range(first, math.ceil(steps_to_run / strength) + 3):
        if min(int(length * strength), length) == steps_to_run:
            return length
    raise ValueError(f"no schedule runs {steps_to_run} steps at strength {strength}")


class StepReporter:
    """The ``callback_on_step_end`` of one stage: progress events and cancel."""

    def __init__(
        self,
        stage: Stage,
        stage_total: int,
        offset: int,
        total: int,
        on_progress: ProgressCallback | None,
        cancel: CancelToken,
    ) -> None:
        self.stage, self.stage_total, self.offset, self.total = stage, stage_total, offset, total
        self.on_progress, self.cancel = on_progress, cancel
        self.steps_run = 0
        self._calls = 0

    def __call__(self, pipe: Any, i: int, t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        # A second-order sampler (Heun) calls back twice per step but the last: count steps.
        self._calls += 1
        order = getattr(getattr(pipe, "scheduler", None), "order", 1)
        step = -(-self._calls // order) if isinstance(order, int) and order > 1 else self._calls
        if step > self.steps_run:
            self.steps_run = step
            self._report()
        # Raising is the only way to stop a diffusers loop: pipe._interrupt
        # still decodes and returns an image.
        if self.cancel.cancelled:
            raise Cancelled(f"Generation {self.cancel.reason} during the {self.stage} stage.")
        return kwargs

    def restart(self) -> None:
        """Count from zero again (the stage is run again after an out-of-memory retry)."""
        self.steps_run = self._calls = 0

    def _report(self) -> None:
        if self.on_progress is not None:
            self.on_progress(
                ProgressEvent(
                    stage=self.stage,
                    step=self.steps_run,
                    stage_total=self.stage_total,
                    done=self.offset + self.steps_run,
                    total=self.total,
                )
            )
