"""The HTTP app: MCP streamable HTTP at /mcp plus the source guide's REST API.

Routes: ``POST /api/media/generate-image`` (the guide's body and defaults),
``GET /api/media/images/{name}`` (only files this server made),
``GET /api/media/jobs/{job_id}``, ``GET /healthz`` and ``GET /openapi.json`` (the
REST API's OpenAPI 3.1 document, built from the pydantic models). Every route, not just /mcp,
passes the SDK's Host/Origin (DNS-rebinding) check and, when HTTP_TOKEN is set,
Starlette's authentication middleware with a bearer-token backend.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any, Literal

from mcp.server.transport_security import (
    TransportSecurityMiddleware,
    TransportSecuritySettings,
)
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.json_schema import models_json_schema
from starlette.applications import Starlette
from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    AuthenticationError,
    SimpleUser,
)
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from sdxl_mcp import __version__
from sdxl_mcp.errors import (
    Busy,
    SdxlMcpError,
    SettingsError,
    status_for_code,
)
from sdxl_mcp.schemas import GenerationResult, RestGenerationRequest, describe_validation_error
from sdxl_mcp.server import build_server
from sdxl_mcp.service import ImageService
from sdxl_mcp.settings import Settings

log = logging.getLogger(__name__)

MAX_JSON_BODY = 64 * 1024


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
    engine: str | None = Field(
        description="Engine state: not_loaded, loading, ready or failed."
    )
    queue: dict[str, Any] = Field(description="running, waiting, max_queue, running_job.")


def _error_json(
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


def transport_security(settings: Settings) -> TransportSecuritySettings:
    """Hosts and origins a browser may legitimately use to reach this server."""
    hosts = ["127.0.0.1", "localhost", "[::1]"]
    if not settings.http_host_is_loopback and settings.http_host not in ("0.0.0.0", "::"):
        hosts.append(settings.http_host)
    hosts += settings.http_allowed_hosts
    allowed_hosts = [h for host in hosts for h in (host, f"{host}:*")]
    allowed_origins = [
        o
        for host in hosts
        for o in (f"http://{host}", f"http://{host}:*", f"https://{host}", f"https://{host}:*")
    ]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=allowed_hosts,
        allowed_origins=allowed_origins,
    )


class HostOriginMiddleware:
    """Applies the SDK's Host/Origin validation to every route (custom routes skip it)."""

    def __init__(self, app: ASGIApp, security: TransportSecuritySettings) -> None:
        self.app = app
        self.checker = TransportSecurityMiddleware(security)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            error = await self.checker.validate_request(Request(scope), is_post=False)
            if error is not None:
                await error(scope, receive, send)
                return
        await self.app(scope, receive, send)


class BearerTokenBackend(AuthenticationBackend):
    """Every request must carry ``Authorization: Bearer <HTTP_TOKEN>``."""

    def __init__(self, token: str) -> None:
        self._token = token.encode()

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, SimpleUser]:
        scheme, _, supplied = conn.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not supplied:
            raise AuthenticationError("Missing bearer token: send 'Authorization: Bearer <token>'.")
        if not hmac.compare_digest(supplied.strip().encode(), self._token):
            raise AuthenticationError("Wrong bearer token.")
        return AuthCredentials(["authenticated"]), SimpleUser("client")


def _auth_error(conn: HTTPConnection, exc: AuthenticationError) -> Response:
    return _error_json(401, "unauthorized", str(exc), headers={"WWW-Authenticate": "Bearer"})


def check_http_settings(settings: Settings) -> None:
    """Refuse to expose the server on a network without a token."""
    if not settings.http_host_is_loopback and settings.http_token is None:
        raise SettingsError(
            f"SDXL_MCP_HTTP_HOST={settings.http_host} is reachable from other machines, so "
            "SDXL_MCP_HTTP_TOKEN must be set (a long random string clients send as a bearer "
            "token), or bind to 127.0.0.1."
        )


def _error_response(exc: SdxlMcpError) -> JSONResponse:
    headers = {}
    if isinstance(exc, Busy) or exc.retry_after_s:
        headers["Retry-After"] = str(max(1, round(exc.retry_after_s or 1)))
    return _error_json(
        exc.http_status, exc.code, exc.message, retryable=exc.retryable, headers=headers
    )


