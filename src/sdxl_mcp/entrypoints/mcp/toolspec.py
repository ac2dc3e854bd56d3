"""The MCP tool machinery: a tool's spec, its annotations, its error results.

Guarantees: a tool's input schema is its arguments model's JSON Schema made
compact and portable (``entrypoints.mcp.schema``), so the arguments are flat (the model's
fields at top level) and carry the model's bounds; its output schema is the output model's,
names and types only, and a shape listed in full by one tool is listed briefly
by the others (``brief``). Arguments are validated once, by that model, and a
failure is an ``isError`` result of one sentence naming the field; every
``SdxlMcpError`` becomes an ``isError`` result with its message. Handlers
reach the service only through the lifespan context.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.tools import Tool
from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase, FuncMetadata
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, ConfigDict, ValidationError

from sdxl_mcp.entrypoints.mcp.schema import compact_input, compact_output
from sdxl_mcp.errors import SdxlMcpError
from sdxl_mcp.schemas import GenerationResult, describe_validation_error
from sdxl_mcp.service.facade import ImageService

__all__ = [
    "NoArguments",
    "ToolContext",
    "ToolHandler",
    "ToolSpec",
    "arguments_must_be_an_object",
    "error_result",
    "failure",
    "tool_annotations",
]

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


class NoArguments(BaseModel):
    model_config = ConfigDict(extra="forbid")


def tool_annotations(
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


def error_result(message: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=message)], is_error=True)


def failure(exc: SdxlMcpError) -> CallToolResult:
    """An error the caller can act on: one sentence, plus retry facts when useful."""
    text = exc.message
    if exc.retry_after_s:
        text = f"{text.rstrip('.')}. (retry_after_s={exc.retry_after_s:.0f})"
    return error_result(text)


#: The Result as tools other than generate_image publish it: its full shape is in
#: generate_image's output schema; every other field still comes (and validates).
_JOB = ("success", "status", "message", "job_id", "error_code")
BRIEF_RESULT: Mapping[str, tuple[str, ...]] = {
    "GenerationResult": (*_JOB, "eta_s", "image_id", "path", "seed")}
BRIEF_CANCEL: Mapping[str, tuple[str, ...]] = {"GenerationResult": _JOB}
BRIEF_VARY: Mapping[str, tuple[str, ...]] = {
    "VariationsResult": ("success", "status", "message", "job_id", "results", "error_code"),
    "GenerationResult": ("status", "image_id", "path", "seed")}
#: generate_image lists the Result but the fields only an edit fills and those an
#: agent does not act on (the seed's image_url/image repeat path, attribution holds
#: the Pexels photo's credit and page; they still come back).
FULL_RESULT: Mapping[str, tuple[str, ...]] = {"GenerationResult": tuple(
    name for name in GenerationResult.model_fields if name not in (
        "source_image_id", "mask_image_id", "image_url", "image", "metadata_path",
        "device", "refiner_error", "cached", "steps", "pexels_photo_id",
        "pexels_page_url", "model", "model_hash", "sampler"))}
