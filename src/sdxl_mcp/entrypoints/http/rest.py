"""The source guide's REST API: one route table, its handlers and their answers.

Each ``RestRoute`` names its method, path, handler, the models of its body and
parameters, and its documented replies; the same table yields the Starlette
routes (``starlette_routes``) and the OpenAPI document (``sdxl_mcp.entrypoints.http.openapi``).
Guarantees: a body and the parameters are validated once, by the models the
document publishes; a body over the route's ``max_body`` (``MAX_JSON_BODY``,
or ``MAX_IMAGE_BODY`` where image arguments may be data URIs) is 413 before it is
buffered; bad input is 422 with one sentence naming the field; every
``SdxlMcpError`` answers its HTTP status with an ``ErrorBody`` (and
Retry-After when retrying helps); a Result answers 200 when done, 202 while
running and its error's status otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

import anyio.to_thread
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from pydantic.json_schema import SkipJsonSchema
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from sdxl_mcp.errors import (
    BadRequest,
    Busy,
    Cancelled,
    GenerationFailed,
    GenerationTimeout,
    JobLost,
    NoImageFound,
    NotFound,
    SdxlMcpError,
    StockError,
    StorageError,
    status_for_code,
)
from sdxl_mcp.library.transforms import MAX_SIDE, MIME_TYPES, MIN_SIDE
from sdxl_mcp.library.views import original_mime_type, served_image, view_transform
from sdxl_mcp.schemas import (
    EditRequest,
    ExportRequest,
    ExportResult,
    GenerationResult,
    RestGenerationRequest,
    VariationsResult,
    VaryRequest,
    describe_validation_error,
)
from sdxl_mcp.schemas.loras import LoraList
from sdxl_mcp.schemas.models import ModelList
from sdxl_mcp.service.edit import edit
from sdxl_mcp.service.facade import ImageService
from sdxl_mcp.service.generate import generate
from sdxl_mcp.service.loras import list_loras as list_loras_of
from sdxl_mcp.service.models import list_models as list_models_of
from sdxl_mcp.service.vary import vary
from sdxl_mcp.settings import Settings

MAX_JSON_BODY = 64 * 1024
#: Routes with image arguments: two data URIs (image and mask) of MAX_UPLOAD_BYTES each.
MAX_IMAGE_BODY = 12 * 1024 * 1024
JOBS = "/api/media/jobs/{job_id}"

M = TypeVar("M", bound=BaseModel)


# ------------------------------------------------------------------ bodies
class ErrorBody(BaseModel):
    """The JSON body of every REST error.

    A failed or cancelled job answers its full ``GenerationResult`` instead,
    which has these fields too (hence ``extra="allow"``).
    """

    model_config = ConfigDict(extra="allow")

    success: Literal[False] = False
    status: Literal["failed", "cancelled"] = "failed"
    error_code: str = Field(description="Stable machine-readable code, e.g. bad_request, busy.")
    retryable: bool | None = Field(
        None, description="Whether sending the same request later can succeed."
    )
    message: str = Field(description="One sentence: what happened and what to do.")


class Health(BaseModel):
    """The body of ``GET /healthz``."""

    status: Literal["ok"] = "ok"
    engine: str | None = Field(description="Engine state: not_loaded, loading, ready or failed.")
    queue: dict[str, Any] = Field(description="running, waiting, max_queue, running_job.")


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def _optional(description: str) -> Any:
    """A query parameter that may be left out (no ``null`` in the published schema)."""
    return Field(None, description=description, json_schema_extra=_no_default)


_Side = Annotated[int, Field(ge=MIN_SIDE, le=MAX_SIDE)]


class ImageParams(BaseModel):
    """``GET /api/media/images/{ref}``: an image, optionally resized and re-encoded."""

    ref: str = Field(description="An image_id, or (older links) the file name of a Result's "
                     "path.")
    format: Literal["png", "webp", "jpeg"] | SkipJsonSchema[None] = _optional(
        "Re-encode as this format (png when another parameter is given).")
    width: _Side | SkipJsonSchema[None] = _optional("Output width in pixels.")
    height: _Side | SkipJsonSchema[None] = _optional("Output height in pixels.")
    fit: Literal["cover", "contain"] | SkipJsonSchema[None] = _optional(
        "With width and height: cover (exact size, centre crop; the default) or contain "
        "(fit inside, keep the aspect).")
    quality: Annotated[int, Field(ge=1, le=100)] | SkipJsonSchema[None] = _optional(
        "WebP/JPEG quality (default 85).")


class JobParams(BaseModel):
    """``GET /api/media/jobs/{job_id}``; :func:`job_params` bounds the wait."""

    model_config = ConfigDict(allow_inf_nan=False)

    job_id: str = Field(description="The job_id a generation returned.")
    wait: float = Field(0, ge=0)


def job_params(max_wait_s: float) -> type[JobParams]:
    return create_model(
        "JobParams",
        __base__=JobParams,
        wait=(float, Field(0, ge=0, le=max_wait_s,
                           description="Wait up to this many seconds for the job to finish.")),
    )


# ------------------------------------------------------------------ the spec
@dataclass(frozen=True)
class RestApi:
    """What handlers reach: the service and the published OpenAPI document."""

    service: ImageService
    document: dict[str, Any]


#: ``(api, validated parameters or None, validated body or None)`` -> the answer.
Handler = Callable[[RestApi, Any, Any], Awaitable[Response]]


@dataclass(frozen=True)
class Reply:
    """One documented answer of a route: its status, what it means and its body."""

    status: str
    description: str
    #: A model (published under components) or a JSON Schema for other bodies.
    body: type[BaseModel] | dict[str, Any] = ErrorBody
    media: tuple[str, ...] = ("application/json",)
    retry_after: bool = False
    follows_job: bool = False  # carries a job_id: linked to getJob

    @classmethod
    def error(cls, error: type[SdxlMcpError], description: str, **kw: Any) -> Reply:
        """The reply for ``error``, at the status the error class declares."""
        return cls(str(error.http_status), description, **kw)


@dataclass(frozen=True)
class RestRoute:
    """One REST operation: how it is served (``route``) and what the document says of it."""

    method: str
    path: str
    operation_id: str
    summary: str
    handler: Handler
    replies: tuple[Reply, ...]
    body: type[BaseModel] | None = None
    #: Path and query parameters, one per field; path ones are the ``{names}`` in ``path``.
    params: type[BaseModel] | None = None
    description: str | None = None
    #: A larger body is 413 before it is buffered.
    max_body: int = MAX_JSON_BODY

    def route(self, api: RestApi) -> Route:
        async def endpoint(request: Request) -> Response:
            try:
                params = None
                if self.params is not None:
                    # The path wins: "?job_id=" cannot redirect a request.
                    given = {**request.query_params, **request.path_params}
                    params = self.params.model_validate(given)
                body = None
                if self.body is not None:
                    raw = await read_capped(request, self.max_body)
                    if raw is None:
                        return error_json(413, "bad_request", "Request body too large "
                                          f"({_size(self.max_body)} at most).")
                    body = parse_body(raw, self.body)
            except ValidationError as exc:
                return error_json(422, "bad_request", describe_validation_error(exc))
            try:
                return await self.handler(api, params, body)
            except SdxlMcpError as exc:
                return error_response(exc)

        return Route(self.path, endpoint, methods=[self.method])


# ------------------------------------------------------------------ handlers
async def generate_image(api: RestApi, _: None, request: RestGenerationRequest) -> Response:
    return result_response(await generate(api.service, request))


async def get_job(api: RestApi, params: JobParams, _: None) -> Response:
    return result_response(await api.service.wait_job(params.job_id, params.wait))


async def get_image(api: RestApi, params: ImageParams, _: None) -> Response:
    """The original file (no transform asked), or the transformed view (cached)."""
    transform = view_transform(params.format, params.width, params.height, params.fit,
                               params.quality)
    if transform is None:
        resolved = await anyio.to_thread.run_sync(
            served_image, api.service.library.resolver, params.ref)
        return FileResponse(resolved.path, media_type=original_mime_type(resolved))
    data, media_type = await api.service.library.view_image(params.ref, transform)
    return Response(data, media_type=media_type)


async def edit_image(api: RestApi, _: None, request: EditRequest) -> Response:
    return result_response(await edit(api.service, request))


async def vary_image(api: RestApi, _: None, request: VaryRequest) -> Response:
    return result_response(await vary(api.service, request))


async def export_image(api: RestApi, _: None, request: ExportRequest) -> Response:
    result = await api.service.library.export_image(request)
    return JSONResponse(result.model_dump(mode="json"))


async def list_loras(api: RestApi, _: None, __: None) -> Response:
    return JSONResponse((await list_loras_of(api.service)).model_dump(mode="json"))


async def list_models(api: RestApi, _: None, __: None) -> Response:
    return JSONResponse((await list_models_of(api.service)).model_dump(mode="json"))


async def healthz(api: RestApi, _: None, __: None) -> Response:
    health = Health(engine=api.service.engine_state(), queue=api.service.queue_status())
    return JSONResponse(health.model_dump(mode="json"))


async def openapi(api: RestApi, _: None, __: None) -> Response:
    return JSONResponse(api.document)


# ------------------------------------------------------------------ the table
def rest_routes(settings: Settings) -> list[RestRoute]:
    """Every REST route (docs/REST.md), as served and as documented."""
    too_large = Reply("413", f"The body is larger than {_size(MAX_JSON_BODY)}.")
    too_large_with_images = Reply("413", f"The body is larger than {_size(MAX_IMAGE_BODY)}.")
    no_image = Reply.error(NotFound, "No such image on this server.")
    busy = Reply.error(Busy, "Busy (queue full); retry after Retry-After.", retry_after=True)
    result = (
        Reply("200", "The finished Result.", GenerationResult, follows_job=True),
        Reply("202", "Still running after the wait: a Result with status 'running' and the "
              f"job_id to follow at {JOBS}.", GenerationResult, follows_job=True),
        Reply("default", "A failure the caller can act on: a failed or cancelled job's Result "
              f"({Cancelled.http_status} cancelled, {GenerationFailed.http_status} no usable "
              f"image, {GenerationTimeout.http_status} GENERATION_TIMEOUT_S hit, "
              f"{StorageError.http_status} the image could not be written) or a Pexels error "
              f"({StockError.http_status})."),
    )
    return [
        RestRoute(
            "POST", "/api/media/generate-image", "generateImage",
            "Get an image: a Pexels stock photo first, then SDXL generation.",
            generate_image,
            body=RestGenerationRequest,
            description="The source guide's request (REST defaults: use_pexels=true, "
            f"use_generation=false). Waits up to {settings.max_wait_s:g} s (MAX_WAIT_S) "
            "for the result.",
            replies=(
                *result,
                too_large,
                Reply.error(BadRequest, "Invalid request; the message names the field and the "
                            "bound."),
                Reply.error(Busy, "Busy (queue full) or Pexels rate-limited; retry after "
                            "Retry-After.", retry_after=True),
                Reply.error(NoImageFound, "No image source can serve the request: "
                            f"'{NoImageFound.GUIDE_MESSAGE}', or the models are unavailable."),
            ),
        ),
        RestRoute(
            "GET", JOBS, "getJob", "A generation job's Result; optionally wait for it to finish.",
            get_job,
            params=job_params(settings.max_wait_s),
            replies=(
                *result,
                Reply.error(NotFound, "No job with this id on this server."),
                Reply.error(JobLost, "The job was lost: the server restarted before it finished."),
                Reply.error(BadRequest, "wait is out of range or not a number."),
            ),
        ),
        RestRoute(
            "GET", "/api/media/images/{ref}", "getImage",
            "An image this server holds (generated or downloaded), optionally resized and "
            "re-encoded.",
            get_image,
            params=ImageParams,
            description="Without query parameters: the original file. With any of format, "
            "width, height, fit, quality: the transformed image (cached).",
            replies=(
                Reply("200", "The image.", {"type": "string", "format": "binary"},
                      media=tuple(MIME_TYPES.values())),
                Reply.error(BadRequest, "A query value is out of range; the message names it."),
                Reply.error(NotFound, "No image with this id or name on this server."),
            ),
        ),
        RestRoute(
            "POST", "/api/media/edit-image", "editImage",
            "Edit an image: image-to-image, or inpainting with a mask (white = repaint).",
            edit_image,
            body=EditRequest,
            max_body=MAX_IMAGE_BODY,
            description="The edit_image tool's arguments; the output keeps the source's size "
            f"(a multiple of 8). Waits up to {settings.max_wait_s:g} s (MAX_WAIT_S).",
            replies=(
                *result,
                too_large_with_images,
                Reply.error(BadRequest, "Invalid request, an image or mask the server refuses, "
                            "or a mask that does not fit; the message names the field."),
                no_image,
                busy,
            ),
        ),
        RestRoute(
            "POST", "/api/media/vary-image", "varyImage",
            "Variations of a generated image: its request re-run with new seeds and changes.",
            vary_image,
            body=VaryRequest,
            max_body=MAX_IMAGE_BODY,
            description="The vary_image tool's arguments; count 1-4 images as one job. Waits "
            f"up to {settings.max_wait_s:g} s (MAX_WAIT_S); past it, 202 with the job_id "
            f"({JOBS} then answers the first variation's Result).",
            replies=(
                Reply("200", "Every variation's Result.", VariationsResult, follows_job=True),
                Reply("202", "Still running after the wait: status 'running' and the job_id.",
                      VariationsResult, follows_job=True),
                Reply("default", "A failed or cancelled job (with the variations already "
                      "saved).", VariationsResult),
                too_large_with_images,
                Reply.error(BadRequest, "Invalid request, a field that is not a Request field, "
                            "or an image with no catalogued request (a stock photo: use "
                            "edit-image); the message names the field."),
                no_image,
                busy,
            ),
        ),
        RestRoute(
            "POST", "/api/media/export", "exportImage",
            "A web-ready copy of an image: preset or size, WebP/JPEG/PNG, under max_bytes.",
            export_image,
            body=ExportRequest,
            max_body=MAX_IMAGE_BODY,
            description="The export_image tool's arguments; writes OUTPUT_DIR/exports/"
            "<image_id>.<preset or WxH>.<ext> (the same request gives the same file).",
            replies=(
                Reply("200", "The exported file, its alt text, HTML and Markdown.",
                      ExportResult),
                too_large_with_images,
                Reply.error(BadRequest, "Invalid request, an image argument the server "
                            "refuses, or max_bytes unreachable; the message names the field."),
                no_image,
                Reply.error(StorageError, "The export could not be written."),
            ),
        ),
        RestRoute(
            "GET", "/api/media/models", "listModels",
            "The models (checkpoints and diffusers folders by name), LoRAs and styles.",
            list_models, replies=(Reply("200", "Every model of MODEL_DIRS (BASE_MODEL first), "
                                        "every LoRA and style.", ModelList),),
        ),
        RestRoute(
            "GET", "/api/media/loras", "listLoras", "The LoRA adapters (name, size, loaded).",
            list_loras, replies=(Reply("200", "Every LoRA file of LORA_DIRS.", LoraList),),
        ),
        RestRoute(
            "GET", "/healthz", "healthz", "Liveness, engine state and queue.", healthz,
            replies=(Reply("200", "The server is up.", Health),),
        ),
        RestRoute(
            "GET", "/openapi.json", "openapi", "This document.", openapi,
            replies=(Reply("200", "The OpenAPI document.", {"type": "object"}),),
        ),
    ]


def starlette_routes(api: RestApi, routes: list[RestRoute]) -> list[Route]:
    return [route.route(api) for route in routes]


# ------------------------------------------------------------------ answers
def error_json(
    status_code: int,
    code: str,
    message: str,
    *,
    retryable: bool | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = ErrorBody(error_code=code, message=message, retryable=retryable)
    return JSONResponse(
        body.model_dump(mode="json", exclude_none=True), status_code=status_code, headers=headers
    )


def error_response(exc: SdxlMcpError) -> JSONResponse:
    headers = {}
    if isinstance(exc, Busy) or exc.retry_after_s:
        headers["Retry-After"] = str(max(1, round(exc.retry_after_s or 1)))
    return error_json(
        exc.http_status, exc.code, exc.message, retryable=exc.retryable, headers=headers
    )


def result_response(result: GenerationResult | VariationsResult) -> JSONResponse:
    body = result.model_dump(mode="json")
    if result.status == "succeeded":
        return JSONResponse(body, status_code=200)
    if result.status == "running":
        return JSONResponse(body, status_code=202)
    return JSONResponse(body, status_code=status_for_code(result.error_code))


async def read_capped(request: Request, max_body: int = MAX_JSON_BODY) -> bytes | None:
    """The body, or None once it passes ``max_body`` (declared or streamed).

    Reading stops at the cap, so a chunked upload without Content-Length
    cannot make the server buffer an unbounded body.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_body:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_body:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _size(count: int) -> str:
    return f"{count // 2**20} MiB" if count >= 2**20 else f"{count // 1024} KiB"


def parse_body(raw: bytes, model: type[M]) -> M:
    """The body as ``model``; raises ValidationError naming the field or the JSON problem."""
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        if [e["type"] for e in exc.errors()] != ["json_invalid"]:
            raise
        # pydantic's parser refuses escapes such as a lone "\ud800" that JSON allows;
        # the stdlib reads them, so the error can name the field instead of the byte.
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            raise exc from None
        return model.model_validate(data)


def parse_request(raw: bytes) -> RestGenerationRequest:
    """The ``generate-image`` body, read as that route reads it."""
    return parse_body(raw, RestGenerationRequest)
