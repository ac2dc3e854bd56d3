"""The HTTP app: MCP streamable HTTP at /mcp plus the source guide's REST API.

The REST routes and their OpenAPI document come from one table
(``entrypoints.http.rest``, ``entrypoints.http.openapi``). Guarantees: every route, not just
/mcp, passes the SDK's Host/Origin (DNS-rebinding) check and, when HTTP_TOKEN
is set, Starlette's authentication middleware with a bearer-token backend; the
app refuses to build on a non-loopback host without a token.
"""

from __future__ import annotations

import hmac
import logging

from mcp.server.transport_security import (
    TransportSecurityMiddleware,
    TransportSecuritySettings,
)
from starlette.applications import Starlette
from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    AuthenticationError,
    SimpleUser,
)
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from sdxl_mcp.entrypoints.http import auth as gallery_auth
from sdxl_mcp.entrypoints.http.gallery import Gallery, auth_redirect
from sdxl_mcp.entrypoints.http.openapi import openapi_document
from sdxl_mcp.entrypoints.http.rest import (
    MAX_IMAGE_BODY,
    RestApi,
    error_json,
    rest_routes,
    starlette_routes,
)
from sdxl_mcp.entrypoints.mcp.server import build_server
from sdxl_mcp.errors import SettingsError
from sdxl_mcp.service.facade import ImageService
from sdxl_mcp.settings import Settings

log = logging.getLogger(__name__)


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
    """Every request must carry ``Authorization: Bearer <HTTP_TOKEN>``.

    With ``sessions`` (the gallery's), a browser's session cookie stands in for
    the token on the reads ``gallery_auth.cookie_may_authorize`` allows, and the
    sign-in form, logout and the gallery CSS need nothing.
    """

    def __init__(self, token: str, sessions: gallery_auth.Sessions | None = None) -> None:
        self._token = token.encode()
        self._sessions = sessions

    async def authenticate(
        self, conn: HTTPConnection
    ) -> tuple[AuthCredentials, SimpleUser] | None:
        if self._sessions is not None and "authorization" not in conn.headers:
            if gallery_auth.is_public(conn.url.path):
                return None
            if gallery_auth.cookie_may_authorize(conn) and self._sessions.valid(
                    conn.cookies.get(gallery_auth.COOKIE_NAME)):
                return AuthCredentials(["authenticated"]), SimpleUser("browser")
        scheme, _, supplied = conn.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not supplied:
            raise AuthenticationError("Missing bearer token: send 'Authorization: Bearer <token>'.")
        if not hmac.compare_digest(supplied.strip().encode(), self._token):
            raise AuthenticationError("Wrong bearer token.")
        return AuthCredentials(["authenticated"]), SimpleUser("client")


def _auth_error(conn: HTTPConnection, exc: AuthenticationError) -> Response:
    redirect = auth_redirect(conn)  # a gallery page: to the sign-in form
    if redirect is not None:
        return redirect
    return error_json(401, "unauthorized", str(exc), headers={"WWW-Authenticate": "Bearer"})


def check_http_settings(settings: Settings) -> None:
    """Refuse to expose the server on a network without a token."""
    if not settings.http_host_is_loopback and settings.http_token is None:
        raise SettingsError(
            f"SDXL_MCP_HTTP_HOST={settings.http_host} is reachable from other machines, so "
            "SDXL_MCP_HTTP_TOKEN must be set (a long random string clients send as a bearer "
            "token), or bind to 127.0.0.1."
        )


def build_http_app(settings: Settings, service: ImageService | None = None) -> Starlette:
    """The whole HTTP app; its lifespan (the MCP server's) owns the service."""
    check_http_settings(settings)
    svc = service if service is not None else ImageService(settings)
    server = build_server(settings, svc)
    security = transport_security(settings)
    app = server.streamable_http_app(
        streamable_http_path="/mcp", transport_security=security, host=settings.http_host,
        # An edit's image and mask may both be data URIs (docs/LIBRARY.md).
        max_request_body_size=MAX_IMAGE_BODY,
    )
    routes = rest_routes(settings)
    api = RestApi(svc, document=openapi_document(settings, routes))
    app.router.routes.extend(starlette_routes(api, routes))
    gallery = Gallery(svc, settings)
    app.router.routes.extend(gallery.routes())
    if settings.http_token is not None:
        app.add_middleware(
            AuthenticationMiddleware,
            backend=BearerTokenBackend(settings.http_token.get_secret_value(), gallery.sessions),
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
