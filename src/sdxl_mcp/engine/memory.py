"""The memory tier: how much of SDXL stays on the card, from its memory and the models.

A pure function (no torch), table-tested (tests/engine/test_memory.py; docs/MEMORY.md):

* ``full``: base and refiner resident (the fastest; about 11.5 GB of fp16
  weights for the stock pair, plus working memory);
* ``balanced``: the text encoders and the VAE resident, the two UNets take
  turns on the card (the one not denoising waits in CPU RAM);
* ``low``: diffusers' model CPU offload: one component on the card at a time;
* ``minimal``: UNet and VAE weights stream in layer by layer (as diffusers'
  sequential CPU offload does), the text encoders move whole (slowest; for
  cards under about 6 GB).

``auto`` picks the first tier whose estimated peak (weights on the card in the
decided dtype, working memory at 1024² with classifier-free guidance, the CUDA
context) fits the card's memory; an explicit tier is used as asked, with a
warning when the estimate says it will not fit. Off CUDA (CPU, MPS) the tier is
accepted and reported, and nothing is offloaded: the models already live in RAM.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from sdxl_mcp.engine.precision import BYTES_PER_PARAM, GIB, DType, HardwareFacts

Tier = Literal["full", "balanced", "low", "minimal"]
MemorySetting = Literal["auto", "full", "balanced", "low", "minimal"]
TIERS: tuple[Tier, ...] = ("full", "balanced", "low", "minimal")

#: UNet activations at 1024² with CFG (batch 2, SDPA) in half precision; the VAE
#: decode stays below it when tiled (the lower tiers tile it).
WORKING_BYTES = 2 * GIB
#: The CUDA context, the allocator's slack and cuDNN workspaces.
CONTEXT_BYTES = int(0.8 * GIB)
#: What ``balanced`` keeps resident besides one UNet.
_SMALL_PARTS = ("text_encoder", "text_encoder_2", "vae")


@dataclass(frozen=True)
class MemoryPlan:
    """The tier, why, and the peak each tier would need on this card (bytes)."""

    tier: Tier
    reason: str
    warning: str | None = None
    peaks: Mapping[str, int] | None = None

    @property
    def offloads(self) -> bool:
        return self.tier in ("low", "minimal")


def peak_bytes(tier: Tier, base: Mapping[str, int], refiner: Mapping[str, int] | None,
               dtype: DType) -> int:
    """Estimated peak card memory of ``tier`` (parameter counts per component in)."""
    size = BYTES_PER_PARAM[dtype]
    refiner_unet = (refiner or {}).get("unet", 0)
    small = sum(base.get(part, 0) for part in _SMALL_PARTS)
    if tier == "full":
        weights = sum(base.values()) + refiner_unet
    elif tier == "balanced":
        weights = small + max(base.get("unet", 0), refiner_unet)
    elif tier == "low":
        weights = max([*base.values(), refiner_unet])
    else:  # minimal: one layer at a time, but the text encoder used last stays on the card
        weights = base.get("text_encoder_2", 0) or (refiner or {}).get("text_encoder_2", 0)
    working = WORKING_BYTES * (2 if dtype == "fp32" else 1)
    return weights * size + working + CONTEXT_BYTES


def plan_memory(setting: MemorySetting, hardware: HardwareFacts, dtype: DType,
                base: Mapping[str, int], refiner: Mapping[str, int] | None) -> MemoryPlan:
    """The tier for this card (see the module's rules)."""
    peaks: dict[str, int] = {tier: peak_bytes(tier, base, refiner, dtype) for tier in TIERS}
    if hardware.kind != "cuda":
        tier: Tier = "full" if setting == "auto" else setting
        return MemoryPlan(tier, f"{hardware.kind}: the models live in RAM, nothing to offload "
                          f"(SDXL_MCP_MEMORY={setting} is reported, not applied)", peaks=peaks)
    total = hardware.total_memory_bytes
    if total is None:
        tier = "full" if setting == "auto" else setting
        return MemoryPlan(tier, "the card's memory is unknown, so " + (
            "all models stay resident" if setting == "auto" else f"SDXL_MCP_MEMORY={setting}"),
            peaks=peaks)
    if setting != "auto":
        need = peaks[setting]
        warning = (f"{setting} needs about {_gb(need)} and the card has {_gb(total)}; "
                   "expect out-of-memory errors (try SDXL_MCP_MEMORY=auto)"
                   if need > total else None)
        return MemoryPlan(setting, f"SDXL_MCP_MEMORY={setting}: about {_gb(need)} of the "
                          f"card's {_gb(total)}", warning, peaks)
    for tier in TIERS:
        if peaks[tier] <= total:
            faster = "" if tier == "full" else (
                f" ({TIERS[TIERS.index(tier) - 1]} needs about "
                f"{_gb(peaks[TIERS[TIERS.index(tier) - 1]])})")
            return MemoryPlan(tier, f"auto: {tier} needs about {_gb(peaks[tier])} of the "
                              f"card's {_gb(total)} in {dtype}{faster}", peaks=peaks)
    return MemoryPlan("minimal", f"auto: minimal, the smallest tier, on a {_gb(total)} card",
                      f"even minimal needs about {_gb(peaks['minimal'])}; generation may "
                      "run out of memory", peaks)


def _gb(n: float) -> str:
    return f"{n / GIB:.1f} GB"
