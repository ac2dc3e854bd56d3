"""What a job's tool answers: progress while it runs, then the Result as content.

Guarantees: a job's steps reach the client as progress notifications without
ever stalling the engine (a full or gone client drops them); a finished
image comes back as structured content, one summary line, a JPEG preview (when
one can be made: the image is saved either way) and a ``resource_link`` to the
full-size ``image://`` resource; a job still running is a normal answer (its
handle), a failed or cancelled one an ``isError`` result.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import warnings
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import anyio
from mcp.server.context import ServerRequestContext
from mcp.types import (
    CallToolResult,
    EmptyResult,
    ImageContent,
    ResourceLink,
    SetLevelRequestParams,
    TextContent,
)
from pydantic import BaseModel

from sdxl_mcp.backend.base import ProgressEvent
from sdxl_mcp.entrypoints.mcp.toolspec import ToolContext, failure
from sdxl_mcp.errors import SdxlMcpError
from sdxl_mcp.schemas import GenerationResult
from sdxl_mcp.service.facade import ImageService

log = logging.getLogger("sdxl_mcp.entrypoints.mcp.tools")

__all__ = ["IMAGE_URI_PREFIX", "LOG_LEVELS", "image_link", "log_to_client", "preview_content",
           "result_content", "set_log_level", "summary_answer", "with_progress"]

IMAGE_URI_PREFIX = "image://"


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
        await log_to_client(ctx, "warning", f"Refinement failed: {result.refiner_error}")
    content: list[Any] = [TextContent(type="text", text=summary)]
    preview = await preview_content(svc, result)
    link = image_link(result, "The full-size image")
    content += [part for part in (preview, link) if part is not None]
    return CallToolResult(content=content, structured_content=structured)


async def preview_content(svc: ImageService, result: GenerationResult) -> ImageContent | None:
    """The JPEG preview of a saved Result's image, or None (no file, or it failed)."""
    if not result.path:
        return None
    try:
        preview = await svc.preview(result.path)
    except Exception:  # the image itself is saved; a preview is a courtesy
        log.exception("Could not make a preview of %s", result.path)
        return None
    return ImageContent(type="image", data=base64.b64encode(preview).decode(),
                        mime_type="image/jpeg")


def image_link(result: GenerationResult, description: str) -> ResourceLink | None:
    """A ``resource_link`` to the Result's full-size ``image://`` resource, or None."""
    if not result.path:
        return None
    name = result.path.rsplit("/", 1)[-1]
    return ResourceLink(
        type="resource_link",
        uri=IMAGE_URI_PREFIX + (result.image_id or name),
        name=name,
        mime_type="image/png" if name.endswith(".png") else "image/jpeg",
        description=description,
    )


#: MCP's log levels, lowest first: ``logging/setLevel`` keeps the one set and those above.
LOG_LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")
_LOG_LEVEL_KEY = "sdxl_mcp.log_level"


async def set_log_level(ctx: ServerRequestContext[Any, Any],
                        params: SetLevelRequestParams) -> EmptyResult:
    """``logging/setLevel`` (handshake-era clients): no message below ``params.level``
    reaches this connection. 2026-07-28 clients opt in per request; the SDK filters those."""
    state = _connection_state(ctx.session)
    if state is not None:
        state[_LOG_LEVEL_KEY] = params.level
    return EmptyResult()


def _connection_state(session: Any) -> dict[str, Any] | None:
    # A lowlevel request context has no public connection yet (the SDK's context rework is
    # pending); its session holds it, and Connection.state is the SDK's per-connection store.
    return getattr(getattr(session, "_connection", None), "state", None)


async def log_to_client(
    ctx: ToolContext, level: Literal["info", "warning"], message: str
) -> None:
    """A log message to the client (``notifications/message``) at or above the level the
    client set; never fails the call."""
    state = _connection_state(ctx.request_context.session)
    floor = state.get(_LOG_LEVEL_KEY) if state is not None else None
    if floor in LOG_LEVELS and LOG_LEVELS.index(level) < LOG_LEVELS.index(floor):
        return
    try:
        with warnings.catch_warnings():
            # Deprecated in the 2026-07-28 protocol, still what 2025 clients show.
            warnings.simplefilter("ignore")
            await ctx.log(level, message, logger_name="sdxl_mcp")
    except Exception:  # a client that does not take log messages
        log.debug("could not send a log message to the client", exc_info=True)


def summary_answer(text: str, answer: BaseModel) -> CallToolResult:
    """A tool's answer: ``text`` for the agent to read, ``answer`` as structured content."""
    return CallToolResult(content=[TextContent(type="text", text=text)],
                          structured_content=answer.model_dump(mode="json"))
