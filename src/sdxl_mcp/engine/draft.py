"""Draft mode's scheduler and distilled LoRA (``quality: "draft"``).

Guarantees (docs/LORA.md):

* :func:`draft_scheduler` builds the scheduler ``SDXL_MCP_DRAFT_SCHEDULER``
  names from the base's scheduler config: ``euler-trailing`` (Euler with
  trailing timestep spacing, what SDXL-Lightning and Hyper-SD ask for),
  ``lcm`` or ``tcd``;
* :func:`swapped_scheduler` sets it on the pipeline for one request and puts
  the resident scheduler back afterwards, whatever happens; it runs under the
  engine's lock, so no other request sees the draft scheduler (the edit
  pipelines keep their own reference to the resident one);
* :func:`load_draft_lora` loads ``SDXL_MCP_DRAFT_LORA`` (file, folder or hub
  id) as the adapter :data:`DRAFT_ADAPTER`; a failure is a
  ``ModelUnavailable`` naming the setting.

The guidance the draft request carries (SDXL_MCP_DRAFT_GUIDANCE, 1.0 by
default) makes diffusers skip the classifier-free-guidance batch (it does so
for ``guidance_scale <= 1``), halving each step.
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
