"""The resident engine's public parts, as its helpers (edits, batches) use them.

``SDXLEngine`` implements this protocol; ``engine.edit`` and ``engine.batch``
take it instead of the class, so they use nothing private and import nothing
that imports them back.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from PIL import Image

from sdxl_mcp.backend.base import CancelToken, EngineOutput, ProgressCallback
from sdxl_mcp.schemas import GenerationRequest
from sdxl_mcp.settings import Settings

if TYPE_CHECKING:
    import torch

    from sdxl_mcp.engine.lora import LoraAdapters
    from sdxl_mcp.engine.precision import PrecisionDecision

T = TypeVar("T")


class ResidentEngine(Protocol):
    """What an edit or a batch needs of the loaded engine."""

    settings: Settings
    #: One generation at a time: diffusers pipelines are not thread-safe.
    generate_lock: threading.Lock
    loras: LoraAdapters
    #: A1111's AutoV2 hash of a single-file base checkpoint (None: a folder or hub id).
    model_hash: str | None
    #: The base model in use: what was loaded (a path, hub id or tiny-random).
    model_ref: str

    @property
    def base(self) -> Any: ...

    @property
    def refiner(self) -> Any: ...

    @property
    def decision(self) -> PrecisionDecision: ...

    def load(self) -> None: ...

    def sync(self) -> None: ...

    def use_model(self, name: str | None, on_progress: ProgressCallback | None,
                  total_steps: int) -> float: ...

    def reload_if_unloaded(self, on_progress: ProgressCallback | None,
                           total_steps: int) -> float: ...

    @property
    def state(self) -> str: ...

    def with_oom_retry(self, stage: str, run: Callable[[], T],
                       before_retry: Callable[[], None] | None = None) -> T: ...

    def decode(self, latents: torch.Tensor, high_quality: bool) -> Image.Image: ...

    def generate(self, request: GenerationRequest, seed: int,
                 on_progress: ProgressCallback | None = None,
                 cancel: CancelToken | None = None) -> EngineOutput: ...

    def generate_images(self, request: GenerationRequest, seed: int,
                        on_progress: ProgressCallback | None, cancel: CancelToken,
                        timings: dict[str, float], seeds: list[int] | None = None,
                        ) -> list[EngineOutput]: ...
