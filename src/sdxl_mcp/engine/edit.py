"""Edits on the resident engine: image-to-image (no mask) and inpainting (a mask).

The edit pipelines share the resident base's components (``from_pipe``: no weight loaded
twice); the output has the source's size rounded to a multiple of 8; with a mask, pixels
where it is black are the source's exactly; refinement is a short img2img pass of the
resident refiner; progress, cancel, retries, determinism and whole prompts are generation's
(details: docs/ARCHITECTURE.md "Guarantees").

Called by ``SDXLEngine.edit`` under the engine's lock.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLInpaintPipeline
from PIL import Image

from sdxl_mcp.backend.base import CancelToken, EngineOutput, ProgressCallback
from sdxl_mcp.engine.basestage import run_base, run_fields
from sdxl_mcp.engine.parts import ResidentEngine
from sdxl_mcp.engine.refinestage import run_refiner
from sdxl_mcp.engine.samplers import swapped_samplers
from sdxl_mcp.engine.schedules import StepReporter, sequential_refiner_schedule
from sdxl_mcp.schemas import EditRequest

#: img2img strength of the refiner pass after an edit (the sequential mode's default).
EDIT_REFINER_STRENGTH = 0.3


class EditPipelines:
    """The img2img and inpaint pipelines of one base pipeline, made on first use."""

    def __init__(self) -> None:
        self._img2img: StableDiffusionXLImg2ImgPipeline | None = None
        self._inpaint: StableDiffusionXLInpaintPipeline | None = None

    def img2img(self, base: Any) -> StableDiffusionXLImg2ImgPipeline:
        if self._img2img is None:
            self._img2img = _shared(StableDiffusionXLImg2ImgPipeline, base)
        return self._img2img

    def inpaint(self, base: Any) -> StableDiffusionXLInpaintPipeline:
        if self._inpaint is None:
            self._inpaint = _shared(StableDiffusionXLInpaintPipeline, base)
        return self._inpaint


def _shared(cls: Any, base: Any) -> Any:
    pipe = cls.from_pipe(base)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def output_size(width: int, height: int) -> tuple[int, int]:
    """The source's size rounded to the nearest multiple of 8 (at least 8)."""
    return max(8, round(width / 8) * 8), max(8, round(height / 8) * 8)


def base_schedule(steps: int, strength: float) -> tuple[int, int]:
    """(schedule length, steps run): diffusers runs ``min(int(n x s), n)``, at least 1."""
    schedule = steps if int(steps * strength) >= 1 else math.ceil(1 / strength)
    return schedule, min(int(schedule * strength), schedule)


def run_edit(
    engine: ResidentEngine,
    pipes: EditPipelines,
    request: EditRequest,
    seed: int,
    source: Image.Image,
    mask: Image.Image | None,
    on_progress: ProgressCallback | None,
    cancel: CancelToken,
    timings: dict[str, float],
) -> EngineOutput:
    notes: list[str] = []
    width, height = output_size(*source.size)
    if (width, height) != source.size:
        notes.append(f"the source's {source.width}x{source.height} was rounded to "
                     f"{width}x{height}, a multiple of 8")
    image = source.convert("RGB")
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.LANCZOS)
    mask_l = None
    if mask is not None:
        mask_l = mask.convert("L")
        if mask_l.size != (width, height):
            mask_l = mask_l.resize((width, height), Image.Resampling.LANCZOS)
    refiner = engine.refiner if request.use_refinement else None
    if request.use_refinement and refiner is None:
        notes.append("refiner not configured (SDXL_MCP_REFINER_MODEL is empty)")

    schedule, base_total = base_schedule(request.num_inference_steps, request.strength)
    refiner_total = max(1, base_total // 4) if refiner is not None else 0
    generator = torch.Generator("cpu").manual_seed(seed)
    common: dict[str, Any] = {
        "guidance_scale": request.guidance_scale,
        "generator": generator,
        "output_type": "latent",
    }
    stage: dict[str, Any] = {"image": image, "strength": request.strength,
                             "num_inference_steps": schedule}
    if mask_l is not None:
        pipe: Any = pipes.inpaint(engine.base)
        stage.update(mask_image=mask_l, width=width, height=height)
    else:
        pipe = pipes.img2img(engine.base)

    with swapped_samplers([pipe, refiner], request.sampler):
        return _edit_stages(engine, request, seed, pipe, refiner, image, mask_l, stage, common,
                            (base_total, refiner_total), on_progress, cancel, timings, notes)


def _edit_stages(engine: ResidentEngine, request: EditRequest, seed: int, pipe: Any,
                 refiner: Any, image: Image.Image, mask_l: Image.Image | None,
                 stage: dict[str, Any], common: dict[str, Any], totals: tuple[int, int],
                 on_progress: ProgressCallback | None, cancel: CancelToken,
                 timings: dict[str, float], notes: list[str]) -> EngineOutput:
    """The edit's base pass, refiner pass and decode, with the request's sampler set."""
    base_total, refiner_total = totals
    total = base_total + refiner_total
    reporter = StepReporter("base", base_total, 0, total, on_progress, cancel)
    prompts, latents = run_base(engine, pipe, refiner, request, {**common, **stage}, reporter,
                                timings)

    refining = None
    if refiner is not None:
        args = {**common, **prompts.refiner, "strength": EDIT_REFINER_STRENGTH,
                "num_inference_steps": sequential_refiner_schedule(refiner_total,
                                                                   EDIT_REFINER_STRENGTH)}
        refining = run_refiner(refiner, latents, args, job="Edit", steps=refiner_total,
                               done=reporter.steps_run, total=total, on_progress=on_progress,
                               cancel=cancel, timings=timings, sync=engine.sync)
        latents = refining.latents

    t2 = time.perf_counter()
    result = engine.with_oom_retry("decode", lambda: engine.decode(latents, True))
    if mask_l is not None:
        # Black mask pixels keep the source exactly (A1111's inpainting overlay).
        result = Image.composite(result.convert("RGB"), image, mask_l)
    timings["decode"] = round(time.perf_counter() - t2, 4)
    fields = {**run_fields(engine, refiner, reporter, refining, request.sampler), **prompts.counts}
    return EngineOutput(image=result, seed=seed, timings=timings, notes=notes, **fields)

