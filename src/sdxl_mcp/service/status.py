"""GPU and engine status for ``gpu_status`` and ``sdxl-mcp gpu``.

Answers at once and everywhere: with no GPU, no NVML, no engine extra, and
while torch is still importing for a preload (NVML is read without torch, in a
worker thread).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio.to_thread

from sdxl_mcp.backend.factory import nvml_devices, unbuilt_engine_status
from sdxl_mcp.errors import SdxlMcpError
from sdxl_mcp.schemas import GpuStatus
from sdxl_mcp.service.stock import stock_status

if TYPE_CHECKING:
    from sdxl_mcp.service.facade import ImageService


async def gpu_status(service: ImageService, plan: bool = False) -> GpuStatus:
    """At once, even while models load, with no GPU or NVML; ``plan=True`` (``sdxl-mcp
    gpu``) builds the backend if needed and reports its precision decision (no loading).
    """
    try:
        engine = await anyio.to_thread.run_sync(service.engine_status, plan)
    except SdxlMcpError as exc:  # e.g. the engine extra is not installed
        engine = unbuilt_engine_status(service.settings, error=exc.message)
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
            "setting": service.settings.precision,
        },
        engine=engine,
        queue=service.queue_status(),
        last_generation_time=service.jobs.last_generation_s,
        pexels=stock_status(service),
    )
