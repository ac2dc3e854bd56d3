"""The generate workflow: a stock photo first (``use_pexels``), else one SDXL generation.

Guarantees (``tests/service/test_service.py``, ``tests/service/test_reuse.py``):

* the request is admitted (``service.admission``: model, LoRA names, draft) before
  anything runs; a stock search that fails falls through to generation, and
  with ``use_generation=false`` its error (other than "no key") is the answer;
* a seeded request identical to a catalogued one (``reuse``) answers with
  that Result while its file exists, made at the precision the engine has
  decided (when it has);
* otherwise one job whose work builds the backend (counted in
  ``model_load``), runs ``backend.generate`` and keeps the output with its
  A1111 infotext and its reuse key (``service.keeping``);
* the call waits up to ``wait_s`` (MAX_WAIT_S), then answers ``running`` with
  the ``job_id``; ``previews=True`` (the MCP face) keeps an inline preview.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import anyio.to_thread

from sdxl_mcp.backend.base import EngineOutput
from sdxl_mcp.errors import NoImageFound, SdxlMcpError, StockNotConfigured
from sdxl_mcp.library import ImageStore, format_infotext
from sdxl_mcp.library.loras import with_loras
from sdxl_mcp.library.reuse import request_key, same_precision
from sdxl_mcp.schemas import GenerationRequest, GenerationResult
from sdxl_mcp.service.admission import admit
from sdxl_mcp.service.jobs import Job, ProgressListener
from sdxl_mcp.service.keeping import Entry
from sdxl_mcp.service.results import infotext_params, reused_result
from sdxl_mcp.service.stock import first_match
from sdxl_mcp.settings import Settings

if TYPE_CHECKING:
    from sdxl_mcp.service.facade import ImageService

log = logging.getLogger(__name__)


async def generate(service: ImageService, request: GenerationRequest,
                   on_progress: ProgressListener | None = None, wait_s: float | None = None,
                   *, previews: bool = False) -> GenerationResult:
    """Stock photo first (``use_pexels``), else one generation; wait up to ``wait_s``.

    Raises ``SdxlMcpError`` subclasses; still running after the wait: ``status="running"``
    with a ``job_id`` to follow with ``service.wait_job``.
    """
    request = await anyio.to_thread.run_sync(admit, service.settings, request)
    stock_error: SdxlMcpError | None = None
    if request.use_pexels:
        try:
            stock = await first_match(service, request)
        except SdxlMcpError as exc:
            stock, stock_error = None, exc
            log.warning("Stock photo search failed: %s", exc.message)
        if stock is not None:
            return stock
    if request.use_generation and request.reuse and request.seed is not None:
        reused = await _reused(service, request)
        if reused is not None:
            return reused
    if not request.use_generation:
        # The guide's message when no source can serve; a Pexels fault other
        # than "no key" is more useful to the caller than the generic line.
        if stock_error is not None and not isinstance(stock_error, StockNotConfigured):
            raise stock_error
        raise NoImageFound()
    job = submit_generation(service, request, on_progress, previews=previews)
    return await service.follow(job, on_progress, wait_s)


def submit_generation(service: ImageService, request: GenerationRequest,
                      on_progress: ProgressListener | None = None, *,
                      previews: bool = False) -> Job:
    """Admit one generation job (``request`` already admitted); its handle."""

    def work(job: Job, progress: ProgressListener) -> GenerationResult:
        backend, building_s = service.timed_backend(job.cancel)
        output = backend.generate(request, job.seed, progress, job.cancel)
        return service.keep(job, output, generation_entry(service.settings, request, output),
                            building_s=building_s, preview=previews)

    return service.submit(request.seed, work, on_progress)


def generation_entry(settings: Settings, request: GenerationRequest,
                     output: EngineOutput) -> Entry:
    """What a generation keeps: its infotext (with the LoRAs' hashes) and its reuse key."""
    return Entry(
        request=request,
        infotext=format_infotext(with_loras(infotext_params(request, output), settings, request)),
        request_key=request_key(request, settings),
    )


async def _reused(service: ImageService, request: GenerationRequest) -> GenerationResult | None:
    store = service.opened_store
    if store is None:  # storage down: nothing to reuse; the job reports the fault
        return None
    backend = service.built_backend
    decided = backend.status().dtype if backend is not None else None
    return await anyio.to_thread.run_sync(
        find_reusable, store, service.settings, request, decided)


def find_reusable(
    store: ImageStore, settings: Settings, request: GenerationRequest, decided: str | None
) -> GenerationResult | None:
    """The catalogued Result of an identical request, or None (no seed, no match)."""
    key = request_key(request, settings)
    if key is None:
        return None
    started = time.perf_counter()
    record = store.catalog.find_by_request_key(key)
    if record is None or not record.result_json:
        return None
    stored = GenerationResult.model_validate_json(record.result_json)
    # The key holds the precision *setting*; "auto" may decide differently here.
    if not same_precision(stored.model_dump(), decided):
        return None
    log.info("Reusing %s for an identical request", record.name)
    return reused_result(stored, time.perf_counter() - started)
