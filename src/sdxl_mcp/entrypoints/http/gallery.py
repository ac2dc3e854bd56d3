"""The web gallery: server-rendered HTML pages over the library (docs/LIBRARY.md "Web gallery").

Routes (mounted by ``sdxl_mcp.entrypoints.http.app``): ``GET /gallery`` (thumbnails, search),
``GET /gallery/{image_id}`` (one image and its metadata), ``/gallery/login`` and
``/gallery/logout`` (``sdxl_mcp.entrypoints.http.auth``), ``/gallery/static/``. Every page is
rendered by Jinja2 with autoescaping under a strict Content-Security-Policy, needs no
JavaScript and makes no request outside this server; the gallery never writes anything
(details: docs/ARCHITECTURE.md "Guarantees").
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import anyio
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from PIL import Image
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)
from starlette.requests import HTTPConnection, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from sdxl_mcp.entrypoints.http import auth
from sdxl_mcp.errors import SdxlMcpError
from sdxl_mcp.library.catalog import CatalogRecord
from sdxl_mcp.library.infotext import PARAMETERS_CHUNK, parse_infotext
from sdxl_mcp.schemas import (
    FindImagesRequest,
    ImageSource,
    LibraryImage,
    describe_validation_error,
)
from sdxl_mcp.service.facade import ImageService
from sdxl_mcp.settings import Settings

__all__ = ["CSP", "PER_PAGE", "PRESETS", "Gallery", "auth_redirect"]

WEB_DIR = Path(__file__).parent
PER_PAGE = 24
#: FindImagesRequest allows offsets up to 100 000.
MAX_PAGE = 100_000 // PER_PAGE
THUMB_SIDE = 320
MAX_LOGIN_BODY = 4096
CSP = ("default-src 'none'; img-src 'self'; style-src 'self'; script-src 'none'; "
       "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
#: The export presets of docs/LIBRARY.md "Web-ready export" (name, width, height).
PRESETS = (("og", 1200, 630), ("hero", 1600, 900), ("square", 1080, 1080),
           ("thumbnail", 400, 400))
_IMAGE_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,80}")


class ListQuery(BaseModel):
    """The query string of ``GET /gallery`` (an empty field means 'not given')."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    q: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] | None = None
    source: ImageSource | None = None
    page: int = Field(1, ge=1, le=MAX_PAGE)

    @field_validator("q", "source", "page", mode="before")
    @classmethod
    def _empty_is_absent(cls, value: Any, info: Any) -> Any:
        if value == "" or (info.field_name == "q" and isinstance(value, str) and not value.strip()):
            return cls.model_fields[info.field_name].default
        return value


def image_url(image_id: str, **view: str | int) -> str:
    """``/api/media/images/{image_id}``, with transform parameters when given."""
    url = f"/api/media/images/{quote(image_id, safe='')}"
    return f"{url}?{urlencode(view)}" if view else url


def safe_link(url: Any) -> str | None:
    """``url`` when it is an absolute http(s) URL (never ``javascript:`` and the like)."""
    if not isinstance(url, str) or len(url) > 2000:
        return None
    parts = urlsplit(url.strip())
    return url.strip() if parts.scheme in ("http", "https") and parts.netloc else None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


@dataclass(frozen=True)
class _Files:
    """What the detail page reads from disk: the Result, the sidecar and the infotext."""

    exists: bool
    result: dict[str, Any]
    models: dict[str, Any]
    infotext: str | None


def _read_files(record: CatalogRecord) -> _Files:
    """Blocking reads for the detail page; a missing or unreadable part is left out."""
    result: dict[str, Any] = {}
    if record.result_json:
        try:
            loaded = json.loads(record.result_json)
            result = loaded if isinstance(loaded, dict) else {}
        except ValueError:
            result = {}
    models: dict[str, Any] = {}
    sidecar = record.path.with_suffix(".json")
    try:
        loaded = json.loads(sidecar.read_text(encoding="utf-8"))
        if isinstance(loaded, dict) and isinstance(loaded.get("models"), dict):
            models = loaded["models"]
    except (OSError, ValueError):
        pass
    infotext = None
    exists = record.path.is_file()
    if exists and record.path.suffix.lower() == ".png":
        try:
            with Image.open(record.path) as im:
                text = im.info.get(PARAMETERS_CHUNK)
                infotext = text if isinstance(text, str) else None
        except (OSError, ValueError, Image.DecompressionBombError):
            infotext = None
    return _Files(exists, result, models, infotext)


