"""Device memory and the CUDA speed settings, shared by the engine and the benchmark;
the engine's decoded-pixel check.

``speed_up_unet`` is what the engine's preload applies and what
``sdxl-mcp bench --full-size`` measures, so the benchmark times exactly what the
settings do.
"""

from __future__ import annotations

import gc
from typing import Any

import torch

TORCH_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    # MPS and some CUDA paths raise plain RuntimeErrors.
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def free_device_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if torch.backends.mps.is_available():
        torch.mps.empty_cache()


def bad_pixels(pixels: torch.Tensor) -> str | None:
    """What is wrong with a VAE decode's pixels (NaN, all black), or None."""
    if not torch.isfinite(pixels).all():
        return "NaN/infinite pixels"
    if float((pixels / 2 + 0.5).clamp(0, 1).max()) < 1 / 255:
        return "an all-black image"
    return None


def speed_up_unet(unet: Any, *, channels_last: bool, fuse_qkv: bool, compile: bool) -> Any:
    """Apply the GPU speed settings to one UNet; returns the (maybe compiled) module.

    The engine's preload and ``sdxl-mcp bench --full-size`` both call this, so the
    benchmark measures exactly what the settings do.
    """
    if channels_last:
        unet.to(memory_format=torch.channels_last)
    if fuse_qkv:
        unet.fuse_qkv_projections()
    if compile:
        unet = torch.compile(unet, fullgraph=False)
    return unet
