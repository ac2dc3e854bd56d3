"""The precision policy: hardware facts + model size + settings -> device and dtype.

A pure function (no torch), so every rule is table-tested. It follows the
source guide (fp32 on cards with at least FP32_MIN_VRAM_GB) but only when the
fp32 weights of everything we load, plus a working margin, actually fit: the
guide's "17 GB peak with both models" is wrong (base + refiner in fp32 is
~22.9 GB of weights), so a 24 GB card gets half precision with the refiner.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

DeviceKind = Literal["cuda", "mps", "cpu"]
DType = Literal["fp32", "fp16", "bf16"]
Requested = Literal["auto", "fp32", "fp16", "bf16"]

GIB = 1024**3
BYTES_PER_PARAM: dict[str, int] = {"fp32": 4, "fp16": 2, "bf16": 2}

#: Memory needed beyond the weights while generating at 1024² with
#: classifier-free guidance: UNet activations (batch 2) and the fp32 VAE decode.
WORKING_MARGIN_BYTES = 3 * GIB


@dataclass(frozen=True)
class HardwareFacts:
    """What the precision policy needs to know about the chosen device."""

    kind: DeviceKind
    device: str  # "cuda:0", "mps", "cpu"
    name: str = ""
    total_memory_bytes: int | None = None
    supports_bf16: bool = False


@dataclass(frozen=True)
class PrecisionDecision:
    device: str
    dtype: DType
    reason: str
    warning: str | None = None
    weight_bytes: int = 0  # weights of the models to load, in the chosen dtype

    @property
    def summary(self) -> str:
        return self.reason if not self.warning else f"{self.reason} WARNING: {self.warning}"


def _gb(n: float) -> str:
    return f"{n / GIB:.1f} GB"


def decide_precision(
    hardware: HardwareFacts,
    param_count: int,
    requested: Requested = "auto",
    fp32_min_vram_gb: float = 20.0,
) -> PrecisionDecision:
    """Choose the dtype for ``param_count`` parameters (shared parts counted once).

    Memory sizes are GiB, as ``nvidia-smi`` and ``torch.cuda`` report them.
    """
    half: DType = "bf16" if hardware.supports_bf16 else "fp16"
    fp32_bytes = param_count * BYTES_PER_PARAM["fp32"]
    total = hardware.total_memory_bytes

    def fits(dtype: DType) -> bool:
        if total is None:
            return True
        return param_count * BYTES_PER_PARAM[dtype] + WORKING_MARGIN_BYTES <= total

    def decision(dtype: DType, reason: str, warning: str | None = None) -> PrecisionDecision:
        return PrecisionDecision(
            device=hardware.device,
            dtype=dtype,
            reason=reason,
            warning=warning,
            weight_bytes=param_count * BYTES_PER_PARAM[dtype],
        )

    if requested != "auto":
        return decision(
            requested,
            f"Using {requested}: set explicitly by SDXL_MCP_PRECISION.",
            _explicit_warning(hardware, requested, param_count, fits(requested)),
        )

    if hardware.kind == "cpu":
        return decision("fp32", "Using fp32 on CPU: half precision is slow or unsupported there.")
    if hardware.kind == "mps":
        return decision(
            "fp16", "Using fp16 on Apple MPS: fp32 SDXL is slow and memory-hungry there."
        )

    assert total is not None, "CUDA facts always carry the card's total memory"
    need = fp32_bytes + WORKING_MARGIN_BYTES
    if total < fp32_min_vram_gb * GIB:
        return decision(
            half,
            f"Using {half} (half precision): the card has {_gb(total)}, below "
            f"FP32_MIN_VRAM_GB={fp32_min_vram_gb:g}.",
        )
    if need > total:
        return decision(
            half,
            f"Using {half} (half precision): fp32 weights ({_gb(fp32_bytes)}) plus "
            f"{_gb(WORKING_MARGIN_BYTES)} working memory would not fit in {_gb(total)}.",
        )
    return decision(
        "fp32",
        f"Using fp32 (full precision) for best quality: {_gb(fp32_bytes)} of weights plus "
        f"{_gb(WORKING_MARGIN_BYTES)} working memory fit in {_gb(total)}.",
    )


def _explicit_warning(
    hardware: HardwareFacts, dtype: DType, param_count: int, fits: bool
) -> str | None:
    if hardware.kind == "cpu" and dtype != "fp32":
        return f"{dtype} on CPU is slow and some operations are unsupported; use fp32 or auto."
    if dtype == "bf16" and hardware.kind == "cuda" and not hardware.supports_bf16:
        return "this card does not support bf16 natively; use fp16 or auto."
    if not fits:
        need = param_count * BYTES_PER_PARAM[dtype] + WORKING_MARGIN_BYTES
        return (
            f"{dtype} weights plus working memory need about {_gb(need)} but the device has "
            f"{_gb(hardware.total_memory_bytes or 0)}: expect out-of-memory errors; "
            "use SDXL_MCP_PRECISION=auto or a half precision."
        )
    return None
