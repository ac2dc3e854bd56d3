"""Engine output -> Result: pure functions, no I/O.

What a caller is told about a generation is decided here and only here: the
message (refined, base only because the refiner failed, notes), the timings
(total = the sum of the phases), the steps each stage ran, the A1111 infotext
written into the PNG, the sidecar payload, and the shape of an unfinished,
failed or cancelled job's Result.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal

from sdxl_mcp.backend.base import EngineOutput, ProgressEvent
from sdxl_mcp.errors import Cancelled, GenerationTimeout, SdxlMcpError
from sdxl_mcp.library import InfotextParams, SavedImage
from sdxl_mcp.library.checkpoints import model_name
from sdxl_mcp.schemas import (
    EditRequest,
    GenerationRequest,
    GenerationResult,
    ImageInfo,
    StepCounts,
    Timings,
    infotext_sampler,
)


def generation_message(output: EngineOutput) -> str:
    if output.refiner_error:
        return (
            "Image generated with the base model only: refinement failed "
            f"({output.refiner_error})."
        )
    if output.notes:
        return "Image generated successfully (" + "; ".join(output.notes) + ")."
    return "Image generated successfully"


def generation_timings(output: EngineOutput, queue_wait_s: float, save_s: float) -> Timings:
    t = output.timings
    timings = Timings(
        queue_wait=round(queue_wait_s, 4),
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
    return timings


def generation_result(
    job_id: str, output: EngineOutput, saved: SavedImage, timings: Timings, image_id: str
) -> GenerationResult:
    path = str(saved.path)
    return GenerationResult(
        success=True,
        status="succeeded",
        job_id=job_id,
        image_id=image_id,
        message=generation_message(output),
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
        prompt_tokens=output.prompt_tokens,
        negative_prompt_tokens=output.negative_prompt_tokens,
        model=model_name(output.base_model),
        model_hash=output.model_hash,
        sampler=output.sampler,
    )


def sidecar_payload(
    result: GenerationResult, request: GenerationRequest | EditRequest, output: EngineOutput
) -> dict[str, Any]:
    """The ``.json`` beside the PNG: the Result, the request and the models."""
    payload = result.model_dump(mode="json")
    payload["request"] = request.model_dump(mode="json")
    payload["models"] = {"base": output.base_model, "refiner": output.refiner_model}
    return payload


def infotext_params(request: GenerationRequest, output: EngineOutput) -> InfotextParams:
    sampler, schedule_type = infotext_sampler(request.sampler)
    ensemble = request.refiner_mode == "ensemble"
    refined = output.refiner_model is not None
    return InfotextParams(
        prompt=request.prompt,
        negative_prompt=request.negative_prompt,
        steps=request.num_inference_steps,
        sampler=sampler,
        schedule_type=schedule_type,
        cfg_scale=request.guidance_scale,
        seed=output.seed,
        width=request.width,
        height=request.height,
        model=model_name(output.base_model),
        model_hash=output.model_hash,
        refiner=output.refiner_model if refined else None,
        refiner_switch_at=request.high_noise_frac if refined and ensemble else None,
        refiner_mode=None if not refined or ensemble else "sequential",
        refiner_steps=None if not refined or ensemble else output.steps_refiner,
        refiner_strength=None if not refined or ensemble else request.refiner_strength,
    )


def reused_result(stored: GenerationResult, elapsed_s: float) -> GenerationResult:
    """A catalogued identical request's Result, returned instead of generating."""
    return stored.model_copy(update={
        "job_id": None,
        "reused": True,
        "generation_time": round(elapsed_s, 4),
        "timings": Timings(total=round(elapsed_s, 4)),
        "message": f"Reused the catalogued image of an identical request (seed {stored.seed}); "
        "send reuse=false to generate it again.",
    })


def running_result(
    job_id: str, seed: int, state: str, progress: ProgressEvent | None,
    eta_s: float | None = None,
) -> GenerationResult:
    """A job handle: what a caller gets while the job is queued or running.

    ``eta_s``: the seconds left now (None while queued or before a few steps ran)."""
    if eta_s is not None:
        eta_s = round(eta_s, 1)
    done = ""
    if progress is not None:
        now = replace(progress, eta_s=eta_s)
        done = f" ({now.message}; {progress.done}/{progress.total} steps)"
    return GenerationResult(
        success=False,
        status="running",
        job_id=job_id,
        eta_s=eta_s,
        seed=seed,
        message=f"Generation {state}{done}; call get_generation with this job_id "
        "to wait for the result.",
    )


def error_result(job_id: str, seed: int, exc: SdxlMcpError) -> GenerationResult:
    status: Literal["failed", "cancelled"] = (
        "cancelled" if isinstance(exc, Cancelled) and not isinstance(exc, GenerationTimeout)
        else "failed"
    )
    return GenerationResult(
        success=False,
        status=status,
        job_id=job_id,
        seed=seed,
        message=exc.message,
        error_code=exc.code,
        retryable=exc.retryable,
    )
