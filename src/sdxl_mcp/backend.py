"""The small interface between the service and whatever runs generations.

The in-process engine (``engine.sdxl.SDXLEngine``) is the default backend; a
scale-out backend (Ray Serve) implements the same protocol, so the service,
queue and transports do not change. Nothing here imports torch.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from PIL import Image

from sdxl_mcp.schemas import GenerationRequest

Stage = Literal["base", "refiner"]
EngineStateName = Literal["not_loaded", "loading", "ready", "failed"]


@dataclass(frozen=True)
class ProgressEvent:
    """One finished denoising step; ``done``/``total`` run across both stages."""

    stage: Stage
    step: int
    stage_total: int
    done: int
    total: int

    @property
    def message(self) -> str:
        name = "SDXL base" if self.stage == "base" else "SDXL refiner"
        return f"{name} step {self.step}/{self.stage_total}"


ProgressCallback = Callable[[ProgressEvent], None]


class CancelToken:
    """A thread-safe flag the denoising loop checks after every step."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = "cancelled"

    def cancel(self, reason: str = "cancelled") -> None:
        if not self._event.is_set():
            self.reason = reason
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


@dataclass
class EngineOutput:
    """What a backend returns for one generation (before storage)."""

    image: Image.Image
    seed: int
    steps_base: int
    steps_refiner: int
    refined: bool
    refiner_error: str | None
    precision: str
    device: str
    base_model: str
    refiner_model: str | None
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


class Backend(Protocol):
    """What the service needs from a generation backend."""

    def load(self) -> None:
        """Load the models (blocking); safe to call again once loaded."""

    def generate(
        self,
        request: GenerationRequest,
        seed: int,
        on_progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> EngineOutput:
        """Run one generation (blocking); raises ``SdxlMcpError`` subclasses."""
        ...

    def status(self) -> dict[str, Any]:
        """Engine state for ``gpu_status``."""
        ...

    @property
    def state(self) -> EngineStateName: ...
