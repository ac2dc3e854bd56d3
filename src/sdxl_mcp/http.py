"""The HTTP app: MCP streamable HTTP at /mcp plus the source guide's REST API.

Routes: ``POST /api/media/generate-image`` (the guide's body and defaults),
``GET /api/media/images/{name}`` (only files this server made),
``GET /api/media/jobs/{job_id}``, ``GET /healthz``. Every route, not just /mcp,
passes the SDK's Host/Origin (DNS-rebinding) check and, when HTTP_TOKEN is set,
Starlette's authentication middleware with a bearer-token backend.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

from mcp.server.transport_security import (
    TransportSecurityMiddleware,
    TransportSecuritySettings,
)
from pydantic import ValidationError
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
    return JSONResponse(
        {"success": False, "error_code": "unauthorized", "message": str(exc)},
        status_code=401,
        headers={"WWW-Authenticate": "Bearer"},
    )


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
    return JSONResponse(
        {
            "success": False,
            "status": "failed",
            "error_code": exc.code,
            "retryable": exc.retryable,
            "message": exc.message,
        },
        status_code=exc.http_status,
        headers=headers,
    )


def _result_response(result: GenerationResult) -> JSONResponse:
    body = result.model_dump(mode="json")
    if result.status == "succeeded":
        return JSONResponse(body, status_code=200)
    if result.status == "running":
        return JSONResponse(body, status_code=202)
    return JSONResponse(body, status_code=status_for_code(result.error_code))


def build_http_app(settings: Settings, service: ImageService | None = None) -> Starlette:
    """The whole HTTP app; its lifespan (the MCP server's) owns the service."""
    check_http_settings(settings)
    svc = service if service is not None else ImageService(settings)
    server = build_server(settings, svc)
    security = transport_security(settings)

    async def generate_image(request: Request) -> Response:
        declared = request.headers.get("content-length", "")
        too_big = declared.isdigit() and int(declared) > MAX_JSON_BODY
        raw = b"" if too_big else await request.body()
        if too_big or len(raw) > MAX_JSON_BODY:
            return JSONResponse(
                {
                    "success": False,
                    "error_code": "bad_request",
                    "message": "Request body too large (64 KiB at most).",
                },
                413,
            )
        try:
            payload: Any = RestGenerationRequest.model_validate_json(raw or b"{}")
        except ValidationError as exc:
            return JSONResponse(
                {
                    "success": False,
                    "status": "failed",
                    "error_code": "bad_request",
                    "message": describe_validation_error(exc),
                },
                status_code=422,
            )
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
            return JSONResponse(
                {
                    "success": False,
                    "error_code": "bad_request",
                    "message": f"wait must be between 0 and {settings.max_wait_s:g} seconds.",
                },
                422,
            )
        try:
            result = await svc.wait_job(request.path_params["job_id"], wait)
        except SdxlMcpError as exc:
            return _error_response(exc)
        return _result_response(result)

    async def get_image(request: Request) -> Response:
        path = svc.store.resolve_name(request.path_params["name"])
        if path is None:
            return JSONResponse(
                {
                    "success": False,
                    "error_code": "not_found",
                    "message": "No such image on this server.",
                },
                404,
            )
        media = "image/png" if path.suffix == ".png" else "image/jpeg"
        return FileResponse(path, media_type=media)

    async def healthz(request: Request) -> Response:
        return JSONResponse(
            {
                "status": "ok",
                "engine": svc.engine_status().get("state"),
                "queue": svc.queue_status(),
            }
        )

    app = server.streamable_http_app(
        streamable_http_path="/mcp", transport_security=security, host=settings.http_host
    )
    app.router.routes.extend(
        [
            Route("/api/media/generate-image", generate_image, methods=["POST"]),
            Route("/api/media/jobs/{job_id}", get_job, methods=["GET"]),
            Route("/api/media/images/{name}", get_image, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
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
