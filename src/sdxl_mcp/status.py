"""GPU and engine status for ``gpu_status`` and ``sdxl-mcp gpu``.

Answers at once and everywhere: with no GPU, no NVML, no engine extra, and
while torch is still importing for a preload (NVML is read without torch, in a
worker thread).
"""

from __future__ import annotations

from typing import Any

import anyio.to_thread

from sdxl_mcp.backend import EngineStatus, nvml_devices
from sdxl_mcp.schemas import GpuStatus
from sdxl_mcp.settings import Settings


def unbuilt_engine_status(
    settings: Settings, *, loading: bool = False, error: str | None = None
) -> EngineStatus:
    """What is known before the backend exists (torch may still be importing)."""
    return EngineStatus(
        state="failed" if error else ("loading" if loading else "not_loaded"),
        error=error,
        backend=settings.backend,
        base_model=settings.base_model,
        refiner_model=settings.refiner_model or None,
        refinement="ENABLED" if settings.refiner_enabled else "DISABLED",
    )


async def gpu_status(
    *,
    engine: EngineStatus,
    precision_setting: str,
    queue: dict[str, Any],
    last_generation_s: float | None,
    pexels: dict[str, Any],
) -> GpuStatus:
    devices = await anyio.to_thread.run_sync(nvml_devices)
    cuda = engine.cuda_available
    if cuda is None and devices:
        cuda = True
    return GpuStatus(
        cuda_available=cuda,
        devices=devices,
        precision={
            "dtype": engine.dtype,
            "device": engine.device,
            "reason": engine.precision_reason,
            "warning": engine.precision_warning,
            "setting": precision_setting,
        },
        engine=engine,
        queue=queue,
        last_generation_time=last_generation_s,
        pexels=pexels,
    )
