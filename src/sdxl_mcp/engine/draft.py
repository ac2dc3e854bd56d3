"""Draft mode's scheduler and distilled LoRA (``quality: "draft"``).

Guarantees (docs/LORA.md): :func:`draft_scheduler` builds the scheduler
``SDXL_MCP_DRAFT_SCHEDULER`` names; :func:`swapped_scheduler` sets it for one request under
the engine's lock and puts the resident one back, whatever happens; :func:`load_draft_lora`
loads ``SDXL_MCP_DRAFT_LORA`` as :data:`DRAFT_ADAPTER` or raises ``ModelUnavailable``
(details: docs/ARCHITECTURE.md "Guarantees").
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

from diffusers import EulerDiscreteScheduler, LCMScheduler, TCDScheduler

from sdxl_mcp.errors import BadRequest, ModelUnavailable, first_line
from sdxl_mcp.library.loras import DRAFT_WITHOUT_LORA, draft_source
from sdxl_mcp.settings import Settings

#: The draft LoRA's adapter name (user LoRAs are named ``lora_<hash>``).
DRAFT_ADAPTER = "sdxl_mcp_draft"


def draft_scheduler(kind: str, config: Any) -> Any:
    """A new scheduler of ``kind`` from the resident scheduler's ``config``."""
    if kind == "lcm":
        return LCMScheduler.from_config(config)
    if kind == "tcd":
        return TCDScheduler.from_config(config)
    return EulerDiscreteScheduler.from_config(config, timestep_spacing="trailing")


@contextlib.contextmanager
def swapped_scheduler(pipe: Any, kind: str) -> Iterator[Any]:
    """``pipe`` with the draft scheduler for the block; the resident one after."""
    resident = pipe.scheduler
    pipe.scheduler = draft_scheduler(kind, resident.config)
    try:
        yield pipe.scheduler
    finally:
        pipe.scheduler = resident


def load_draft_lora(pipe: Any, settings: Settings) -> None:
    """Load SDXL_MCP_DRAFT_LORA as :data:`DRAFT_ADAPTER`."""
    if not settings.draft_lora:
        raise BadRequest(DRAFT_WITHOUT_LORA)
    source, weight_name = draft_source(settings.draft_lora)
    try:
        with warnings.catch_warnings():  # peft warns that a model holds several adapters
            warnings.simplefilter("ignore", UserWarning)
            pipe.load_lora_weights(source, weight_name=weight_name, adapter_name=DRAFT_ADAPTER)
    except Exception as exc:
        raise ModelUnavailable(
            f"SDXL_MCP_DRAFT_LORA={settings.draft_lora!r} could not be loaded as an SDXL "
            f"LoRA: {first_line(exc)} Set it to an SDXL-Lightning, Hyper-SD or LCM LoRA file "
            "or hub id."
        ) from None