class Gallery:
    """The gallery's routes, templates and (with HTTP_TOKEN) its browser sessions."""

    def __init__(self, service: ImageService, settings: Settings) -> None:
        self.service = service
        token = settings.http_token
        self._token = token.get_secret_value() if token is not None else None
        #: None without a token: then the gallery, like every route, is open.
        self.sessions = auth.Sessions() if self._token is not None else None
        self.limiter = auth.FailureLimiter()
        self._env = Environment(
            loader=FileSystemLoader(WEB_DIR / "templates"),
            autoescape=True,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )

    def routes(self) -> list[BaseRoute]:
        """In match order: the fixed paths before ``/gallery/{image_id}``."""
        return [
            Mount("/gallery/static", StaticFiles(directory=WEB_DIR / "static"),
                  name="gallery-static"),
            Route(auth.LOGIN, self.login, methods=["GET", "POST"]),
            Route(auth.LOGOUT, self.logout, methods=["POST"]),
            Route(auth.GALLERY, self.listing, methods=["GET"]),
            Route(auth.GALLERY + "/{image_id}", self.detail, methods=["GET"]),
        ]

    # -------------------------------------------------------------- rendering
    def page(self, template: str, status_code: int = 200, *,
             headers: dict[str, str] | None = None, **context: Any) -> HTMLResponse:
        html = self._env.get_template(template).render(
            auth_enabled=self.sessions is not None, **context)
        return HTMLResponse(html, status_code=status_code,
                            headers={**SECURITY_HEADERS, **(headers or {})})

    def error_page(self, status_code: int, title: str, message: str,
                   headers: dict[str, str] | None = None) -> HTMLResponse:
        return self.page("error.html", status_code, headers=headers, title=title,
                         message=message, status=status_code)

    # -------------------------------------------------------------- pages
    async def listing(self, request: Request) -> Response:
        try:
            query = ListQuery.model_validate(dict(request.query_params))
        except ValidationError as exc:
            return self.error_page(422, "Bad request", describe_validation_error(exc))
        try:
            found = await self.service.library.find_images(FindImagesRequest(
                query=query.q, source=query.source, limit=PER_PAGE,
                offset=(query.page - 1) * PER_PAGE))
        except SdxlMcpError as exc:
            return self.error_page(exc.http_status, "Library unavailable", exc.message)
        pages = max(1, math.ceil(found.total / PER_PAGE))
        if query.page > pages:
            return self.error_page(
                422, "Bad request",
                f"Invalid request: page {query.page} is past the last page ({pages}).")

        def link(page: int) -> str:
            fields = {"q": query.q, "source": query.source, "page": page if page > 1 else None}
            given = {k: v for k, v in fields.items() if v is not None}
            return f"{auth.GALLERY}?{urlencode(given)}" if given else auth.GALLERY

        return self.page(
            "list.html",
            title="Gallery",
            query=query,
            total=found.total,
            page=query.page,
            pages=pages,
            prev_url=link(query.page - 1) if query.page > 1 else None,
            next_url=link(query.page + 1) if query.page < pages else None,
            images=[self._card(image) for image in found.images],
        )

    @staticmethod
    def _card(image: LibraryImage) -> dict[str, Any]:
        caption = image.alt or image.prompt or f"{image.source} image {image.image_id}"
        return {
            "image_id": image.image_id,
            "href": f"{auth.GALLERY}/{quote(image.image_id, safe='')}",
            "thumb": image_url(image.image_id, format="webp", width=THUMB_SIDE,
                               height=THUMB_SIDE, fit="cover"),
            "caption": caption if len(caption) <= 120 else caption[:117] + "...",
            "source": image.source,
            "size": f"{image.width}x{image.height}",
            "seed": image.seed,
        }

    async def detail(self, request: Request) -> Response:
        image_id = str(request.path_params["image_id"])
        try:
            record = None
            if _IMAGE_ID_RE.fullmatch(image_id):
                record = await anyio.to_thread.run_sync(
                    self.service.store.catalog.get_by_image_id, image_id)
        except SdxlMcpError as exc:
            return self.error_page(exc.http_status, "Library unavailable", exc.message)
        if record is None:
            return self.error_page(404, "Not found", "No image with this id in the library.")
        files = await anyio.to_thread.run_sync(_read_files, record)
        return self.page("detail.html", title=f"Image {image_id}",
                         **self._detail_context(image_id, record, files))

    @staticmethod
    def _detail_context(image_id: str, record: CatalogRecord, files: _Files) -> dict[str, Any]:
        params = record.parameters or {}
        stock = record.source == "pexels"
        result = files.result
        timings: dict[str, Any] = result.get("timings") or {}
        if not isinstance(timings, dict):
            timings = {}
        run = {key: result[key] for key in ("generation_time", "steps", "precision", "device",
                                            "refined", "refiner_error", "reused")
               if result.get(key) is not None}
        attribution = None
        if stock:
            attribution = {
                "line": _text(params.get("attribution") or ""),
                "photographer": _text(params.get("photographer") or ""),
                "photographer_url": safe_link(params.get("photographer_url")),
                "page_url": safe_link(params.get("page_url")),
            }
        return {
            "image_id": image_id,
            "original": image_url(image_id),
            "display": image_url(image_id),
            "exists": files.exists,
            "name": record.name,
            "source": "pexels" if stock else "sdxl",
            "prompt": record.prompt,
            "negative_prompt": record.negative_prompt,
            "seed": record.seed,
            "width": record.width,
            "height": record.height,
            "created": record.created,
            "parameters": sorted((str(k), _text(v)) for k, v in params.items()),
            "infotext": files.infotext,
            "infotext_fields": sorted(parse_infotext(files.infotext).items())
            if files.infotext else [],
            "timings": [(str(k), _text(v)) for k, v in timings.items()],
            "run": [(k, _text(v)) for k, v in run.items()],
            "models": [(str(k), _text(v)) for k, v in files.models.items() if v is not None],
            "attribution": attribution,
            "presets": [
                {"name": name, "size": f"{w}x{h}",
                 "url": image_url(image_id, format="webp", width=w, height=h, fit="cover")}
                for name, w, h in PRESETS
            ],
            "export_body": json.dumps({"image": image_id, "preset": "og"}),
        }

    # -------------------------------------------------------------- sign-in
    async def login(self, request: Request) -> Response:
        if self.sessions is None or self._token is None:
            return RedirectResponse(auth.GALLERY, status_code=303)
        if request.method == "GET":
            if self.sessions.valid(request.cookies.get(auth.COOKIE_NAME)):
                return RedirectResponse(auth.GALLERY, status_code=303)
            return self.page("login.html", title="Sign in", error=None)
        client = request.client.host if request.client else "unknown"
        wait = self.limiter.retry_after(client)
        if wait is not None:
            return self.error_page(
                429, "Too many attempts",
                f"Too many failed sign-ins from this address; try again in {wait} s.",
                headers={"Retry-After": str(wait)})
        token = await _form_field(request, "token")
        if token is None:
            return self.error_page(
                413, "Bad request", f"The sign-in form is larger than {MAX_LOGIN_BODY} bytes.")
        if not token or not auth.check_token(token, self._token):
            self.limiter.failed(client)
            return self.page("login.html", 401, title="Sign in",
                             error="That token is not right.")
        response = RedirectResponse(auth.GALLERY, status_code=303, headers=SECURITY_HEADERS)
        self.sessions.set_cookie(response, self.sessions.create(),
                                 secure=request.url.scheme == "https")
        return response

    async def logout(self, request: Request) -> Response:
        if self.sessions is not None:
            self.sessions.end(request.cookies.get(auth.COOKIE_NAME))
        target = auth.LOGIN if self.sessions is not None else auth.GALLERY
        response = RedirectResponse(target, status_code=303, headers=SECURITY_HEADERS)
        auth.Sessions.clear_cookie(response, secure=request.url.scheme == "https")
        return response


def auth_redirect(conn: HTTPConnection) -> Response | None:
    """A gallery page without valid credentials goes to the sign-in form; else None."""
    if auth.is_gallery_page(conn.url.path):
        return RedirectResponse(auth.LOGIN, status_code=303, headers=SECURITY_HEADERS)
    return None


async def _form_field(request: Request, name: str) -> str | None:
    """One field of an urlencoded form ("" when absent); None when the body is too big."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_LOGIN_BODY:
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_LOGIN_BODY:
            return None
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return fields.get(name, [""])[0]