async def _read_capped(request: Request) -> bytes | None:
    """The body, or None once it passes MAX_JSON_BODY (declared or streamed).

    Reading stops at the cap, so a chunked upload without Content-Length
    cannot make the server buffer an unbounded body.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_JSON_BODY:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_JSON_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_request(raw: bytes) -> RestGenerationRequest:
    """The body as a request; raises ValidationError naming the field or the JSON problem."""
    try:
        return RestGenerationRequest.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        if [e["type"] for e in exc.errors()] != ["json_invalid"]:
            raise
        # pydantic's parser refuses escapes such as a lone "\ud800" that JSON allows;
        # the stdlib reads them, so the error can name the field instead of the byte.
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            raise exc from None
        return RestGenerationRequest.model_validate(data)


def _result_response(result: GenerationResult) -> JSONResponse:
    body = result.model_dump(mode="json")
    if result.status == "succeeded":
        return JSONResponse(body, status_code=200)
    if result.status == "running":
        return JSONResponse(body, status_code=202)
    return JSONResponse(body, status_code=status_for_code(result.error_code))


_REF = "#/components/schemas/{model}"


def _null_means_default(schema: dict[str, Any]) -> None:
    """Mark the optional request fields nullable, as the model treats them.

    ``GenerationRequest`` reads a JSON ``null`` for a field that has a default
    as "use the default" (the quality preset's, if one is chosen), so the
    published schema must accept ``null`` there too.
    """
    required = set(schema.get("required", ()))
    for name, prop in schema.get("properties", {}).items():
        if name in required or _allows_null(prop):
            continue
        outer = {k: prop.pop(k) for k in ("default", "description", "title") if k in prop}
        schema["properties"][name] = {"anyOf": [prop, {"type": "null"}], **outer}


def _allows_null(prop: dict[str, Any]) -> bool:
    return prop.get("type") == "null" or any(_allows_null(p) for p in prop.get("anyOf", ()))


def openapi_document(settings: Settings) -> dict[str, Any]:
    """The REST API's OpenAPI 3.1 document, generated from the pydantic models."""
    refs, defs = models_json_schema(
        [
            (RestGenerationRequest, "validation"),
            (GenerationResult, "serialization"),
            (ErrorBody, "serialization"),
            (Health, "serialization"),
        ],
        ref_template=_REF,
    )
    schemas: dict[str, Any] = defs["$defs"]
    request_ref = refs[(RestGenerationRequest, "validation")]
    _null_means_default(schemas[request_ref["$ref"].rsplit("/", 1)[-1]])
    result_ref = refs[(GenerationResult, "serialization")]
    error_ref = refs[(ErrorBody, "serialization")]
    health_ref = refs[(Health, "serialization")]

    def json_body(description: str, ref: dict[str, str], **extra: Any) -> dict[str, Any]:
        return {"description": description,
                "content": {"application/json": {"schema": ref}}, **extra}

    def error(description: str, **extra: Any) -> dict[str, Any]:
        return json_body(description, error_ref, **extra)

    def text(description: str) -> dict[str, Any]:
        return {"description": description,
                "content": {"text/plain": {"schema": {"type": "string"}}}}

    guarded = {
        "403": text("The Origin header names a foreign site (DNS-rebinding protection)."),
        "421": text("The Host header names a foreign host (DNS-rebinding protection)."),
    }
    if settings.http_token is not None:
        guarded["401"] = error("Missing or wrong bearer token.")
    follow = {
        "getJob": {
            "operationId": "getJob",
            "parameters": {"job_id": "$response.body#/job_id"},
            "description": "Follow (or re-read) the job this Result belongs to.",
        }
    }
    finished = {
        "200": json_body("The finished Result.", result_ref, links=follow),
        "202": json_body(
            "Still running after the wait: a Result with status 'running' and the job_id "
            "to follow at /api/media/jobs/{job_id}.",
            result_ref,
            links=follow,
        ),
    }
    failed = error(
        "A failure the caller can act on: a failed or cancelled job's Result (499 "
        "cancelled, 500 no usable image, 504 GENERATION_TIMEOUT_S hit, 507 the image "
        "could not be written) or a Pexels error (502)."
    )
    retry_after = {
        "Retry-After": {
            "description": "Seconds to wait before retrying.",
            "schema": {"type": "integer", "minimum": 1},
        }
    }
    paths: dict[str, Any] = {
        "/api/media/generate-image": {
            "post": {
                "operationId": "generateImage",
                "summary": "Get an image: a Pexels stock photo first, then SDXL generation.",
                "description": "The source guide's request (REST defaults: use_pexels=true, "
                "use_generation=false). Waits up to MAX_WAIT_S for the result.",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": request_ref}},
                },
                "responses": {
                    **finished,
                    "413": error("The body is larger than 64 KiB."),
                    "422": error("Invalid request; the message names the field and the bound."),
                    "429": error(
                        "Busy (queue full) or Pexels rate-limited; retry after Retry-After.",
                        headers=retry_after,
                    ),
                    "503": error(
                        "No image source can serve the request: 'No image found. Ensure "
                        "PEXELS_API_KEY is set or GPU available', or the models are unavailable."
                    ),
                    **guarded,
                    "default": failed,
                },
            }
        },
        "/api/media/jobs/{job_id}": {
            "get": {
                "operationId": "getJob",
                "summary": "A generation job's Result; optionally wait for it to finish.",
                "parameters": [
                    {"name": "job_id", "in": "path", "required": True,
                     "description": "The job_id a generation returned.",
                     "schema": {"type": "string"}},
                    {"name": "wait", "in": "query", "required": False,
                     "description": "Wait up to this many seconds for the job to finish.",
                     "schema": {"type": "number", "minimum": 0,
                                "maximum": settings.max_wait_s, "default": 0}},
                ],
                "responses": {
                    **finished,
                    "404": error("No job with this id on this server."),
                    "410": error("The job was lost: the server restarted before it finished."),
                    "422": error("wait is out of range or not a number."),
                    **guarded,
                    "default": failed,
                },
            }
        },
        "/api/media/images/{name}": {
            "get": {
                "operationId": "getImage",
                "summary": "A file this server saved (generated PNG or downloaded photo).",
                "parameters": [
                    {"name": "name", "in": "path", "required": True,
                     "description": "The file name (the last part of a Result's path).",
                     "schema": {"type": "string"}},
                ],
                "responses": {
                    "200": {
                        "description": "The image.",
                        "content": {
                            media: {"schema": {"type": "string", "format": "binary"}}
                            for media in ("image/png", "image/jpeg")
                        },
                    },
                    "404": error("No image by that name that this server made."),
                    **guarded,
                },
            }
        },
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "summary": "Liveness, engine state and queue.",
                "responses": {"200": json_body("The server is up.", health_ref), **guarded},
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document.",
                "responses": {
                    "200": {"description": "The OpenAPI document.",
                            "content": {"application/json": {"schema": {"type": "object"}}}},
                    **guarded,
                },
            }
        },
    }
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "sdxl-mcp REST API",
            "version": __version__,
            "description": "The source guide's REST API. MCP (streamable HTTP) is served at "
            "/mcp on the same port and is not described here.",
        },
        "paths": paths,
        "components": {"schemas": schemas},
    }
    if settings.http_token is not None:
        document["components"]["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer",
                       "description": "SDXL_MCP_HTTP_TOKEN"}
        }
        document["security"] = [{"bearer": []}]
    return document


