"""Base models by name on one engine: one on the device, a few more kept in CPU RAM.

Guarantees (tests/engine/test_models.py; docs/MODELS.md):

* :meth:`BaseModels.use` makes the named base the one on the device: the
  current one stays if it is that model; otherwise the current base is parked
  in CPU RAM and the named one is taken from the CPU cache or loaded from disk,
  each placed and parked by the engine's memory tier (``engine.offload``);
* at most ``capacity`` parked bases are kept; the least recently used is
  dropped first (the stock base is never dropped: the refiner shares its parts);
* the switch is reported as a progress event (stage ``model``: "loading
  <name>") and its seconds returned, so a job counts it in ``model_load``;
* a model that fails to load leaves the current base on the device and in use.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from sdxl_mcp.backend.base import ProgressCallback, ProgressEvent
from sdxl_mcp.engine.devices import free_device_memory

log = logging.getLogger(__name__)



class BaseModels:
    """The resident base and the parked ones of one engine (``SDXLEngine.models``).

    ``place(pipe)`` puts a base on the device as the engine's memory tier says;
    ``park(pipe, shared_with_refiner)`` takes it off into CPU RAM
    (``engine.offload.place_base`` / ``park_base``).
    """

    def __init__(self, stock_name: str, stock: Any, device: str, capacity: int,
                 place: Callable[[Any], None], park: Callable[[Any, bool], None]) -> None:
        self.stock_name = stock_name
        self.device = device
        self.capacity = capacity
        self.current_name = stock_name
        self.current = stock
        self._parked: OrderedDict[str, Any] = OrderedDict()
        self._stock = stock
        self._place = place
        self._park_pipe = park

    @property
    def stock(self) -> Any:
        """The BASE_MODEL pipeline (the refiner shares its second text encoder and VAE)."""
        return self._stock

    def loaded(self) -> dict[str, str]:
        """Model name -> where it is: ``device`` or ``cpu``."""
        return {self.current_name: "device", **dict.fromkeys(self._parked, "cpu")}

    def use(self, name: str, load: Callable[[], Any], on_progress: ProgressCallback | None,
            total_steps: int) -> float:
        """Make ``name`` the base on the device (see the guarantees); seconds it took."""
        if name == self.current_name:
            return 0.0
        started = time.perf_counter()
        if on_progress is not None:
            on_progress(ProgressEvent(stage="model", step=0, stage_total=0, done=0,
                                      total=total_steps, model=name))
        parked = self._parked.pop(name, None)
        previous, previous_name = self.current, self.current_name
        self._park(previous, previous_name)
        try:
            if parked is not None:
                log.info("Switching to %s (kept in CPU RAM)", name)
                pipe = parked
            else:
                log.info("Switching to %s (loading it from disk)", name)
                pipe = load()
            self._place(pipe)
        except BaseException:
            self._parked.pop(previous_name, None)
            self._place(previous)  # the previous base is still the one in use
            if parked is not None:
                self._parked[name] = parked
            raise
        self.current, self.current_name = pipe, name
        self._trim()
        seconds = time.perf_counter() - started
        log.info("Base model %s in use after %.2f s", name, seconds)
        return seconds

    def _park(self, pipe: Any, name: str) -> None:
        self._park_pipe(pipe, pipe is self._stock)
        self._parked[name] = pipe
        self._parked.move_to_end(name)
        free_device_memory()

    def _trim(self) -> None:
        while len(self._parked) > self.capacity:
            victim = next((n for n in self._parked if self._parked[n] is not self._stock), None)
            if victim is None:
                break
            log.info("Dropping %s from CPU RAM (SDXL_MCP_MODEL_CACHE=%d)", victim, self.capacity)
            del self._parked[victim]
