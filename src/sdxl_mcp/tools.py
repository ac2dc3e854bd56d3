"""The MCP tools: one table of specs (arguments model, handler, output model, annotations).

Guarantees: a tool's input schema is its arguments model's JSON Schema made
compact (``toolschema``), so the arguments are flat (the model's fields at top
level) and carry the model's bounds; its output schema is the output model's,
names and types only, and a shape listed in full by one tool is listed briefly
by the others (``brief``); the whole ``tools/list`` answer stays under
``TOOLS_LIST_BUDGET``. Arguments are validated once, by that model, and a
failure is an ``isError`` result of one sentence naming the field; every
``SdxlMcpError`` becomes an ``isError`` result with its message. Handlers
reach the service only through the lifespan context.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import warnings
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import anyio
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.tools import Tool
from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase, FuncMetadata
from mcp.types import (
    CallToolResult,
    ImageContent,
    ResourceLink,
    TextContent,
    ToolAnnotations,
)
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from sdxl_mcp.backend import ProgressEvent
from sdxl_mcp.errors import SdxlMcpError
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
    describe_validation_error,
)
from sdxl_mcp.service import ImageService
from sdxl_mcp.settings import Settings
from sdxl_mcp.tools_edit import EDIT_DESCRIPTION, edit_image
from sdxl_mcp.tools_export import EXPORT_DESCRIPTION, export_image
from sdxl_mcp.tools_lora import list_loras_spec
from sdxl_mcp.tools_vary import VARY_DESCRIPTION, vary_image
from sdxl_mcp.toolschema import compact_input, compact_output

log = logging.getLogger(__name__)

IMAGE_URI_PREFIX = "image://"

ToolContext = Context[ImageService, Any]
#: ``(ctx, service, validated arguments)`` -> a result, or a model for structured output.
ToolHandler = Callable[[ToolContext, ImageService, Any], Awaitable[CallToolResult | BaseModel]]


@dataclass(frozen=True)
class ToolSpec:
    """One MCP tool: what the model reads (name, description, schemas) and what runs."""

    name: str
    title: str
    description: str
    arguments: type[BaseModel]
    output: type[BaseModel]
    handler: ToolHandler
    annotations: ToolAnnotations
    #: Schema title -> the properties its output schema lists (a shape given in full elsewhere).
    brief: Mapping[str, tuple[str, ...]] | None = None

    def tool(self) -> Tool:
        async def call(ctx: ToolContext, arguments: dict[str, Any]) -> CallToolResult | BaseModel:
            try:
                validated = self.arguments.model_validate(arguments)
            except ValidationError as exc:
                return error_result(describe_validation_error(exc))
            try:
                return await self.handler(ctx, ctx.request_context.lifespan_context, validated)
            except SdxlMcpError as exc:
                return failure(exc)

        parameters = compact_input(self.arguments.model_json_schema())
        parameters.pop("description", None)  # the model's docstring is for developers
        # The SDK still validates structured output against the model itself.
        output_schema = compact_output(self.output.model_json_schema(), self.brief)
        return Tool(
            fn=call,
            name=self.name,
            title=self.title,
            description=self.description,
            parameters=parameters,
            fn_metadata=_RawArguments(arg_model=ArgModelBase, output_model=self.output,
                                      output_schema=output_schema),
            is_async=True,
            context_kwarg="ctx",
            annotations=self.annotations,
        )


async def arguments_must_be_an_object(
    ctx: ServerRequestContext[Any, Any], call_next: CallNext
) -> HandlerResult:
    """Middleware: ``arguments`` that are not an object get one sentence saying so.

    The SDK refuses them before any tool runs, with a bare "Invalid request
    parameters" that does not say which.
    """
    if ctx.method == "tools/call" and isinstance(ctx.params, Mapping):
        arguments = ctx.params.get("arguments")
        if arguments is not None and not isinstance(arguments, Mapping):
            return error_result("Invalid request: arguments must be an object.")
    return await call_next(ctx)


class _RawArguments(FuncMetadata):
    """Hands the raw arguments to the tool, whose model validates them (once).

    The SDK's own validation would answer pydantic's multi-line text; agents do
    better with "num_inference_steps must be ≥ 20 (got 5)".
    """

    def validate_arguments(self, arguments_to_validate: dict[str, Any]) -> dict[str, Any]:
        return {"arguments": arguments_to_validate}


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


class NoArguments(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ------------------------------------------------------------------ handlers
async def generate_image(
    ctx: ToolContext, svc: ImageService, request: GenerationRequest
) -> CallToolResult:
    await _log(ctx, "info", _announcement(svc, request))
    return await with_progress(ctx, svc, lambda p: svc.generate(request, on_progress=p))


async def with_progress(
    ctx: ToolContext,
    svc: ImageService,
    start: Callable[[Callable[[ProgressEvent], None]], Awaitable[Any]],
    finish: Callable[[ToolContext, ImageService, Any], Awaitable[CallToolResult]] | None = None,
) -> CallToolResult:
    """Run a job (``start(on_progress)``) forwarding its steps as progress notifications.

    ``finish`` turns its answer into the tool's result (default: a generation's Result)."""
    send, receive = anyio.create_memory_object_stream[ProgressEvent](max_buffer_size=1000)

    def on_progress(event: ProgressEvent) -> None:
        # Progress is advisory: never stall the engine for it.
        with contextlib.suppress(
            anyio.WouldBlock, anyio.ClosedResourceError, anyio.BrokenResourceError
        ):
            send.send_nowait(event)

    async def forward_progress() -> None:
        async with receive:
            async for event in receive:
                try:
                    await ctx.report_progress(event.done, event.total, event.message)
                except Exception:  # a gone client must not fail the generation
                    log.debug("progress notification failed", exc_info=True)

    # Errors are caught inside the task group so they do not arrive wrapped in
    # an ExceptionGroup.
    outcome: Any
    async with anyio.create_task_group() as tg:
        tg.start_soon(forward_progress)
        try:
            outcome = await start(on_progress)
        except SdxlMcpError as exc:
            outcome = exc
        finally:
            send.close()
    if isinstance(outcome, SdxlMcpError):
        return failure(outcome)
    return await (finish or result_content)(ctx, svc, outcome)


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
            annotations=_annotations(open_world=True),
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
            annotations=_annotations(read_only=True, idempotent=True),
        ),
        ToolSpec(
            name="cancel_generation",
            title="Cancel a job",
            description="Stop a queued or running job; its slot frees within one step.",
            arguments=JobArguments,
            output=GenerationResult,
            handler=cancel_generation,
            brief=BRIEF_CANCEL,
            annotations=_annotations(destructive=True, idempotent=True),
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
            annotations=_annotations(idempotent=True, open_world=True),
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
            annotations=_annotations(read_only=True, idempotent=True),
        ),
        ToolSpec(
            name="find_images",
            title="Find library images",
            description="Images this server already has (generated or downloaded), newest "
            "first. Call first: reuse beats a new image. Hits carry the image_id other tools take.",
            arguments=FindImagesRequest,
            output=FindImagesResult,
            handler=find_images,
            annotations=_annotations(read_only=True, idempotent=True),
        ),
        ToolSpec(
            name="export_image",
            title="Export for the web",
            description=EXPORT_DESCRIPTION,
            arguments=ExportRequest,
            output=ExportResult,
            handler=export_image,
            # Writes one file under exports/, replacing only the identical export.
            annotations=_annotations(idempotent=True),
        ),
        ToolSpec(
            name="edit_image",
            title="Edit an image",
            description=EDIT_DESCRIPTION,
            arguments=EditRequest,
            output=GenerationResult,
            handler=edit_image,
            brief=BRIEF_RESULT,
            annotations=_annotations(),  # a new file; the source is kept
        ),
        ToolSpec(
            name="vary_image",
            title="Vary an image",
            description=VARY_DESCRIPTION,
            arguments=VaryRequest,
            output=VariationsResult,
            handler=vary_image,
            brief=BRIEF_VARY,
            annotations=_annotations(),  # new files; the source is kept
        ),
        list_loras_spec(),
    ]


def _annotations(
    *,
    read_only: bool = False,
    destructive: bool = False,
    idempotent: bool = False,
    open_world: bool = False,
) -> ToolAnnotations:
    # No annotation title (the tool's title is listed already); the two hints whose
    # protocol default is false are sent only when true, the others always (but
    # destructiveHint, which the protocol reads only for tools that write).
    return ToolAnnotations(
        read_only_hint=read_only or None,
        destructive_hint=None if read_only else destructive,
        idempotent_hint=idempotent or None,
        open_world_hint=open_world,
    )


# ------------------------------------------------------------------ results
def error_result(message: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=message)], is_error=True)


def failure(exc: SdxlMcpError) -> CallToolResult:
    """An error the caller can act on: one sentence, plus retry facts when useful."""
    text = exc.message
    if exc.retry_after_s:
        text = f"{text.rstrip('.')}. (retry_after_s={exc.retry_after_s:.0f})"
    return error_result(text)


async def result_content(
    ctx: ToolContext, svc: ImageService, result: GenerationResult
) -> CallToolResult:
    """Structured Result + one-line summary (+ preview and resource link when done)."""
    structured = result.model_dump(mode="json")
    if result.status != "succeeded":
        # A job still running is a normal answer (a handle); failed/cancelled are errors.
        return CallToolResult(
            content=[TextContent(type="text", text=result.message)],
            structured_content=structured,
            is_error=result.status != "running",
        )
    t = result.timings
    summary = (
        f"Saved {result.path} ({result.image.width}x{result.image.height}, "  # type: ignore[union-attr]
        f"seed {result.seed}"
        + (f", {result.precision} on {result.device}" if result.precision else "")
        + (", refined" if result.refined else "")
        + f") in {t.total:.1f} s. {result.message}"
    )
    if result.refiner_error:
        await _log(ctx, "warning", f"Refinement failed: {result.refiner_error}")
    content: list[Any] = [TextContent(type="text", text=summary)]
    preview = await _preview(svc, result)
    if preview is not None:
        content.append(
            ImageContent(type="image", data=base64.b64encode(preview).decode(),
                         mime_type="image/jpeg")
        )
    if result.path:
        name = result.path.rsplit("/", 1)[-1]
        content.append(
            ResourceLink(
                type="resource_link",
                uri=IMAGE_URI_PREFIX + (result.image_id or name),
                name=name,
                mime_type="image/png" if name.endswith(".png") else "image/jpeg",
                description="The full-size image",
            )
        )
    return CallToolResult(content=content, structured_content=structured)


async def _preview(svc: ImageService, result: GenerationResult) -> bytes | None:
    if not result.path:
        return None
    try:
        return await svc.preview(result.path)
    except Exception:  # the image itself is saved; a preview is a courtesy
        log.exception("Could not make a preview of %s", result.path)
        return None


async def _log(ctx: ToolContext, level: Literal["info", "warning"], message: str) -> None:
    try:
        with warnings.catch_warnings():
            # Deprecated in the 2026-07-28 protocol, still what 2025 clients show.
            warnings.simplefilter("ignore")
            await ctx.log(level, message, logger_name="sdxl_mcp")
    except Exception:  # a client that does not take log messages
        log.debug("could not send a log message to the client", exc_info=True)
