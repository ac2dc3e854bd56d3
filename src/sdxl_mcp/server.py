"""The MCP server: tools and resources over ``ImageService``.

A thin layer: argument schemas come from the shared pydantic models, work is
done by the service, and every error the caller can act on becomes an
``isError`` result with one clear sentence. Importing this module leaves
torch unloaded (the engine imports it lazily).
"""


import base64
import contextlib
import inspect
import logging
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

import anyio
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer
from mcp.types import (
    CallToolResult,
    ImageContent,
    ResourceLink,
    TextContent,
    ToolAnnotations,
)
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from sdxl_mcp import __version__
from sdxl_mcp.backend import ProgressEvent
from sdxl_mcp.errors import NotFound, SdxlMcpError
from sdxl_mcp.schemas import (
    GenerationRequest,
    GenerationResult,
    GpuStatus,
    StockSearchRequest,
    StockSearchResult,
    describe_validation_error,
)
from sdxl_mcp.service import ImageService
from sdxl_mcp.settings import Settings

log = logging.getLogger(__name__)

IMAGE_URI_PREFIX = "image://"

INSTRUCTIONS = """\
Images for your posts. `search_stock_image` finds free Pexels photos (with the
attribution line to print). `generate_image` makes a new image with SDXL (base +
refiner) and returns its absolute path, a small preview and a link to the full
PNG; set `seed` to reproduce an image. If a generation takes longer than the
server's wait limit you get `status: "running"` and a `job_id`: call
`get_generation` with it. `gpu_status` tells whether the models are loaded."""

# Tool defaults are null so a quality preset (or the model's default) can fill them.
_OPTIONAL_FIELDS = frozenset(
    name for name, info in GenerationRequest.model_fields.items() if not info.is_required()
)


class ArgumentErrorMiddleware:
    """Rewrites argument validation failures into one sentence naming the field.

    The SDK's own message is pydantic's multi-line text with a URL; agents do
    better with "num_inference_steps must be ≥ 20 (got 5)".
    """

    def __init__(self, models: dict[str, type[BaseModel]]) -> None:
        self.models = models

    async def __call__(
        self, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        if ctx.method == "tools/call":
            params = ctx.params if isinstance(ctx.params, dict) else {}
            model = self.models.get(str(params.get("name")))
            arguments = params.get("arguments")
            if model is not None:
                try:
                    if not isinstance(arguments, dict | None):
                        raise TypeError("arguments must be an object")
                    model.model_validate({k: v for k, v in (arguments or {}).items()})
                except ValidationError as exc:
                    return _error_result(describe_validation_error(exc))
                except TypeError as exc:
                    return _error_result(f"Invalid request: {exc}.")
        return await call_next(ctx)


class _NoArguments(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _job_arguments(max_wait_s: float, *, wait: bool) -> type[BaseModel]:
    """The argument model of get_generation / cancel_generation, for clear errors."""
    fields: dict[str, Any] = {"job_id": (str, Field(min_length=1, max_length=64))}
    if wait:
        fields["wait_seconds"] = (float, Field(0, ge=0, le=max_wait_s))
    return create_model(
        "JobArguments", __config__=ConfigDict(extra="forbid", allow_inf_nan=False), **fields
    )


def _error_result(message: str, structured: dict[str, Any] | None = None) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text=message)],
        structured_content=structured,
        is_error=True,
    )


def _failure(exc: SdxlMcpError) -> CallToolResult:
    """An error the caller can act on: one sentence, plus retry facts when useful."""
    text = exc.message
    if exc.retry_after_s:
        text = f"{text.rstrip('.')}. (retry_after_s={exc.retry_after_s:.0f})"
    return _error_result(text)


def _request_signature(
    model: type[BaseModel], *, nullable_fields: frozenset[str]
) -> list[inspect.Parameter]:
    """One keyword-only parameter per model field, so tool arguments are flat."""
    params = []
    for name, info in model.model_fields.items():
        annotation: Any = Annotated[info.annotation, info]  # type: ignore[name-defined]
        default: Any = info.default
        if name in nullable_fields:
            # Null lets a quality preset decide; the description names the default.
            annotation = Annotated[info.annotation | None, _nullable_copy(info)]  # type: ignore[operator,name-defined,misc]
            default = None
        if info.is_required():
            default = inspect.Parameter.empty
        params.append(
            inspect.Parameter(
                name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
            )
        )
    return params


def _nullable_copy(info: Any) -> Any:
    return Field(
        default=None,
        description=f"{info.description} Default {info.default!r}"
        + (" (or the quality preset's)." if info.default is not None else "."),
        ge=_metadata(info, "ge"),
        le=_metadata(info, "le"),
        json_schema_extra=info.json_schema_extra,
    )