def build_http_app(settings: Settings, service: ImageService | None = None) -> Starlette:
    """The whole HTTP app; its lifespan (the MCP server's) owns the service."""
    check_http_settings(settings)
    svc = service if service is not None else ImageService(settings)
    server = build_server(settings, svc)
    security = transport_security(settings)

    async def generate_image(request: Request) -> Response:
        raw = await _read_capped(request)
        if raw is None:
            return _error_json(413, "bad_request", "Request body too large (64 KiB at most).")
        try:
            payload = _parse_request(raw)
        except ValidationError as exc:
            return _error_json(422, "bad_request", describe_validation_error(exc))
        try:
            result = await svc.generate(payload)
        except SdxlMcpError as exc:
            return _error_response(exc)
        return _result_response(result)

    async def get_job(request: Request) -> Response:
        try:
            wait = float(request.query_params.get("wait", "0"))
        except ValueError:
            wait = -1
        if not 0 <= wait <= settings.max_wait_s:
            return _error_json(
                422, "bad_request", f"wait must be between 0 and {settings.max_wait_s:g} seconds."
            )
        try:
            result = await svc.wait_job(request.path_params["job_id"], wait)
        except SdxlMcpError as exc:
            return _error_response(exc)
        return _result_response(result)

    async def get_image(request: Request) -> Response:
        path = svc.resolve_image(request.path_params["name"])
        if path is None:
            return _error_json(404, "not_found", "No such image on this server.")
        media = "image/png" if path.suffix == ".png" else "image/jpeg"
        return FileResponse(path, media_type=media)

    async def healthz(request: Request) -> Response:
        health = Health(engine=svc.engine_state(), queue=svc.queue_status())
        return JSONResponse(health.model_dump(mode="json"))

    document = openapi_document(settings)

    async def openapi(request: Request) -> Response:
        return JSONResponse(document)

    app = server.streamable_http_app(
        streamable_http_path="/mcp", transport_security=security, host=settings.http_host
    )
    app.router.routes.extend(
        [
            Route("/api/media/generate-image", generate_image, methods=["POST"]),
            Route("/api/media/jobs/{job_id}", get_job, methods=["GET"]),
            Route("/api/media/images/{name}", get_image, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/openapi.json", openapi, methods=["GET"]),
        ]
    )
    if settings.http_token is not None:
        app.add_middleware(
            AuthenticationMiddleware,
            backend=BearerTokenBackend(settings.http_token.get_secret_value()),
            on_error=_auth_error,
        )
    app.add_middleware(HostOriginMiddleware, security=security)  # outermost
    return app


def serve_http(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    import uvicorn

    if host is not None or port is not None:
        settings = settings.model_copy(
            update={
                "http_host": host if host is not None else settings.http_host,
                "http_port": port if port is not None else settings.http_port,
            }
        )
    app = build_http_app(settings)
    log.info(
        "Serving MCP at http://%s:%d/mcp and the REST API under /api/media",
        settings.http_host,
        settings.http_port,
    )
    uvicorn.run(
        app, host=settings.http_host, port=settings.http_port, log_config=None, access_log=False
    )
