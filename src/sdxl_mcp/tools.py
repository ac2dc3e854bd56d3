"""The MCP tools: one table of specs (arguments model, handler, output model, annotations).

Guarantees: every tool of the contract is in :func:`tool_specs`, in the order
they are listed, each with its annotations; the whole ``tools/list`` answer
stays under ``TOOLS_LIST_BUDGET`` (a shape listed in full by one tool is listed
briefly by the others). How a spec becomes a tool, validates its arguments and
turns errors into results: ``toolspec``; how a job's answer becomes content:
``toolresults``. Handlers reach the service only through the lifespan context.
"""

from __future__ import annotations

from collections.abc import Mapping

from mcp.types import CallToolResult, TextContent
from pydantic import BaseModel, ConfigDict, Field, create_model

from sdxl_mcp.schemas import (
    EditRequest,
    ExportRequest,
    ExportResult,
    FindImagesRequest,
    FindImagesResult,
    GenerationRequest,
    GenerationResult,
    GpuStatus,
    StockSearchRequest,
    StockSearchResult,
    VariationsResult,
    VaryRequest,
)
from sdxl_mcp.service import ImageService
from sdxl_mcp.settings import Settings
from sdxl_mcp.toolresults import log_to_client, result_content, with_progress
from sdxl_mcp.tools_edit import EDIT_DESCRIPTION, edit_image
from sdxl_mcp.tools_export import EXPORT_DESCRIPTION, export_image
from sdxl_mcp.tools_lora import list_loras_spec
from sdxl_mcp.tools_vary import VARY_DESCRIPTION, vary_image
from sdxl_mcp.toolspec import (
    NoArguments,
    ToolContext,
    ToolSpec,
    tool_annotations,
)

__all__ = ["tool_specs"]


# ------------------------------------------------------------------ arguments
class JobArguments(BaseModel):
    """Arguments of ``cancel_generation`` (and the base of ``get_generation``'s)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    job_id: str = Field(
        min_length=1, max_length=64, description="From generate_image, edit_image or vary_image."
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
    return await with_progress(ctx, svc, lambda p: svc.generate(request, on_progress=p))


def _announcement(svc: ImageService, request: GenerationRequest) -> str:
    plan = (
        f"{request.width}x{request.height}, {request.num_inference_steps} steps, refiner "
        f"{'on (' + request.refiner_mode + ')' if request.use_refinement else 'off'}"
    )
    if not (request.use_pexels and svc.stock_configured):
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


async def search_stock_image(
    ctx: ToolContext, svc: ImageService, request: StockSearchRequest
) -> CallToolResult:
    result = await svc.search_stock(request)
    summary = f"{len(result.photos)} Pexels photo(s) for {request.query!r}."
    if result.downloaded is not None:
        summary += f" Saved {result.downloaded.path}. {result.downloaded.attribution}"
    return CallToolResult(
        content=[TextContent(type="text", text=summary)],
        structured_content=result.model_dump(mode="json"),
    )


async def gpu_status(ctx: ToolContext, svc: ImageService, _: NoArguments) -> GpuStatus:
    return await svc.gpu_status()


async def find_images(
    ctx: ToolContext, svc: ImageService, request: FindImagesRequest
) -> CallToolResult:
    found = await svc.library.find_images(request)
    lines = [f"{found.total} image(s)" + (f" for {request.query!r}" if request.query else "")
             + (f"; showing {len(found.images)} from {request.offset}" if found.images else ".")]
    lines += [f"{i.image_id} ({i.source}, {i.width}x{i.height}): {(i.alt or i.prompt)[:80]}"
              for i in found.images]
    return CallToolResult(content=[TextContent(type="text", text="\n".join(lines))],
                          structured_content=found.model_dump(mode="json"))


# ------------------------------------------------------------------ the table
GENERATE_DESCRIPTION = (
    "New SDXL image (base + refiner), saved as PNG, when find_images and "
    "search_stock_image have nothing fitting. Draft first (quality 'fast' or 'draft'), then "
    "rerun the chosen seed at full quality. Returns the Result, a preview and a link; past "
    "the wait limit, status 'running' and a job_id for get_generation."
)

#: The Result as tools other than generate_image publish it: its full shape is in
#: generate_image's output schema; every other field still comes (and validates).
_JOB = ("success", "status", "message", "job_id", "error_code")
BRIEF_RESULT: Mapping[str, tuple[str, ...]] = {
    "GenerationResult": (*_JOB, "eta_s", "image_id", "path", "seed")}
BRIEF_CANCEL: Mapping[str, tuple[str, ...]] = {"GenerationResult": _JOB}
BRIEF_VARY: Mapping[str, tuple[str, ...]] = {
    "GenerationResult": ("status", "message", "image_id", "path", "seed")}
#: generate_image lists the Result but the fields only an edit fills and those an
#: agent does not act on (the seed's image_url/image repeat path; they still come back).
FULL_RESULT: Mapping[str, tuple[str, ...]] = {"GenerationResult": tuple(
    name for name in GenerationResult.model_fields if name not in (
        "source_image_id", "mask_image_id", "image_url", "image", "metadata_path",
        "device", "refiner_error", "cached"))}


def tool_specs(settings: Settings) -> list[ToolSpec]:
    """Every tool of the contract (DESIGN.md "MCP tools"), in the order they are listed."""
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
        ToolSpec(
            name="search_stock_image",
            title="Search Pexels photos",
            description=(
                "Free Pexels photos: try before generating, for real scenes and people. "
                "download=true saves the best match (path, image_id). Print its attribution "
                "line with the photo."
            ),
            arguments=StockSearchRequest,
            output=StockSearchResult,
            handler=search_stock_image,
            annotations=tool_annotations(idempotent=True, open_world=True),
        ),
        ToolSpec(
            name="gpu_status",
            title="GPU and engine status",
            description="GPUs (memory, temperature, use), precision, engine state (loading, "
            "ready, failed), queue: for slow or failing generations.",
            arguments=NoArguments,
            output=GpuStatus,
            handler=gpu_status,
            brief={"EngineStatus": ("state", "error", "device", "dtype", "load_time_s")},
            annotations=tool_annotations(read_only=True, idempotent=True),
        ),
        ToolSpec(
            name="find_images",
            title="Find library images",
            description="Images this server already has (generated or downloaded), newest "
            "first. Call first: reuse beats a new image. Hits carry the image_id other tools take.",
            arguments=FindImagesRequest,
            output=FindImagesResult,
            handler=find_images,
            annotations=tool_annotations(read_only=True, idempotent=True),
        ),
        ToolSpec(
            name="export_image",
            title="Export for the web",
            description=EXPORT_DESCRIPTION,
            arguments=ExportRequest,
            output=ExportResult,
            handler=export_image,
            # Writes one file under exports/, replacing only the identical export.
            annotations=tool_annotations(idempotent=True),
        ),
        ToolSpec(
            name="edit_image",
            title="Edit an image",
            description=EDIT_DESCRIPTION,
            arguments=EditRequest,
            output=GenerationResult,
            handler=edit_image,
            brief=BRIEF_RESULT,
            annotations=tool_annotations(),  # a new file; the source is kept
        ),
        ToolSpec(
            name="vary_image",
            title="Vary an image",
            description=VARY_DESCRIPTION,
            arguments=VaryRequest,
            output=VariationsResult,
            handler=vary_image,
            brief=BRIEF_VARY,
            annotations=tool_annotations(),  # new files; the source is kept
        ),
        list_loras_spec(),
    ]


