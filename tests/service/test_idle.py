"""Idle unload: the models leave memory after SDXL_MCP_KEEP_ALIVE_S, come back for the
next job (with progress saying so), and never while a job runs."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import anyio
import numpy as np
import pytest
from PIL import Image

from sdxl_mcp.backend.base import ProgressEvent
from sdxl_mcp.engine.sdxl import SDXLEngine
from sdxl_mcp.schemas import GenerationRequest
from sdxl_mcp.service.facade import ImageService
from sdxl_mcp.service.generate import generate
from sdxl_mcp.settings import Settings
from tests.fakes import GatedBackend

SMALL = {"width": 256, "height": 256, "num_inference_steps": 20, "use_refinement": False,
         "seed": 5, "reuse": False}


def request() -> GenerationRequest:
    return GenerationRequest(prompt="a lighthouse", **SMALL)


async def wait_for(check: Callable[[], bool], seconds: float = 10.0) -> None:
    with anyio.fail_after(seconds):
        while not check():
            await anyio.sleep(0.05)


async def test_idle_models_are_unloaded_and_the_next_job_loads_them_again(
        make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(keep_alive_s=0.3, refiner_model="", warmup=False)
    engine = SDXLEngine(settings)
    events: list[ProgressEvent] = []
    async with ImageService(settings, backend=engine) as svc:  # type: ignore[arg-type]
        first = await generate(svc, request())
        await wait_for(lambda: engine.state == "unloaded")
        status = svc.engine_status()
        assert status.state == "unloaded" and status.unload_due is None
        assert engine.loaded_models() == {} and engine.models is None
        again = await generate(svc, request(), on_progress=events.append)
    assert again.status == "succeeded" and again.timings.model_load > 0
    assert events[0].stage == "model" and "unloaded while idle" in events[0].message
    same = [np.asarray(Image.open(r.path or "")) for r in (first, again)]
    assert np.array_equal(*same)


async def test_a_keep_alive_of_minus_one_never_unloads(
        make_settings: Callable[..., Settings], tiny_engine: SDXLEngine) -> None:
    settings = make_settings(keep_alive_s=-1)
    async with ImageService(settings, backend=tiny_engine) as svc:  # type: ignore[arg-type]
        await generate(svc, request())
        await anyio.sleep(0.6)
        assert tiny_engine.state == "ready"
        assert svc.engine_status().unload_due is None


async def test_gpu_status_says_when_the_unload_is_due(
        make_settings: Callable[..., Settings], tiny_engine: SDXLEngine) -> None:
    from datetime import UTC, datetime

    settings = make_settings(keep_alive_s=600)
    async with ImageService(settings, backend=tiny_engine) as svc:  # type: ignore[arg-type]
        await generate(svc, request())
        status = svc.engine_status()
    assert status.keep_alive_s == 600 and status.unload_due is not None
    left = (datetime.fromisoformat(status.unload_due) - datetime.now(UTC)).total_seconds()
    assert 590 < left <= 601


class Unloadable(GatedBackend):
    """A fake whose unload is counted, and whose jobs can be held at the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.unloads = 0

    def unload(self) -> bool:
        self.unloads += 1
        return True


async def test_no_unload_while_a_job_runs_or_waits(
        make_settings: Callable[..., Settings]) -> None:
    backend = Unloadable()
    settings = make_settings(keep_alive_s=0)
    async with ImageService(settings, backend=backend) as svc:  # type: ignore[arg-type]
        async with anyio.create_task_group() as tg:
            tg.start_soon(generate, svc, request())
            await anyio.to_thread.run_sync(backend.started.wait, 10)
            await anyio.sleep(0.5)  # the job holds the gate: idle unload must wait
            assert backend.unloads == 0
            backend.gate.set()
        await wait_for(lambda: backend.unloads >= 1)


def test_an_unload_never_interrupts_a_generation(tiny_models: Any) -> None:
    """A thread unloading as fast as it can while generations run: each one finishes,
    loading the models again whenever they were given back."""
    settings = Settings(_env_file=None, base_model="tiny-random", refiner_model="",  # type: ignore[call-arg]
                        preload=False, warmup=False)
    engine = SDXLEngine(settings)
    engine.load()
    stop = threading.Event()
    unloads = 0

    def keep_unloading() -> None:
        nonlocal unloads
        while not stop.is_set():
            unloads += engine.unload()
            time.sleep(0.01)

    worker = threading.Thread(target=keep_unloading)
    worker.start()
    try:
        outputs = [engine.generate(request(), seed=5) for _ in range(3)]
    finally:
        stop.set()
        worker.join()
    assert unloads >= 2
    first = np.asarray(outputs[0].image)
    assert all(np.array_equal(first, np.asarray(o.image)) for o in outputs)


@pytest.mark.parametrize("keep_alive", [0, 0.2])
async def test_a_fake_backend_is_asked_to_unload_once_per_idle_period(
        make_settings: Callable[..., Settings], keep_alive: float) -> None:
    backend = Unloadable()
    backend.gate.set()
    async with ImageService(make_settings(keep_alive_s=keep_alive),
                            backend=backend) as svc:  # type: ignore[arg-type]
        await generate(svc, request())
        await wait_for(lambda: backend.unloads == 1)
        await anyio.sleep(0.3)
    assert backend.unloads == 1  # one try per idle period, not one per tick
