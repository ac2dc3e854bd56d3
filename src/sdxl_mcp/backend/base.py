"""The port: what the service needs from whatever runs generations.

The in-process engine (``engine.sdxl.SDXLEngine``) is the default backend; a
scale-out backend (Ray Serve, ``cluster/``) implements the same protocol, so the
service, the queue and the transports do not change. Torch-free: engine/ and
cluster/ import this module, never the other way round; ``backend.factory``
builds the backend (docs/ARCHITECTURE.md "Layers").
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

from PIL import Image

from sdxl_mcp.errors import SdxlMcpError
from sdxl_mcp.schemas import EditRequest, EngineStateName, EngineStatus, GenerationRequest

if TYPE_CHECKING:
    from sdxl_mcp.settings import Settings

#: ``model``: a base model being switched to (before the denoising stages).
Stage = Literal["base", "refiner", "model"]


def eta_text(seconds: float | None) -> str:
    """``"about 9 s left"`` (``""`` without an estimate)."""
    if seconds is None:
        return ""
    if seconds < 1:
        return "under 1 s left"
    if seconds < 90:
        return f"about {seconds:.0f} s left"
    return f"about {seconds / 60:.0f} min left"


@dataclass(frozen=True)
class ProgressEvent:
    """One finished denoising step; ``done``/``total`` run across both stages.

    ``eta_s``: seconds left, filled in by the job queue (``service.eta``) once a few steps ran."""

    stage: Stage
    step: int
    stage_total: int
    done: int
    total: int
    eta_s: float | None = None
    #: Stage ``model``: the base model being loaded.
    model: str | None = None

    @property
    def message(self) -> str:
        """``"SDXL base 12/40, about 9 s left"`` (no estimate yet: no tail)."""
        if self.stage == "model":
            return f"loading {self.model}"
        name = "SDXL base" if self.stage == "base" else "SDXL refiner"
        left = eta_text(self.eta_s)
        return f"{name} {self.step}/{self.stage_total}" + (f", {left}" if left else "")


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
    #: A1111's AutoV2 hash of a single-file base checkpoint (None: a folder or hub id).
    model_hash: str | None = None
    #: The sampler that ran, by its A1111 name.
    sampler: str = "Euler"
    notes: list[str] = field(default_factory=list)
    #: CLIP tokens of the prompts as encoded, without BOS/EOS (None: not counted).
    prompt_tokens: int | None = None
    negative_prompt_tokens: int | None = None


class Backend(Protocol):
    """What the service needs from a generation backend."""

    #: Generations it runs at once (1 locally, REPLICAS on Ray): the service's slots.
    capacity: int

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

    def generate_batch(
        self,
        request: GenerationRequest,
        seeds: Sequence[int],
        on_progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
        on_output: Callable[[int, EngineOutput], None] | None = None,
    ) -> list[EngineOutput]:
        """``request`` once per seed (blocking), each image equal to ``generate`` with its
        seed (up to GPU numerics when batched); ``on_output(index, output)`` as each is
        ready; progress across all of them (``sdxl_mcp.backend.batching``)."""
        ...

    def edit(
        self,
        request: EditRequest,
        seed: int,
        source: Image.Image,
        mask: Image.Image | None = None,
        on_progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> EngineOutput:
        """Run one edit (blocking): image-to-image, or inpainting where ``mask`` is white.
        ``source`` and ``mask`` are already checked by the service (size, aspect, content)."""
        ...

    def loaded_loras(self) -> list[str] | None:
        """Names of the LoRA adapters the backend holds; None when it cannot say (Ray)."""
        ...

    def unload(self) -> bool:
        """Give the models' memory back (device and RAM) between jobs; the next job
        loads them again. False when there was nothing to unload or the backend
        cannot (Ray replicas keep theirs)."""
        ...

    def loaded_models(self) -> dict[str, str] | None:
        """Base model name -> ``device`` or ``cpu`` for the models the backend holds;
        None when it cannot say (Ray)."""
        ...

    def status(self, plan: bool = False) -> EngineStatus:
        """Engine state for ``gpu_status``. ``plan=True``: a backend that has not
        loaded yet works out its load plan (device, precision) without loading."""
        ...

    @property
    def state(self) -> EngineStateName: ...


class LoadOnce:
    """A backend's load state: load once, thread-safe; later calls return or re-raise.

    ``load(work, failure)`` runs ``work`` unless already loaded; an exception is
    turned by ``failure`` into the ``SdxlMcpError`` to raise (and remember as
    ``error``). A failed load may be retried by calling again.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.state: EngineStateName = "not_loaded"
        self.error: str | None = None
        self.load_time_s: float | None = None

    def load(
        self, work: Callable[[], None], failure: Callable[[Exception], SdxlMcpError]
    ) -> None:
        with self._lock:
            if self.state == "ready":
                return
            self.state, self.error = "loading", None
            started = time.perf_counter()
            try:
                work()
            except Exception as exc:
                error = failure(exc)
                self.state, self.error = "failed", error.message
                if error is exc:
                    raise
                raise error from exc
            self.load_time_s = round(time.perf_counter() - started, 3)
            self.state = "ready"

    def reset(self) -> None:
        self.state, self.error = "not_loaded", None

    def unloaded(self) -> None:
        """The models were given back: the next ``load`` loads them again."""
        with self._lock:
            self.state, self.error = "unloaded", None


def backend_capacity(settings: Settings) -> int:
    """Slots the configured backend will offer, known before it is built."""
    return settings.replicas if settings.backend == "ray" else 1
