"""Variations on the local engine: several seeds of one request, batched on a GPU.

Guarantees (docs/EDITING.md; tests/engine/test_vary_batch.py): batched, ONE pipeline call per
stage with one generator per seed (each image is its seed's generation up to GPU numerics);
otherwise one by one, bit for bit (the CPU default); progress runs across every image; a
batch out of memory runs again one by one; the outputs' timings add up to the job's
(details: docs/ARCHITECTURE.md "Guarantees").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from sdxl_mcp.backend.base import CancelToken, EngineOutput, ProgressCallback, ProgressEvent
from sdxl_mcp.backend.batching import OutputCallback, batched_progress, one_by_one
from sdxl_mcp.engine.parts import ResidentEngine
from sdxl_mcp.errors import Cancelled, OutOfMemory
from sdxl_mcp.schemas import GenerationRequest

log = logging.getLogger(__name__)

#: The stage timings a batched output shares with the other images of its batch.
SHARED_TIMINGS = ("base", "refiner", "decode")


def batches(setting: str, device: str, count: int) -> bool:
    """Whether ``count`` images of one request run as one batch on ``device``."""
    if count < 2 or setting == "off":
        return False
    return setting == "on" or device.startswith("cuda")


class BatchMixin:
    """``generate_batch`` for ``SDXLEngine`` (see the module's guarantees)."""

    def generate_batch(
        self: ResidentEngine,
        request: GenerationRequest,
        seeds: Sequence[int],
        on_progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
        on_output: OutputCallback | None = None,
        batched: bool | None = None,
    ) -> list[EngineOutput]:
        cancel = cancel or CancelToken()
        seeds = list(seeds)
        started = time.perf_counter()
        if self.state != "unloaded":
            self.load()
        if batched is None:
            batched = batches(self.settings.batch_variations, self.decision.device, len(seeds))
        progress = _Monotonic(on_progress)

        if not batched or len(seeds) < 2:
            return one_by_one(self.generate, request, seeds, progress, cancel, on_output)
        timings = {"model_load": round(time.perf_counter() - started, 4)}
        outputs: list[EngineOutput] | None = None
        with self.generate_lock:
            if cancel.cancelled:
                raise Cancelled(f"Generation {cancel.reason} before it started.")
            timings["model_load"] += round(
                self.reload_if_unloaded(progress, request.num_inference_steps)
                + self.use_model(request.model, progress, request.num_inference_steps), 4)
            try:
                outputs = self.loras.run(self.base, request, lambda r: self.generate_images(
                    r, seeds[0], batched_progress(progress, len(seeds)), cancel, timings, seeds))
            except OutOfMemory as exc:
                log.warning("A batch of %d images ran out of memory (%s); running them one "
                            "by one", len(seeds), exc.message)
        if outputs is None:  # outside the lock: generate takes it per image
            outputs = one_by_one(self.generate, request, seeds, progress, cancel, on_output)
            for output in outputs:
                output.notes.append(f"the batch of {len(seeds)} ran out of memory, so the "
                                    "images ran one by one")
            return outputs
        for index, output in enumerate(outputs):
            _share(output, len(seeds))
            if on_output is not None:
                on_output(index, output)
        return outputs


def _share(output: EngineOutput, count: int) -> None:
    for name in SHARED_TIMINGS:
        if name in output.timings:
            output.timings[name] = round(output.timings[name] / count, 4)
    output.notes.append(f"batched: one of {count} images in one pipeline call (its timings "
                        f"are 1/{count} of the batch's)")


class _Monotonic:
    """Forwards progress only when it moves forward (a batch retried one by one restarts)."""

    def __init__(self, forward: ProgressCallback | None) -> None:
        self.forward = forward
        self.done = 0

    def __call__(self, event: ProgressEvent) -> None:
        if self.forward is not None and event.done > self.done:
            self.done = event.done
            self.forward(event)


__all__ = ["BatchMixin", "batches"]
