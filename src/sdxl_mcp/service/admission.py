"""What every workflow does to a request before its job: the one admission step.

``admit`` resolves the request's ``model`` and fills that model's defaults
(``service.models``), then checks its LoRA names and resolves draft mode
(``service.loras``), so a refused request never takes a slot. Blocking (it
reads folders and headers): workflows call it in a worker thread.
"""

from __future__ import annotations

from typing import TypeVar

from sdxl_mcp.schemas import EditRequest, GenerationRequest
from sdxl_mcp.service.loras import admit as admit_loras
from sdxl_mcp.service.models import admit_model
from sdxl_mcp.settings import Settings

R = TypeVar("R", GenerationRequest, EditRequest)

__all__ = ["admit"]


def admit(settings: Settings, request: R) -> R:
    """The request to run (the model's defaults applied, LoRAs and draft checked)."""
    if isinstance(request, GenerationRequest) and not request.use_generation:
        return request  # stock only: nothing reaches the engine
    return admit_loras(settings, admit_model(settings, request))
