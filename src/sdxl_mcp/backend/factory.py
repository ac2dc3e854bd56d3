"""Building the backend the settings name: the only module outside engine/ and cluster/
that imports them (docs/ARCHITECTURE.md "Layers").

Nothing here imports torch or ray at import time: the engine and the cluster are
imported when first needed, and a light install without the engine extra gets
one sentence naming the extra instead of a ``ModuleNotFoundError``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sdxl_mcp.backend.base import Backend
from sdxl_mcp.errors import ModelUnavailable
from sdxl_mcp.schemas import EngineStatus

if TYPE_CHECKING:
    from sdxl_mcp.settings import Settings


#: What a light install (no torch) says, at start-up and on every generation.
ENGINE_EXTRA_MISSING = (
    "Image generation needs the engine extra, which is not installed: run "
    "pip install 'sdxl-mcp[engine]' (on a GPU, install the CUDA build of torch first)."
)
RAY_EXTRA_MISSING = (
    "SDXL_MCP_BACKEND=ray needs the ray extra, which is not installed: run "
    "pip install 'sdxl-mcp[ray]'."
)
_ENGINE_MODULES = ("torch", "diffusers", "transformers", "accelerate", "safetensors")


def engine_installed() -> bool:
    """Whether the engine extra's packages are importable (imports none of them)."""
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in _ENGINE_MODULES)


def make_backend(settings: Settings) -> Backend:
    """The backend ``settings.backend`` names; blocking (imports torch or ray).

    A missing extra is a :class:`ModelUnavailable` naming the extra to install.
    """
    if settings.backend == "ray":
        try:
            from sdxl_mcp.cluster.ray_backend import RayBackend
        except ImportError as exc:
            raise ModelUnavailable(RAY_EXTRA_MISSING) from exc
        return RayBackend(settings)
    if not engine_installed():
        raise ModelUnavailable(ENGINE_EXTRA_MISSING)
    try:
        from sdxl_mcp.engine.sdxl import SDXLEngine
    except ImportError as exc:  # installed but broken (e.g. a torch the others reject)
        raise ModelUnavailable(
            f"The engine extra could not be imported ({exc}); reinstall it with "
            "pip install 'sdxl-mcp[engine]'."
        ) from None
    return SDXLEngine(settings)


def nvml_devices() -> list[dict[str, Any]]:
    """GPUs as NVML sees them ([] without a driver or without the engine extra)."""
    try:
        from sdxl_mcp.engine.gpu import nvml_devices as read
    except ImportError:
        return []
    return read()


def write_tiny_models(directory: Path) -> tuple[Path, Path]:
    """``sdxl-mcp make-tiny-models``: tiny random-weight SDXL base and refiner folders."""
    if not engine_installed():
        raise ModelUnavailable(ENGINE_EXTRA_MISSING)
    from sdxl_mcp.engine.tiny import write_tiny_models as write

    return write(directory)


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