def _metadata(info: Any, name: str) -> Any:
    for item in info.metadata:
        if hasattr(item, name):
            return getattr(item, name)
    return None


def _with_signature(
    fn: Callable[..., Awaitable[Any]], params: list[inspect.Parameter], returns: Any
) -> Callable[..., Awaitable[Any]]:
    ctx = inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=Context)
    fn.__signature__ = inspect.Signature([ctx, *params], return_annotation=returns)  # type: ignore[attr-defined]
    return fn


def build_server(settings: Settings, service: ImageService | None = None) -> MCPServer:
    """A fresh MCP server over ``service`` (created from ``settings`` if not given).

    The server's lifespan owns the service: preload starts when a client
    connects (stdio) or the HTTP app starts, and shutdown cancels running work.
    """
    svc = service if service is not None else ImageService(settings)
    svc.make_previews = True  # every generate_image result carries an inline preview

    @asynccontextmanager
    async def lifespan(_: MCPServer) -> AsyncIterator[dict[str, Any]]:
        async with svc:
            yield {"service": svc}

    server = MCPServer(
        name="sdxl-mcp",
        title="SDXL images for agents",
        instructions=INSTRUCTIONS,
        version=__version__,
        lifespan=lifespan,
        middleware=[
            ArgumentErrorMiddleware(
                {
                    "generate_image": GenerationRequest,
                    "search_stock_image": StockSearchRequest,
                    "get_generation": _job_arguments(settings.max_wait_s, wait=True),
                    "cancel_generation": _job_arguments(settings.max_wait_s, wait=False),
                    "gpu_status": _NoArguments,
                }
            )
        ],
    )

    # ---------------------------------------------------------- generate_image
    async def generate_image(ctx: Context, **arguments: Any) -> CallToolResult:
        given = {k: v for k, v in arguments.items() if v is not None or k in ("seed",)}
        try:
            request = GenerationRequest(**given)
        except ValidationError as exc:
            return _error_result(describe_validation_error(exc))
        plan = (
            f"{request.width}x{request.height}, {request.num_inference_steps} steps, refiner "
            f"{'on (' + request.refiner_mode + ')' if request.use_refinement else 'off'}"
        )
        if not (request.use_pexels and svc.stock_configured):
            announcement = f"Generating {plan}"
        elif request.use_generation:
            announcement = f"Searching Pexels first; generating ({plan}) only if no photo fits"
        else:
            announcement = "Searching Pexels"
        await _log(ctx, "info", announcement)
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

        # Errors are caught inside the task group so they do not arrive wrapped
        # in an ExceptionGroup.
        outcome: GenerationResult | SdxlMcpError
        async with anyio.create_task_group() as tg:
            tg.start_soon(forward_progress)
            try:
                outcome = await svc.generate(request, on_progress=on_progress)
            except SdxlMcpError as exc:
                outcome = exc
            finally:
                send.close()
        if isinstance(outcome, SdxlMcpError):
            return _failure(outcome)
        return await _result_content(ctx, svc, outcome)

    server.add_tool(
        _with_signature(
            generate_image,
            # Every optional field takes null as "the default" (as over REST), and a
            # quality preset fills the fields it sets.
            _request_signature(GenerationRequest, nullable_fields=_OPTIONAL_FIELDS),
            Annotated[CallToolResult, GenerationResult],
        ),
        name="generate_image",
        title="Generate an image (SDXL base + refiner)",
        description=(
            "Generate a new image with Stable Diffusion XL (base model, then refiner) and "
            "save it as a PNG. Returns the absolute path, seed, timings, a small preview and "
            "a link to the full image. If it takes longer than the server's wait limit, "
            "returns status 'running' with a job_id for get_generation. use_pexels=true "
            "tries a free stock photo first."
        ),
        annotations=ToolAnnotations(
            title="Generate an image",
            read_only_hint=False,
            destructive_hint=False,  # new files only; nothing is overwritten
            idempotent_hint=False,
            open_world_hint=True,  # use_pexels reaches the Pexels API
        ),
    )

    # ---------------------------------------------------------- get_generation
    async def get_generation(
        ctx: Context,
        job_id: Annotated[
            str,
            Field(
                min_length=1,
                max_length=64,
                description="The job_id a generate_image call returned.",
            ),
        ],
        wait_seconds: Annotated[
            float,
            Field(
                ge=0,
                le=settings.max_wait_s,
                description="Wait up to this long for the job to finish.",
            ),
        ] = 0,
    ) -> Annotated[CallToolResult, GenerationResult]:
        try:
            result = await svc.wait_job(job_id, wait_seconds)
        except SdxlMcpError as exc:
            return _failure(exc)
        return await _result_content(ctx, svc, result)

    server.add_tool(
        get_generation,
        name="get_generation",
        title="Follow a generation job",
        description="Status or result of a generation job; optionally wait for it to finish.",
        annotations=ToolAnnotations(
            title="Follow a generation job",
            read_only_hint=True,
            destructive_hint=False,
            idempotent_hint=True,
            open_world_hint=False,
        ),
    )

    # ------------------------------------------------------- cancel_generation
    async def cancel_generation(
        ctx: Context,
        job_id: Annotated[
            str, Field(min_length=1, max_length=64, description="The job_id to cancel.")
        ],
    ) -> Annotated[CallToolResult, GenerationResult]:
        try:
            result = await svc.cancel_job(job_id)
        except SdxlMcpError as exc:
            return _failure(exc)
        return await _result_content(ctx, svc, result)

    server.add_tool(
        cancel_generation,
        name="cancel_generation",
        title="Cancel a generation job",
        description="Stop a queued or running generation; the slot frees within one step.",
        annotations=ToolAnnotations(
            title="Cancel a generation job",
            read_only_hint=False,
            destructive_hint=True,
            idempotent_hint=True,
            open_world_hint=False,
        ),
    )

    # ------------------------------------------------------ search_stock_image
    async def search_stock_image(ctx: Context, **arguments: Any) -> CallToolResult:
        try:
            request = StockSearchRequest(**arguments)
            result = await svc.search_stock(request)
        except ValidationError as exc:
            return _error_result(describe_validation_error(exc))
        except SdxlMcpError as exc:
            return _failure(exc)
        summary = f"{len(result.photos)} Pexels photo(s) for {request.query!r}."
        if result.downloaded is not None:
            summary += f" Saved {result.downloaded.path}. {result.downloaded.attribution}"
        return CallToolResult(
            content=[TextContent(type="text", text=summary)],
            structured_content=result.model_dump(mode="json"),
        )

    server.add_tool(
        _with_signature(
            search_stock_image,
            _request_signature(StockSearchRequest, nullable_fields=frozenset()),
            Annotated[CallToolResult, StockSearchResult],
        ),
        name="search_stock_image",
        title="Search free Pexels stock photos",
        description=(
            "Search Pexels for free stock photos. Returns photos with photographer, page URL "
            "and image URLs, and (download=true) saves the best match locally and returns its "
            "path and the attribution text to print with it."
        ),
        annotations=ToolAnnotations(
            title="Search stock photos",
            read_only_hint=False,
            destructive_hint=False,
            idempotent_hint=True,
            open_world_hint=True,
        ),
    )

    # --------------------------------------------------------------- gpu_status
    async def gpu_status() -> GpuStatus:
        return await svc.gpu_status()

    server.add_tool(
        gpu_status,
        name="gpu_status",
        title="GPU and engine status",
        description=(
            "CUDA availability, GPUs (memory, temperature, power, utilisation), the precision "
            "decision and its reason, engine state, queue and last generation time."
        ),
        annotations=ToolAnnotations(
            title="GPU and engine status",
            read_only_hint=True,
            destructive_hint=False,
            idempotent_hint=True,
            open_world_hint=False,
        ),
    )

    # --------------------------------------------------------------- resources
    @server.resource(
        IMAGE_URI_PREFIX + "{name}",
        name="image",
        title="Generated or downloaded image",
        description="An image this server saved, by file name.",
        mime_type="image/png",
    )
    def read_image(name: str) -> bytes:
        path = svc.resolve_image(name)
        if path is None:
            raise NotFound(f"No image named {name!r} on this server.")
        return path.read_bytes()

    return server


