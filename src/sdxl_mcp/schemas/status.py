"""What ``gpu_status`` reports (and ``sdxl-mcp gpu`` prints)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
)

# ------------------------------------------------------------------ status
#: ``unloaded``: loaded once, then given back after SDXL_MCP_KEEP_ALIVE_S idle.
EngineStateName = Literal["not_loaded", "loading", "ready", "failed", "unloaded"]


class EngineStatus(BaseModel):
    """Engine state for ``gpu_status``; backends fill what they know.

    ``state`` is always set; the precision fields are the load plan's decision
    (known once the models load, or when a status is asked for ``plan=True``).
    """

    model_config = ConfigDict(extra="forbid")

    state: EngineStateName
    error: str | None = None
    backend: Literal["local", "ray"] = "local"
    base_model: str | None = None
    refiner_model: str | None = None
    refinement: Literal["ENABLED", "DISABLED"] | None = None
    device: str | None = None
    dtype: str | None = None
    precision_reason: str | None = None
    precision_warning: str | None = None
    #: The memory tier (full, balanced, low, minimal) and why (docs/MEMORY.md).
    memory_tier: str | None = None
    memory_reason: str | None = None
    #: SDXL_MCP_KEEP_ALIVE_S, and when the models leave memory if no job comes (UTC).
    keep_alive_s: float | None = None
    unload_due: str | None = None
    parameters: int | None = None
    weights_gb: float | None = None
    load_time_s: float | None = None
    cuda_available: bool | None = None
    # The Ray backend's view of its replicas.
    ray_address: str | None = None
    replicas_wanted: int | None = None
    replica_states: dict[str, Any] | None = None
    replicas: list[dict[str, Any]] | None = None


class GpuStatus(BaseModel):
    """What ``gpu_status`` reports; works with no GPU and no NVML."""

    cuda_available: bool | None = None
    devices: list[dict[str, Any]] = Field(default_factory=list)
    precision: dict[str, Any] = Field(default_factory=dict)
    engine: EngineStatus
    queue: dict[str, Any] = Field(default_factory=dict)
    last_generation_time: float | None = None
    pexels: dict[str, Any] = Field(default_factory=dict)
