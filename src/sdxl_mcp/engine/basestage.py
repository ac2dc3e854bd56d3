"""The base stage, shared by generation and edits: prompts encoded, the pipeline run;
and what every output of a run reports (:func:`run_fields`).

Guarantees (``tests/engine/test_engine.py``, ``tests/engine/test_edit_engine.py``):
both run under the engine's out-of-memory retry (a retry restarts the step
count), the stage's steps are reported through ``reporter``, and
``timings["base"]`` holds its seconds (device synchronised).
"""

from __future__ import annotations

import time
from typing import Any

from sdxl_mcp.engine.parts import ResidentEngine
from sdxl_mcp.engine.prompts import EncodedPrompts, encode_prompts
from sdxl_mcp.engine.refinestage import RefinerPass
from sdxl_mcp.engine.schedules import StepReporter
from sdxl_mcp.schemas import EditRequest, GenerationRequest
from sdxl_mcp.schemas.fields import DEFAULT_SAMPLER


def run_base(engine: ResidentEngine, pipe: Any, refiner: Any,
             request: GenerationRequest | EditRequest, args: dict[str, Any],
             reporter: StepReporter, timings: dict[str, float]) -> tuple[EncodedPrompts, Any]:
    """The prompts as encoded (for the refiner too) and the latents ``pipe(**args)`` made."""
    t0 = time.perf_counter()
    prompts = engine.with_oom_retry("base", lambda: encode_prompts(
        pipe, refiner, request.prompt, request.negative_prompt, request.guidance_scale))
    latents = engine.with_oom_retry(
        "base",
        lambda: pipe(**args, **prompts.base, callback_on_step_end=reporter).images,
        before_retry=reporter.restart,
    )
    engine.sync()
    timings["base"] = round(time.perf_counter() - t0, 4)
    return prompts, latents


def run_fields(engine: ResidentEngine, refiner: Any, reporter: StepReporter,
               refining: RefinerPass | None, sampler: str | None) -> dict[str, Any]:
    """What every output of a run reports beside its image: the steps each stage ran,
    the refiner's outcome, the device and precision, the models."""
    return {
        "steps_base": reporter.steps_run,
        "steps_refiner": refining.steps if refining else 0,
        "refined": bool(refining and refining.refined),
        "refiner_error": refining.error if refining else None,
        "precision": engine.decision.dtype,
        "device": engine.decision.device,
        "base_model": engine.model_ref,
        "model_hash": engine.model_hash,
        "sampler": sampler or DEFAULT_SAMPLER,
        "refiner_model": engine.settings.refiner_model if refiner is not None else None,
    }
