"""Reuse keys: when an earlier image answers a request exactly, without a generation.

Two requests share a key only when everything that changes the pixels is the
same: every pixel-changing request field (seed included; an explicit seed is
required; LoRAs by name and weight), the base, refiner and VAE models (with
quality "draft", the draft LoRA and scheduler), and the precision and device
settings. Fields that do not change the pixels (``use_pexels``,
``use_generation``, ``reuse``, the ``quality`` and ``aspect_ratio`` shorthands,
which are already expanded into the fields they set) are left out. Pure.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sdxl_mcp.schemas import GenerationRequest
from sdxl_mcp.settings import Settings

#: Request fields that never change the pixels of a generation.
NOT_PIXELS = frozenset({"use_pexels", "use_generation", "reuse", "quality", "aspect_ratio"})
#: Request fields added after catalogs existed: left out of the key while null.
ADDED_LATER = ("sampler", "model")


def request_key(request: GenerationRequest, settings: Settings) -> str | None:
    """sha256 of the canonical JSON of what makes the pixels; None without a seed."""
    if request.seed is None:
        return None
    fields = request.model_dump(mode="json", exclude=set(NOT_PIXELS))
    for name in ADDED_LATER:  # at their default, keys made before they existed still match
        if fields.get(name) is None:
            fields.pop(name, None)
    fields["models"] = {
        "base": settings.base_model,
        "refiner": settings.refiner_model if request.use_refinement else None,
        "vae": settings.vae_model,
        "precision": settings.precision,
        "device": settings.device,
    }
    if request.quality == "draft":  # the draft LoRA and scheduler make the pixels too
        fields["models"]["draft"] = [settings.draft_lora, settings.draft_scheduler]
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def same_precision(stored: dict[str, Any], precision: str | None) -> bool:
    """Whether a stored Result was made at ``precision`` (unknown: trust the key)."""
    return precision is None or stored.get("precision") in (None, precision)
