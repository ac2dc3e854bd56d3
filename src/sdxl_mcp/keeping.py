"""Keeping a job's output: its files and catalog row, and the preview made beside them.

Guarantees: ``Keeper.keep`` publishes one engine output (a generation through
``archive.save_generation``, an edit through ``editflow.save_edit``) with the
build time of the backend counted in ``model_load``; with ``preview=True`` the
JPEG preview is made from the in-memory image while the PNG is encoded
(``preview.while_previewing``) and kept for the transport (the last
:data:`PREVIEW_CACHE_SIZE`); the file is complete before the Result is
returned. ``Keeper.preview`` answers from that cache, else encodes from the file.
Blocking (disk, SQLite, encoders): callers run ``keep`` in a worker thread.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from functools import partial

import anyio.to_thread

from sdxl_mcp.archive import save_generation
from sdxl_mcp.backend import EngineOutput
from sdxl_mcp.editflow import EditSources, save_edit
from sdxl_mcp.library import ImageStore
from sdxl_mcp.preview import preview_jpeg, while_previewing
from sdxl_mcp.schemas import EditRequest, GenerationRequest, GenerationResult
from sdxl_mcp.settings import Settings

PREVIEW_CACHE_SIZE = 32


class Keeper:
    """Saves outputs into the store ``store()`` returns; keeps their previews."""

    def __init__(self, settings: Settings, store: Callable[[], ImageStore]) -> None:
        self._settings = settings
        self._store = store
        self._previews: OrderedDict[str, bytes] = OrderedDict()

    def keep(self, job_id: str, request: GenerationRequest | EditRequest,
             output: EngineOutput, *, edit: EditSources | None = None,
             queue_wait_s: float = 0.0, building_s: float = 0.0,
             preview: bool) -> GenerationResult:
        """Keep one output (PNG, sidecar, catalog) and, if asked, its preview; its Result.

        ``edit`` is an edit's source (and mask); ``building_s`` the time the first
        request spent building the backend, counted in ``model_load``."""
        output.timings["model_load"] = round(
            output.timings.get("model_load", 0.0) + building_s, 4)
        if isinstance(request, EditRequest):
            assert edit is not None
            save = partial(save_edit, self._store(), self._settings, job_id, request, edit,
                           output, queue_wait_s)
        else:
            save = partial(save_generation, self._store(), self._settings, job_id, request,
                           output, queue_wait_s)
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
