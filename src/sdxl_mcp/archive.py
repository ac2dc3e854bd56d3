"""Keeping generations: the engine's image saved, described and catalogued; found again.

Guarantees:

* a saved generation has its PNG (with the A1111 ``parameters`` infotext), its
  ``.json`` sidecar (the Result, the request, the models) and its catalog row
  with its ``image_id`` and reuse key, or none of them: if the sidecar or the
  row cannot be written, the PNG is removed again and the error propagates;
* :func:`find_reusable` returns a catalogued Result only for an identical
  request (``library.reuse``) whose file still exists, made at the precision
  the engine has decided (when it has).

Blocking (disk, SQLite): callers run these in a worker thread.
"""

from __future__ import annotations

import logging
import time

from sdxl_mcp.backend import EngineOutput
from sdxl_mcp.library import CatalogRecord, ImageStore, format_infotext
from sdxl_mcp.library.reuse import request_key, same_precision
from sdxl_mcp.lorafiles import with_loras
from sdxl_mcp.results import (
    generation_result,
    generation_timings,
    infotext_params,
    reused_result,
    sidecar_payload,
)
from sdxl_mcp.schemas import GenerationRequest, GenerationResult
from sdxl_mcp.settings import Settings

log = logging.getLogger(__name__)


def save_generation(
    store: ImageStore,
    settings: Settings,
    job_id: str,
    request: GenerationRequest,
    output: EngineOutput,
    queue_wait_s: float,
) -> GenerationResult:
    """Publish ``output`` as a PNG with its sidecar and catalog row; its Result."""
    t0 = time.perf_counter()
    saved = store.save_image(
        output.image,
        seed=output.seed,
        infotext=format_infotext(with_loras(infotext_params(request, output), settings, request)),
        compress_level=settings.png_compress_level,
    )
    timings = generation_timings(output, queue_wait_s, time.perf_counter() - t0)
    image_id = store.catalog.new_image_id(saved.name)
    result = generation_result(job_id, output, saved, timings, image_id)
    payload = sidecar_payload(result, request, output)
    try:
        store.write_sidecar(saved.path, payload)
        store.catalog.add(CatalogRecord.from_saved(
            saved, prompt=request.prompt, negative_prompt=request.negative_prompt,
            parameters=payload["request"], seed=output.seed, source="sdxl",
            result_json=result.model_dump_json(), image_id=image_id,
            request_key=request_key(request, settings),
        ))
    except BaseException:
        # The caller is told it failed: leave no image the catalog does not
        # know (it could never be served or found again) and no sidecar.
        store.discard(saved.path)
        raise
    return result


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
