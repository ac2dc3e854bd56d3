"""The stock-photo workflow: search, download, stock first.

:func:`search_stock` is the use case and :func:`first_match` the generate workflow's
stock-first step, both through the service's one :class:`StockWorkflow` (one Pexels client,
built on first use, so the search cache and the rate-limit view are shared). Without a key
every call raises ``StockNotConfigured`` and nothing is sent
(details: docs/ARCHITECTURE.md "Guarantees"). No MCP or HTTP-server code here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from sdxl_mcp.errors import StockNotConfigured
from sdxl_mcp.library.stock_photos import StockPhotos
from sdxl_mcp.library.store import ImageStore
from sdxl_mcp.schemas import (
    GenerationRequest,
    GenerationResult,
    ImageInfo,
    StockSearchRequest,
    StockSearchResult,
    Timings,
)
from sdxl_mcp.settings import PEXELS_KEY_MISSING, Settings

if TYPE_CHECKING:
    import httpx

    from sdxl_mcp.service.facade import ImageService
    from sdxl_mcp.stock.pexels import PexelsClient

log = logging.getLogger(__name__)

__all__ = ["StockWorkflow", "first_match", "search_stock", "stock_configured", "stock_photos",
           "stock_status"]


def stock_photos(service: ImageService) -> StockWorkflow:
    """The service's one stock workflow (its Pexels client, search cache and rate-limit
    view shared by every caller); closed with the service."""
    return service.shared("stock", lambda: StockWorkflow(service.settings, lambda: service.store))


def stock_configured(service: ImageService) -> bool:
    """Whether stock photo search can run (a Pexels key is set)."""
    return service.settings.pexels_api_key is not None


async def search_stock(service: ImageService, request: StockSearchRequest) -> StockSearchResult:
    """Search Pexels; with ``request.download``, save the best match into the library."""
    return await stock_photos(service).search(request)


async def first_match(service: ImageService, request: GenerationRequest) -> GenerationResult | None:
    """The guide's workflow: a free Pexels photo shaped like the request, or None."""
    return await stock_photos(service).first_match(request)


def stock_status(service: ImageService) -> dict[str, Any]:
    """What ``gpu_status`` reports under ``pexels`` (never the key)."""
    return stock_photos(service).status()


class StockWorkflow:
    """Stock photos for one service.

    ``store`` is the library to save into, or a function returning it (called
    in a worker thread on first use, for a store that opens lazily).
    """

    def __init__(self, settings: Settings, store: ImageStore | Callable[[], ImageStore]) -> None:
        self.settings = settings
        self._store = store
        self._client: PexelsClient | None = None
        self._http: httpx.AsyncClient | None = None
        self._photos: StockPhotos | None = None

    @property
    def configured(self) -> bool:
        """Whether stock photo search can run (a Pexels key is set)."""
        return self.settings.pexels_api_key is not None

    def status(self) -> dict[str, Any]:
        """What ``gpu_status`` reports under ``pexels`` (never the key)."""
        if self._client is not None:
            return self._client.status()
        return {"configured": self.configured}

    async def search(self, request: StockSearchRequest) -> StockSearchResult:
        """Search Pexels; with ``request.download``, save the best match into the store."""
        return await self._search_and_download(request)

    async def first_match(self, request: GenerationRequest) -> GenerationResult | None:
        """The guide's workflow: a free Pexels photo that fits, or None."""
        started = time.perf_counter()
        self._pexels()
        ratio = request.width / request.height
        orientation = (
            "square" if 0.9 <= ratio <= 1.1 else ("landscape" if ratio > 1 else "portrait")
        )
        search = StockSearchRequest(
            query=request.prompt[:200], orientation=orientation, per_page=5, download=True
        )
        found = await self._search_and_download(
            search, width=request.width, height=request.height
        )
        if found.downloaded is None:
            log.info("No Pexels photo for %r", request.prompt[:80])
            return None
        photo = found.photos[0]
        saved = found.downloaded
        elapsed = round(time.perf_counter() - started, 4)
        return GenerationResult(
            success=True,
            status="succeeded",
            message="Found a free stock photo on Pexels"
            + (" (already downloaded)" if saved.cached else "")
            + f". Credit it: {saved.attribution}",
            image_url=saved.path,
            image=ImageInfo(
                url=saved.path,
                source="pexels",
                photographer=photo.photographer,
                photographer_url=photo.photographer_url,
                width=saved.width or photo.width,
                height=saved.height or photo.height,
            ),
            generation_time=elapsed,
            path=saved.path,
            timings=Timings(total=elapsed),
            cached=saved.cached,
            image_id=saved.image_id,
            pexels_photo_id=photo.id,
            pexels_page_url=photo.url,
            attribution=saved.attribution,
        )

    async def aclose(self) -> None:
        """Close the HTTP client (a later call opens a new one)."""
        http, self._http, self._client, self._photos = self._http, None, None, None
        if http is not None:
            await http.aclose()

    # -- internals -------------------------------------------------------------

    def _pexels(self) -> PexelsClient:
        """The client, built on first use; StockNotConfigured without a key."""
        if self._client is None:
            if self.settings.pexels_api_key is None:
                raise StockNotConfigured(PEXELS_KEY_MISSING)
            # Imported on first use: httpx and what its package pulls in cost
            # ~80 ms that a server start-up need not pay. The module attribute is
            # looked up here, so tests may replace default_http_client.
            from sdxl_mcp.stock import pexels

            http = pexels.default_http_client()
            self._client = pexels.PexelsClient(
                self.settings.pexels_api_key,
                base_url=self.settings.pexels_base_url,
                http=http,
                cache_ttl_s=self.settings.pexels_cache_ttl_s,
            )
            self._http = http
        return self._client

    async def _stock_photos(self, client: PexelsClient) -> StockPhotos:
        source = self._store
        store = await anyio.to_thread.run_sync(source) if callable(source) else source
        if self._photos is None or self._photos.store is not store:
            self._photos = StockPhotos(store, client)
        return self._photos

    async def _search_and_download(
        self,
        request: StockSearchRequest,
        *,
        width: int | None = None,
        height: int | None = None,
    ) -> StockSearchResult:
        client = self._pexels()
        result = await client.search(request)
        if request.download and result.photos:
            photos = await self._stock_photos(client)
            downloaded = await photos.download(
                result.photos[0],
                width=width,
                height=height,
                orientation=request.orientation,
                query=request.query,
            )
            result = result.model_copy(update={"downloaded": downloaded})
        return result
