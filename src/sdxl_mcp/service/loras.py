"""The service's side of LoRA adapters and draft mode (docs/LORA.md).

:func:`admit` runs before a generation or an edit is admitted: unknown LoRAs are a
``BadRequest`` (nothing written, no slot taken) and ``quality: "draft"`` is resolved into the
steps and guidance that really run; :func:`list_loras` lists the LoRA files
(details: docs/ARCHITECTURE.md "Guarantees"). Torch-free.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, TypeVar

import anyio.to_thread

from sdxl_mcp.backend.base import Backend
from sdxl_mcp.library.loras import lora_files, resolve_draft, resolve_loras
from sdxl_mcp.schemas import EditRequest, GenerationRequest
from sdxl_mcp.schemas.loras import LoraInfo, LoraList, requested_loras
from sdxl_mcp.settings import Settings

if TYPE_CHECKING:
    from sdxl_mcp.service.facade import ImageService

log = logging.getLogger(__name__)
R = TypeVar("R", GenerationRequest, EditRequest)

def admit(settings: Settings, request: R) -> R:
    """The request to run: LoRA names checked, draft resolved (see the guarantees)."""
    if isinstance(request, GenerationRequest) and not request.use_generation:
        return request  # stock only: nothing reaches the engine
    resolve_loras(settings, [ref.name for ref in requested_loras(request.prompt, request.loras)])
    if isinstance(request, GenerationRequest):
        return resolve_draft(settings, request)
    return request


async def list_loras(service: ImageService) -> LoraList:
    """The ``list_loras`` use case (see :func:`lora_list`)."""
    return await anyio.to_thread.run_sync(lora_list, service.settings, service.built_backend)


def lora_list(settings: Settings, backend: Backend | None) -> LoraList:
    """Every LoRA file, its size, and whether ``backend`` (if built) has it loaded."""
    names = backend.loaded_loras() if backend is not None else None
    loaded = set(names) if names is not None else None
    if backend is None and settings.backend == "local":
        loaded = set()  # no engine yet: nothing is loaded
    infos = []
    for name, path in sorted(lora_files(settings.lora_dirs).items()):
        try:
            size = path.stat().st_size
        except OSError:
            continue
        infos.append(LoraInfo(name=name, bytes=size,
                              loaded=None if loaded is None else name in loaded))
    return LoraList(loras=infos, dirs=[str(d) for d in settings.lora_dirs])
