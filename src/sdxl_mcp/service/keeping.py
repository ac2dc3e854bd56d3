"""Keeping a job's output: one save-catalogue-sidecar path for every workflow.

Guarantees (``tests/service/test_keeping.py`` and the workflow tests check them):
:meth:`Keeper.keep` publishes the PNG, its ``.json`` sidecar and its catalog row, or none of
them; what differs between workflows travels in the workflow's :class:`Entry`, so the keeper
never asks what kind of job it keeps (details: docs/ARCHITECTURE.md "Guarantees").

Blocking (disk, SQLite, encoders): callers run ``keep`` in a worker thread.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio.to_thread

from sdxl_mcp.backend.base import EngineOutput
from sdxl_mcp.library import CatalogRecord, ImageStore
from sdxl_mcp.library.previews import preview_jpeg, while_previewing
from sdxl_mcp.schemas import EditRequest, GenerationRequest, GenerationResult
from sdxl_mcp.service.results import generation_result, generation_timings, sidecar_payload
from sdxl_mcp.settings import Settings

PREVIEW_CACHE_SIZE = 32


def unchanged(result: GenerationResult) -> GenerationResult:
    return result


@dataclass(frozen=True)
class Entry:
    """What a workflow keeps beside one output's pixels."""

    #: The request as it ran (the sidecar's and the catalog's ``request``).
    request: GenerationRequest | EditRequest
    #: The PNG's A1111 ``parameters`` text.
    infotext: str
    #: The workflow's own Result fields, set on the generation's Result.
    finish: Callable[[GenerationResult], GenerationResult] = unchanged
    #: Catalog parameters beyond the request's fields (an edit's source, ...).
    catalog_extra: dict[str, Any] = field(default_factory=dict)
    #: The reuse key (``library.reuse``) of a request that may be answered again.
    request_key: str | None = None


def save_output(store: ImageStore, settings: Settings, job_id: str, output: EngineOutput,
                entry: Entry, queue_wait_s: float) -> GenerationResult:
    """PNG, Result, sidecar and catalog row, or nothing (see the module's guarantees)."""
    t0 = time.perf_counter()
    saved = store.save_image(output.image, seed=output.seed, infotext=entry.infotext,
                             compress_level=settings.png_compress_level)
    timings = generation_timings(output, queue_wait_s, time.perf_counter() - t0)
    image_id = store.catalog.new_image_id(saved.name)
    result = entry.finish(generation_result(job_id, output, saved, timings, image_id))
    payload = sidecar_payload(result, entry.request, output)
    try:
        store.write_sidecar(saved.path, payload)
        store.catalog.add(CatalogRecord.from_saved(
            saved, prompt=entry.request.prompt, negative_prompt=entry.request.negative_prompt,
            parameters={**payload["request"], **entry.catalog_extra}, seed=output.seed,
            source="sdxl", result_json=result.model_dump_json(), image_id=image_id,
            request_key=entry.request_key,
        ))
    except BaseException:
        # The caller is told it failed: leave no image the catalog does not
        # know (it could never be served or found again) and no sidecar.
        store.discard(saved.path)
        raise
    return result


class Keeper:
    """Saves outputs into the store ``store()`` returns; keeps their previews."""

    def __init__(self, settings: Settings, store: Callable[[], ImageStore]) -> None:
        self._settings = settings
        self._store = store
        self._previews: OrderedDict[str, bytes] = OrderedDict()

    def keep(self, job_id: str, output: EngineOutput, entry: Entry, *,
             queue_wait_s: float = 0.0, building_s: float = 0.0,
             preview: bool = False) -> GenerationResult:
        """Keep one output and, if asked, its preview; its Result.

        ``building_s``: the time the first request spent building the backend,
        counted in ``model_load``."""
        output.timings["model_load"] = round(
            output.timings.get("model_load", 0.0) + building_s, 4)

        def save() -> GenerationResult:
            return save_output(self._store(), self._settings, job_id, output, entry,
                               queue_wait_s)

        if not preview:
            return save()
        # From the in-memory image (half the cost of decoding the PNG again), made
        # while the PNG is encoded; the file is complete before the result is returned.
        result, jpeg = while_previewing(output.image, save)
        if result.path:
            self._previews[result.path] = jpeg
            while len(self._previews) > PREVIEW_CACHE_SIZE:
                self._previews.popitem(last=False)
        return result

    async def preview(self, path: str) -> bytes:
        """The inline JPEG preview of an image kept here (cached if fresh), else of the file."""
        cached = self._previews.get(path)
        if cached is not None:
            return cached
        return await anyio.to_thread.run_sync(preview_jpeg, path)