async def _log(ctx: Context, level: Literal["info", "warning"], message: str) -> None:
    try:
        with warnings.catch_warnings():
            # Deprecated in the 2026-07-28 protocol, still what 2025 clients show.
            warnings.simplefilter("ignore")
            await ctx.log(level, message, logger_name="sdxl_mcp")
    except Exception:  # a client that does not take log messages
        log.debug("could not send a log message to the client", exc_info=True)


async def _result_content(
    ctx: Context, svc: ImageService, result: GenerationResult
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
        data, mime = preview
        content.append(
            ImageContent(type="image", data=base64.b64encode(data).decode(), mime_type=mime)
        )
    if result.path:
        name = result.path.rsplit("/", 1)[-1]
        content.append(
            ResourceLink(
                type="resource_link",
                uri=IMAGE_URI_PREFIX + name,
                name=name,
                mime_type="image/png" if name.endswith(".png") else "image/jpeg",
                description="The full-size image",
            )
        )
    return CallToolResult(content=content, structured_content=structured)


async def _preview(svc: ImageService, result: GenerationResult) -> tuple[bytes, str] | None:
    if not result.path:
        return None
    try:
        return await svc.preview(result.path), "image/jpeg"
    except Exception:
        log.exception("Could not make a preview of %s", result.path)
        return None
