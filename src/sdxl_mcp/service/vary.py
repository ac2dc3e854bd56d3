"""The variations workflow: a generated image's request re-run with new seeds, as one job.

Guarantees (docs/EDITING.md; ``tests/service/test_vary.py``):

* :func:`plan_variations` runs before admission, on the image the resolver has
  accepted: it refuses a stock photo and any image without a catalogued
  generation request (an INPUT_DIRS file, an edit), pointing to ``edit_image``;
  it merges the overrides into the catalogued request and validates the merged
  request as a ``GenerationRequest`` (bounds, the aspect_ratio/width rule), one
  per seed: ``seed``, ``seed+1``, ... or random ones. A refused request writes
  nothing and takes no slot;
* all ``count`` images are ONE job (one slot, one job_id): :func:`run_variations`
  is its blocking work, one ``backend.generate_batch`` call (the requests differ
  only in their seed). The local engine batches them in one pipeline call on
  CUDA and runs them one by one on a CPU (``engine.batch``; the rule is
  SDXL_MCP_BATCH_VARIATIONS); Ray runs them one by one. GENERATION_TIMEOUT_S
  covers the whole job;
* progress runs across every image (``done``/``total`` in image-steps over all
  of them); each image is saved as soon as the backend hands it over, so a
  cancel, which stops the running image (or batch) within a step while the rest
  never start, keeps the images saved before it (catalogued, listed in the answer);
* each image is saved and catalogued like a generation (``generation_entry``),
  with its own seed and the merged request, so it is reproducible on its own:
  ``generate_image`` with that request and seed gives the same pixels. Reuse
  never short-circuits a variation (each is a new image);
* the job's own Result (what ``get_generation(job_id)`` returns) is the first
  variation's, its message naming the others; :func:`variations_result` makes
  the ``VariationsResult`` with every Result.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio.to_thread
from pydantic import ValidationError

from sdxl_mcp.backend.base import Backend, EngineOutput, ProgressEvent
from sdxl_mcp.errors import BadRequest
from sdxl_mcp.library.resolver import ResolvedImage
from sdxl_mcp.schemas import (
    QUALITY_PRESETS,
    SEED_MAX,
    GenerationRequest,
    GenerationResult,
    VariationsResult,
    VaryRequest,
    describe_validation_error,
)
from sdxl_mcp.schemas.loras import lora_overrides_reopen_refiner
from sdxl_mcp.service.generate import generation_entry
from sdxl_mcp.service.jobs import Job, ProgressListener
from sdxl_mcp.service.loras import admit

if TYPE_CHECKING:
    from sdxl_mcp.service.facade import ImageService

#: Keeps one finished variation: (its request, the backend's output) -> its saved Result.
SaveOne = Callable[[GenerationRequest, EngineOutput], GenerationResult]


@dataclass
class VariationPlan:
    """What a variations job carries: one validated request per image (seeds set)."""

    requests: list[GenerationRequest]
    source_image_id: str | None
    #: Filled by the worker thread as each image is saved (read by the caller after).
    results: list[GenerationResult] = field(default_factory=list)


async def vary(service: ImageService, request: VaryRequest,
               on_progress: ProgressListener | None = None, wait_s: float | None = None,
               *, previews: bool = False) -> VariationsResult:
    """``count`` variations of a generated image as one job."""
    plan = plan_variations(await service.library.resolve(request.image, "image"), request)
    plan.requests = [await anyio.to_thread.run_sync(admit, service.settings, r)
                     for r in plan.requests]

    def work(job: Job, progress: ProgressListener) -> GenerationResult:
        backend, building_s = service.timed_backend()

        def save(one: GenerationRequest, output: EngineOutput) -> GenerationResult:
            entry = generation_entry(service.settings, one, output)
            return service.keep(job, output, entry, preview=previews,
                                building_s=0.0 if plan.results else building_s)

        return run_variations(plan, job, progress, backend, save)

    job = service.submit(plan.requests[0].seed, work, on_progress)
    return variations_result(plan, await service.follow(job, on_progress, wait_s))


def plan_variations(source: ResolvedImage, request: VaryRequest) -> VariationPlan:
    """The merged, validated requests (see the module's guarantees)."""
    record = source.record
    name = source.image_id or source.path.name
    if record is not None and record.source == "pexels":
        raise BadRequest(f"image: {name} is a stock photo, so there is no request to re-run; "
                         "use edit_image to make a new image from it.")
    params = record.parameters if record is not None else {}
    if "edit_of" in params or "strength" in params:
        raise BadRequest(f"image: {name} was made by edit_image; vary the image it was edited "
                         "from, or call edit_image again with a new seed.")
    if record is None or record.source != "sdxl" or not params.get("prompt"):
        raise BadRequest(f"image: {name} has no catalogued generation request to re-run (it "
                         "was not generated by this server); use edit_image to change it.")
    base = {k: v for k, v in params.items() if k in GenerationRequest.model_fields}
    overrides = request.overrides()
    if overrides.keys() & {"width", "height"}:
        base.pop("aspect_ratio", None)
    elif base.get("aspect_ratio") is not None or "aspect_ratio" in overrides:
        base.pop("width", None)  # the stored request holds the ratio and its size
        base.pop("height", None)
    if "quality" in overrides:  # the new preset decides what the overrides leave
        for key in QUALITY_PRESETS[overrides["quality"]]:
            base.pop(key, None)
    if lora_overrides_reopen_refiner(overrides):
        base.pop("use_refinement", None)
    merged = {**base, **overrides, "use_pexels": False, "use_generation": True}
    seeds = [s if s is not None else secrets.randbelow(SEED_MAX + 1) for s in request.seeds()]
    try:
        requests = [GenerationRequest.model_validate({**merged, "seed": s}) for s in seeds]
    except ValidationError as exc:
        raise BadRequest(describe_validation_error(exc)) from None
    return VariationPlan(requests=requests, source_image_id=source.image_id)


def run_variations(
    plan: VariationPlan, job: Job, progress: Callable[[ProgressEvent], None], backend: Backend,
    save: SaveOne,
) -> GenerationResult:
    """The job's blocking work: every image through ``backend.generate_batch``, each saved
    as soon as it is ready; the first one's Result (worker thread)."""
    count = len(plan.requests)
    seeds = [request.seed for request in plan.requests]
    assert None not in seeds

    def keep(index: int, output: EngineOutput) -> None:
        plan.results.append(save(plan.requests[index], output))

    backend.generate_batch(plan.requests[0], [s for s in seeds if s is not None], progress,
                           job.cancel, keep)
    first = plan.results[0]
    if count == 1:
        return first
    others = ", ".join(r.image_id or r.path or "?" for r in plan.results[1:])
    return first.model_copy(update={
        "message": f"{first.message} Variation 1 of {count}; the others: {others}."})


def variations_result(plan: VariationPlan, job_result: GenerationResult) -> VariationsResult:
    """The answer: the job's status and every variation saved so far."""
    results = list(plan.results)
    count = len(plan.requests)
    answer = VariationsResult(success=job_result.status == "succeeded", status=job_result.status,
                              message="", job_id=job_result.job_id, results=results,
                              source_image_id=plan.source_image_id)
    if job_result.status == "succeeded":
        paths = "; ".join(r.path or "?" for r in results)
        return answer.model_copy(update={"message": (
            f"{count} variation(s) of {plan.source_image_id or 'the image'} saved: {paths}")})
    if job_result.status == "running":
        message = (f"Variations running ({len(results)} of {count} images done); call "
                   "get_generation with this job_id to wait for the first image's Result.")
    else:
        message = job_result.message
        if results and "kept" not in message:
            message += f" {len(results)} of {count} variation(s) were saved before it stopped."
    return answer.model_copy(update={"message": message, "error_code": job_result.error_code,
                                     "retryable": job_result.retryable})
