"""Models by name: a request's ``model`` admitted with its defaults, and ``list_models``.

Guarantees (tests/service/test_models.py; docs/MODELS.md):

* :func:`admit_model` turns ``model`` into the request to run: an unknown
  name is a ``BadRequest`` listing the models; BASE_MODEL's own name is the
  same as no ``model``; the model's (or BASE_MODEL's) ``<name>.json`` fills the fields the
  request did not set (directly or through ``quality``); a model other than
  BASE_MODEL skips the refiner unless the request or its defaults ask for it
  (the stock refiner is trained on the stock base's latents);
* :func:`list_models` lists the models (BASE_MODEL first), the LoRAs and the
  styles, with what the built backend has loaded; it loads nothing and hashes
  nothing (a checkpoint's hash is known once it has been loaded).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import anyio.to_thread

from sdxl_mcp.library.checkpoints import cached_model_hash
from sdxl_mcp.library.models import ModelEntry, default_model, find_model, model_defaults
from sdxl_mcp.library.models import model_entries as entries_of
from sdxl_mcp.schemas import EditRequest, GenerationRequest
from sdxl_mcp.schemas.models import ModelInfo, ModelList
from sdxl_mcp.service.loras import lora_list
from sdxl_mcp.settings import Settings

if TYPE_CHECKING:
    from sdxl_mcp.backend.base import Backend
    from sdxl_mcp.service.facade import ImageService

R = TypeVar("R", GenerationRequest, EditRequest)

__all__ = ["admit_model", "list_models", "model_list"]


def admit_model(settings: Settings, request: R) -> R:
    """The request with its model resolved and that model's defaults (see the guarantees)."""
    entry = (default_model(settings) if request.model is None
             else find_model(settings, request.model))
    defaults = model_defaults(entry).model_dump(exclude_none=True)
    given = request.model_fields_set
    if isinstance(request, GenerationRequest) and request.quality == "draft":
        defaults.pop("sampler", None)  # draft runs its own scheduler
    update: dict[str, Any] = {name: value for name, value in defaults.items()
                              if name not in given and name in type(request).model_fields}
    if entry.default:
        update["model"] = None  # BASE_MODEL by its own name is the default
    elif "use_refinement" not in given and "use_refinement" not in update:
        update["use_refinement"] = False
    return request.model_copy(update=update) if update or request.model else request


async def list_models(service: ImageService) -> ModelList:
    """The ``list_models`` use case (blocking work in a thread)."""
    return await anyio.to_thread.run_sync(model_list, service.settings, service.built_backend)


def model_list(settings: Settings, backend: Backend | None) -> ModelList:
    """Models, LoRAs and styles as ``list_models`` returns them."""
    where = backend.loaded_models() if backend is not None else None
    if backend is None and settings.backend == "local":
        where = {}  # no engine yet: nothing is loaded
    stock = default_model(settings)
    entries = [stock, *(e for e in entries_of(settings).values() if e.name != stock.name)]
    loras = lora_list(settings, backend)
    return ModelList(
        models=[_info(entry, where) for entry in entries],
        loras=loras.loras,
        styles=[],
        model_dirs=[str(d) for d in settings.model_dirs],
        lora_dirs=loras.dirs,
    )


def _info(entry: ModelEntry, where: dict[str, str] | None) -> ModelInfo:
    size = None
    path = Path(entry.ref)
    if entry.kind == "checkpoint":
        size = path.stat().st_size if path.is_file() else None
    elif entry.kind == "diffusers" and path.is_dir():
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    try:
        defaults = model_defaults(entry).model_dump(exclude_none=True) or None
    except Exception:  # a bad defaults file is reported when the model is asked for
        defaults = None
    return ModelInfo(
        name=entry.name, kind=entry.kind, default=entry.default, defaults=defaults,
        hash=cached_model_hash(path) if entry.kind == "checkpoint" else None,
        size_bytes=size, loaded=None if where is None else entry.name in where,
    )
