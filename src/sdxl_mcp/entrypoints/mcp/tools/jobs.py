"""The job tools: ``generate_image`` (``service.generate``), ``get_generation`` and
``cancel_generation`` (any job, whatever its workflow)."""

from __future__ import annotations

from mcp.types import CallToolResult
from pydantic import BaseModel, ConfigDict, Field, create_model

from sdxl_mcp.entrypoints.mcp.content import log_to_client, result_content, with_progress
from sdxl_mcp.entrypoints.mcp.toolspec import (
    BRIEF_CANCEL,
    BRIEF_RESULT,
    FULL_RESULT,
    ToolContext,
    ToolSpec,
    tool_annotations,
)
from sdxl_mcp.schemas import GenerationRequest, GenerationResult
from sdxl_mcp.service.facade import ImageService
from sdxl_mcp.service.generate import generate
from sdxl_mcp.service.stock import stock_configured
from sdxl_mcp.settings import Settings


# ------------------------------------------------------------------ arguments
class JobArguments(BaseModel):
    """Arguments of ``cancel_generation`` (and the base of ``get_generation``'s)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    job_id: str = Field(
        min_length=1, max_length=64, description="A job's job_id (generate, edit, vary)."
    )


class WaitArguments(JobArguments):
    """Arguments of ``get_generation``; :func:`wait_arguments` bounds the wait."""

    wait_seconds: float = Field(0, ge=0)


def wait_arguments(max_wait_s: float) -> type[WaitArguments]:
    """``WaitArguments`` with the wait bounded by MAX_WAIT_S (in the schema and on input)."""
    return create_model(
        "WaitArguments",
        __base__=WaitArguments,
        wait_seconds=(
            float,
            Field(0, ge=0, le=max_wait_s,
                  description="Wait up to this long for the job to finish."),
        ),
    )


# ------------------------------------------------------------------ handlers
async def generate_image(
    ctx: ToolContext, svc: ImageService, request: GenerationRequest
) -> CallToolResult:
    await log_to_client(ctx, "info", _announcement(svc, request))
    return await with_progress(
        ctx, svc, lambda p: generate(svc, request, on_progress=p, previews=True))


def _announcement(svc: ImageService, request: GenerationRequest) -> str:
    plan = (
        f"{request.width}x{request.height}, {request.num_inference_steps} steps, refiner "
        f"{'on (' + request.refiner_mode + ')' if request.use_refinement else 'off'}"
    )
    if not (request.use_pexels and stock_configured(svc)):
        return f"Generating {plan}"
    if request.use_generation:
        return f"Searching Pexels first; generating ({plan}) only if no photo fits"
    return "Searching Pexels"


async def get_generation(
    ctx: ToolContext, svc: ImageService, args: WaitArguments
) -> CallToolResult:
    return await result_content(ctx, svc, await svc.wait_job(args.job_id, args.wait_seconds))


async def cancel_generation(
    ctx: ToolContext, svc: ImageService, args: JobArguments
) -> CallToolResult:
    return await result_content(ctx, svc, await svc.cancel_job(args.job_id))


# ------------------------------------------------------------------ the table
GENERATE_DESCRIPTION = (
    "New SDXL image, saved as PNG, when find_images and search_stock_image have nothing "
    "fitting. Draft first (quality 'fast' or 'draft'), then rerun the chosen seed at full "
    "quality. Returns the Result, a preview and a link; past the wait limit, status "
    "'running' and a job_id for get_generation."
)



def specs(settings: Settings) -> list[ToolSpec]:
    return [
        ToolSpec(
            name="generate_image",
            title="Generate an image",
            description=GENERATE_DESCRIPTION,
            arguments=GenerationRequest,
            output=GenerationResult,
            handler=generate_image,
            brief=FULL_RESULT,
            # New files only, nothing overwritten; use_pexels reaches the Pexels API.
            annotations=tool_annotations(open_world=True),
        ),
        ToolSpec(
            name="get_generation",
            title="Follow a job",
            description="Follow a generate/edit/vary job: status and eta_s while running, "
            "the Result when done.",
            arguments=wait_arguments(settings.max_wait_s),
            output=GenerationResult,
            handler=get_generation,
            brief=BRIEF_RESULT,
            annotations=tool_annotations(read_only=True, idempotent=True),
        ),
        ToolSpec(
            name="cancel_generation",
            title="Cancel a job",
            description="Stop a queued or running job; its slot frees within one step.",
            arguments=JobArguments,
            output=GenerationResult,
            handler=cancel_generation,
            brief=BRIEF_CANCEL,
            annotations=tool_annotations(destructive=True, idempotent=True),
        ),
    ]


