"""Device facts and GPU status, safe on machines without a GPU or NVML.

torch is imported inside the functions that need it, so ``gpu_status`` can
read NVML while torch is still being imported for a preload.

On a CPU build of torch, ``torch.cuda.get_device_name`` and ``mem_get_info``
raise, and ``pynvml.nvmlInit`` raises ``NVMLError_LibraryNotFound``: every
probe here is guarded and reports what it could not read instead of failing.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from sdxl_mcp.engine.precision import HardwareFacts

log = logging.getLogger(__name__)


def resolve_device(setting: str) -> str:
    """Turn DEVICE (auto, cpu, mps, cuda, cuda:N) into a concrete device string."""
    import torch

    if setting == "auto":
        if torch.cuda.is_available():
            return "cuda:0"
        if torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if setting == "cuda":
        return "cuda:0"
    return setting


def probe_hardware(device: str) -> HardwareFacts:
    """Facts about ``device`` for the precision policy; raises if it is absent."""
    import torch

    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(
                f"SDXL_MCP_DEVICE={device} but CUDA is not available in this torch build "
                f"({torch.__version__}); use auto or cpu."
            )
        index = int(device.split(":")[1]) if ":" in device else 0
        props = torch.cuda.get_device_properties(index)
        return HardwareFacts(
            kind="cuda",
            device=f"cuda:{index}",
            name=props.name,
            total_memory_bytes=int(props.total_memory),
            supports_bf16=bool(torch.cuda.is_bf16_supported()),
        )
    if device == "mps":
        if not torch.backends.mps.is_available():
            raise RuntimeError("SDXL_MCP_DEVICE=mps but MPS is not available; use auto or cpu.")
        return HardwareFacts(kind="mps", device="mps", name="Apple MPS")
    return HardwareFacts(kind="cpu", device="cpu", name="CPU")


def gpu_devices() -> list[dict[str, Any]]:
    """Per-GPU name, memory (MB), temperature, power and utilisation; [] without GPUs."""
    devices = _nvml_devices()
    if devices is not None:
        return devices
    import torch

    out: list[dict[str, Any]] = []
    if not torch.cuda.is_available():
        return out
    for index in range(torch.cuda.device_count()):
        entry: dict[str, Any] = {"index": index, "name": None}
        try:
            entry["name"] = torch.cuda.get_device_name(index)
            free, total = torch.cuda.mem_get_info(index)
            entry.update(
                memory_total_mb=total // 2**20,
                memory_free_mb=free // 2**20,
                memory_used_mb=(total - free) // 2**20,
            )
        except Exception as exc:  # a CPU build or a broken driver
            entry["error"] = str(exc)
        out.append(entry)
    return out


def nvml_devices() -> list[dict[str, Any]]:
    """GPUs as NVML sees them; [] without an NVIDIA driver (no torch needed)."""
    return _nvml_devices() or []


def _nvml_devices() -> list[dict[str, Any]] | None:
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:  # NVMLError_LibraryNotFound and friends: no NVIDIA driver
        return None
    try:
        devices = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
            entry: dict[str, Any] = {
                "index": index,
                "name": _text(pynvml.nvmlDeviceGetName(handle)),
                "memory_total_mb": mem.total // 2**20,
                "memory_used_mb": mem.used // 2**20,
                "memory_free_mb": mem.free // 2**20,
            }
            for key, read in (
                ("temperature_c", lambda h: pynvml.nvmlDeviceGetTemperature(h, 0)),
                ("power_w", lambda h: pynvml.nvmlDeviceGetPowerUsage(h) / 1000.0),
                ("utilization_pct", lambda h: pynvml.nvmlDeviceGetUtilizationRates(h).gpu),
            ):
                try:
                    entry[key] = read(handle)
                except Exception:
                    entry[key] = None
            devices.append(entry)
        return devices
    except Exception as exc:
        log.debug("NVML query failed: %s", exc)
        return None
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def limit_cpu_threads(threads: int) -> None:
    """Cap torch's CPU threads (CPU replicas sharing one machine)."""
    import torch

    torch.set_num_threads(threads)
