"""The refiner stage after the base (or an edit's) latents, shared by generation and edits.

Guarantees (``tests/engine/test_engine.py``, ``tests/engine/test_edit_engine.py``): a cancel
before the stage raises ``Cancelled`` naming the job; the stage reports its
steps after the base's (``StepReporter``) and records ``timings["refiner"]``;
a refiner that fails (out of memory or otherwise) never loses the image: the
base latents come back with ``refined=False`` and the error's first line.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sdxl_mcp.backend.base import CancelToken, ProgressCallback
from sdxl_mcp.engine.devices import free_device_memory, is_out_of_memory
from sdxl_mcp.engine.schedules import StepReporter
from sdxl_mcp.errors import Cancelled, first_line

log = logging.getLogger("sdxl_mcp.engine.sdxl")


@dataclass(frozen=True)
class RefinerPass:
    """What the stage gives back: the latents to decode, and what to report."""

    latents: Any
    refined: bool
    error: str | None
    steps: int


def run_refiner(
    refiner: Any,
    latents: Any,
    args: dict[str, Any],
    *,
    job: str,
    steps: int,
    done: int,
    total: int,
    on_progress: ProgressCallback | None,
    cancel: CancelToken,
    timings: dict[str, float],
    sync: Callable[[], None],
) -> RefinerPass:
    """Refine ``latents`` (``steps`` of ``total``, after ``done``); ``job`` names it in errors."""
    if cancel.cancelled:
        raise Cancelled(f"{job} {cancel.reason} between the base and refiner stages.")
    reporter = StepReporter("refiner", steps, done, total, on_progress, cancel)
    started = time.perf_counter()
    refined_latents = None
    failure: str | None = None
    try:
        refined_latents = refiner(image=latents, callback_on_step_end=reporter, **args).images
    except Cancelled:
        raise
    except Exception as exc:
        # Never lose the base result: log, then decode the base latents.
        failure = ("out of memory: " if is_out_of_memory(exc) else "") + first_line(exc)
        log.warning("Refinement failed: %s", failure)
    if failure is not None:
        free_device_memory()  # outside the except block: frames are released
    sync()
    timings["refiner"] = round(time.perf_counter() - started, 4)
    if failure is not None:
        return RefinerPass(latents, False, failure, 0)
    return RefinerPass(refined_latents, True, None, reporter.steps_run)

