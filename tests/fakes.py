"""Test doubles at the service's backend seam (the engine's interface)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from PIL import Image

from sdxl_mcp.backend.base import CancelToken, EngineOutput, ProgressEvent
from sdxl_mcp.backend.batching import OutputCallback, one_by_one
from sdxl_mcp.errors import Cancelled
from sdxl_mcp.schemas import EditRequest, EngineStateName, EngineStatus, GenerationRequest


def engine_output(image: Image.Image, **fields: Any) -> EngineOutput:
    """What a backend hands back for ``image``: an fp32 CPU base-only run of the "fake"
    model unless ``fields`` say otherwise."""
    values: dict[str, Any] = {
        "image": image, "seed": 1, "steps_base": 20, "steps_refiner": 0, "refined": False,
        "refiner_error": None, "precision": "fp32", "device": "cpu", "base_model": "fake",
        "refiner_model": None}
    return EngineOutput(**{**values, **fields})


class GatedBackend:
    """Generations (and optionally loading) wait until the test opens a gate.

    Honours the cancel token every 10 ms, like the real engine does every step.
    """

    capacity = 1

    def __init__(self, *, gate_open: bool = False, load_gate_open: bool = True) -> None:
        self.gate = threading.Event()
        self.load_gate = threading.Event()
        if gate_open:
            self.gate.set()
        if load_gate_open:
            self.load_gate.set()
        self.started = threading.Event()
        self.cancelled = threading.Event()
        self.calls = 0
        self.edits: list[tuple[EditRequest, tuple[int, int], tuple[int, int] | None]] = []
        self._state: EngineStateName = "not_loaded"

    @property
    def state(self) -> EngineStateName:
        return self._state

    def load(self) -> None:
        if self._state == "ready":
            return
        self._state = "loading"
        self.load_gate.wait()
        self._state = "ready"

    def status(self, plan: bool = False) -> EngineStatus:
        return EngineStatus(state=self._state, device="cpu", dtype="fp32")

    def loaded_loras(self) -> None:
        return None  # like Ray: the fake cannot say

    def loaded_models(self) -> None:
        return None

    def unload(self) -> bool:
        return False

    def generate(
        self, req: GenerationRequest, seed: int, on_progress: Any = None,
        cancel: CancelToken | None = None,
    ) -> EngineOutput:
        self.load()
        self.calls += 1
        self.started.set()
        step = 0
        while not self.gate.wait(0.01):
            if cancel is not None and cancel.cancelled:
                self.cancelled.set()
                raise Cancelled(f"Generation {cancel.reason} during the base stage.")
        for step in range(1, 4):
            if on_progress:
                on_progress(ProgressEvent("base", step, 3, step, 3))
        return engine_output(
            Image.new("RGB", (req.width, req.height), (seed % 256, 100, 150)), seed=seed,
            steps_base=step, timings={"base": 0.01})

    def generate_batch(
        self, req: GenerationRequest, seeds: Sequence[int], on_progress: Any = None,
        cancel: CancelToken | None = None, on_output: OutputCallback | None = None,
    ) -> list[EngineOutput]:
        """One by one through ``generate`` (its gate, cancel and any override apply)."""
        return one_by_one(self.generate, req, seeds, on_progress, cancel, on_output)

    def edit(
        self, req: EditRequest, seed: int, source: Image.Image, mask: Image.Image | None = None,
        on_progress: Any = None, cancel: CancelToken | None = None,
    ) -> EngineOutput:
        """Like ``generate``, at the source's size (records what it was given)."""
        self.edits.append((req, source.size, None if mask is None else mask.size))
        size_request = GenerationRequest(prompt=req.prompt, width=256, height=256)
        out = self.generate(size_request, seed, on_progress, cancel)
        out.image = Image.new("RGB", source.size, (seed % 256, 100, 150))
        return out


class RecordingBackend(GatedBackend):
    """The gated fake that records every generation, with ``passes`` free of the gate."""

    def __init__(self, passes: int = 1000) -> None:
        super().__init__()
        self.passes = passes
        self.requests: list[tuple[GenerationRequest, int]] = []

    def generate(self, req: GenerationRequest, seed: int, on_progress: Any = None,
                 cancel: CancelToken | None = None) -> EngineOutput:
        self.requests.append((req, seed))
        if self.passes <= 0:
            return super().generate(req, seed, on_progress, cancel)
        self.passes -= 1
        self.gate.set()
        try:
            return super().generate(req, seed, on_progress, cancel)
        finally:
            self.gate.clear()
