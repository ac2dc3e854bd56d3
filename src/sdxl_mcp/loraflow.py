"""The service's side of LoRA adapters and draft mode (DESIGN.md "LoRA adapters and draft mode").

Guarantees:

* :func:`admit` runs before a generation or an edit is admitted: every LoRA
  it asks for (``loras`` and ``<lora:...>`` tags) is a file of
  ``SDXL_MCP_LORA_DIRS``, else a ``BadRequest`` listing the available ones;
  nothing is written and no slot is taken;
* it resolves ``quality: "draft"`` (:func:`resolve_draft`): without
  ``SDXL_MCP_DRAFT_LORA`` an error naming the setting and suggesting ``fast``;
  otherwise the steps and guidance the caller did not give become
  ``SDXL_MCP_DRAFT_STEPS`` / ``_GUIDANCE``, so the catalogued request (reuse,
  ``vary_image``, the infotext) holds what really ran;
* :func:`list_loras` lists name, file size and whether the engine holds it
  (null when the backend cannot say, e.g. on Ray replicas);
* :func:`warn_missing_dirs` logs a start-up warning for a configured folder
  that does not exist (the default folder missing is normal: info only).

Torch-free.
"""

from __future__ import annotations

import logging
from typing import Any, TypeVar

from sdxl_mcp.errors import BadRequest
from sdxl_mcp.lorafiles import lora_files, resolve_loras
from sdxl_mcp.schemas import EditRequest, GenerationRequest
from sdxl_mcp.schemas.loras import LoraInfo, LoraList, requested_loras
from sdxl_mcp.settings import Settings

log = logging.getLogger(__name__)
R = TypeVar("R", GenerationRequest, EditRequest)

DRAFT_WITHOUT_LORA = (
    'quality: "draft" needs SDXL_MCP_DRAFT_LORA, a distilled SDXL LoRA (SDXL-Lightning, '
    'Hyper-SD or LCM; a file or a hub id), which is not set; set it, or use quality "fast".'
)


def admit(settings: Settings, request: R) -> R:
    """The request to run: LoRA names checked, draft resolved (see the guarantees)."""
    if isinstance(request, GenerationRequest) and not request.use_generation:
        return request  # stock only: nothing reaches the engine
    resolve_loras(settings, [ref.name for ref in requested_loras(request.prompt, request.loras)])
    if isinstance(request, GenerationRequest):
        return resolve_draft(settings, request)
    return request


def resolve_draft(settings: Settings, request: GenerationRequest) -> GenerationRequest:
    """A draft request with the server's steps and guidance where the caller gave none."""
    if request.quality != "draft":
        return request
    if not settings.draft_lora:
        raise BadRequest(DRAFT_WITHOUT_LORA)
    given = request.model_fields_set
    update: dict[str, Any] = {}
    if "num_inference_steps" not in given:
        update["num_inference_steps"] = settings.draft_steps
    if "guidance_scale" not in given:
        update["guidance_scale"] = settings.draft_guidance
    return request.model_copy(update=update) if update else request


def list_loras(settings: Settings, backend: Any) -> LoraList:
    """Every LoRA file, its size, and whether ``backend`` (if built) has it loaded."""
    adapters = getattr(backend, "loras", None)
    loaded = set(adapters.loaded()) if adapters is not None else None
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


def warn_missing_dirs(settings: Settings) -> None:
    """Start-up: a configured LORA_DIRS folder that does not exist is a warning."""
    explicit = "lora_dirs" in settings.model_fields_set
    for folder in settings.lora_dirs:
        if not folder.is_dir():
            if explicit:
                log.warning("SDXL_MCP_LORA_DIRS: %s does not exist (no LoRAs from it)", folder)
            else:
                log.info("No LoRA folder at %s (SDXL_MCP_LORA_DIRS)", folder)
