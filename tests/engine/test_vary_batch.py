"""Variations batched in one pipeline call (``engine.batch``), forced on the CPU.

On a CPU the engine runs variations one by one (exact equality with separate
generations, checked in test_vary); here ``batched=True`` (or
SDXL_MCP_BATCH_VARIATIONS=on) drives the GPU's path on the tiny engine: one
call, ``num_images_per_prompt`` with a generator per seed. Its images are
compared with separate generations within a tolerance (batched kernels may sum
in another order), never bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from sdxl_mcp.backend.base import CancelToken, EngineOutput, ProgressEvent
from sdxl_mcp.engine.batch import batches
from sdxl_mcp.errors import Cancelled, OutOfMemory
from sdxl_mcp.schemas import GenerationRequest, VaryRequest
from sdxl_mcp.service.generate import generate as generate_image
from sdxl_mcp.service.vary import vary as vary_image

SMALL = {"width": 256, "height": 256, "num_inference_steps": 20}
#: Mean absolute difference (0-255) allowed between a batched image and its single run.
TOLERANCE = 1.0


def request(**fields: Any) -> GenerationRequest:
    return GenerationRequest(**{"prompt": "a lighthouse at dusk", **SMALL, **fields})


def pixels(output: EngineOutput) -> np.ndarray:
    return np.asarray(output.image, dtype=np.float64)


@pytest.fixture
def engine(tiny_engine: Any) -> Iterator[Any]:
    """The shared tiny engine, its settings restored after the test."""
    settings = tiny_engine.settings
    yield tiny_engine
    tiny_engine.settings = settings


@pytest.mark.parametrize(("setting", "device", "count", "expected"), [
    ("auto", "cuda", 4, True), ("auto", "cuda:1", 2, True), ("auto", "cpu", 4, False),
    ("auto", "mps", 4, False), ("auto", "cuda", 1, False), ("on", "cpu", 2, True),
    ("on", "cpu", 1, False), ("off", "cuda", 4, False),
])
def test_the_batching_rule(setting: str, device: str, count: int, expected: bool) -> None:
    assert batches(setting, device, count) is expected


def test_a_batch_gives_each_seed_its_own_image_close_to_its_separate_generation(
    engine: Any,
) -> None:
    events: list[ProgressEvent] = []
    ready: list[tuple[int, int]] = []
    outputs = engine.generate_batch(request(), [41, 42], on_progress=events.append,
                                    on_output=lambda i, out: ready.append((i, out.seed)),
                                    batched=True)
    singles = [engine.generate(request(seed=s), s) for s in (41, 42)]
    assert [o.seed for o in outputs] == [41, 42] and ready == [(0, 41), (1, 42)]
    for batched, single in zip(outputs, singles, strict=True):
        assert batched.image.size == (256, 256)
        assert np.abs(pixels(batched) - pixels(single)).mean() <= TOLERANCE
        assert (batched.steps_base, batched.steps_refiner, batched.refined) == (
            single.steps_base, single.steps_refiner, single.refined)
        assert any("batched" in note for note in batched.notes)
    # The two seeds are different images (not one image twice).
    assert np.abs(pixels(outputs[0]) - pixels(outputs[1])).mean() > 10 * TOLERANCE
    # Progress spans both images: image-steps, up to twice one image's steps.
    per_image = singles[0].steps_base + singles[0].steps_refiner
    assert {e.total for e in events} == {2 * per_image} and events[-1].done == 2 * per_image
    assert [e.done for e in events] == sorted({e.done for e in events})
    assert {e.stage for e in events} == {"base", "refiner"}


def test_one_by_one_images_equal_separate_generations_exactly(engine: Any) -> None:
    events: list[ProgressEvent] = []
    outputs = engine.generate_batch(request(use_refinement=False), [7, 8],
                                    on_progress=events.append, batched=False)
    for output in outputs:
        single = engine.generate(request(use_refinement=False, seed=output.seed), output.seed)
        assert np.array_equal(pixels(output), pixels(single))
    assert {e.total for e in events} == {40} and events[-1].done == 40


def test_a_cancelled_batch_stops_within_a_step_and_the_engine_stays_usable(
    engine: Any,
) -> None:
    token = CancelToken()
    events: list[ProgressEvent] = []

    def on_progress(event: ProgressEvent) -> None:
        events.append(event)
        token.cancel()

    kept: list[int] = []
    with pytest.raises(Cancelled):
        engine.generate_batch(request(), [1, 2], on_progress=on_progress, cancel=token,
                              on_output=lambda i, out: kept.append(i), batched=True)
    assert len(events) == 1 and kept == []  # a batch's images finish together
    assert engine.generate(request(seed=3), 3).image.size == (256, 256)


def test_a_batch_out_of_memory_runs_the_images_one_by_one(
    engine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = engine.generate_images

    def no_room_for_a_batch(*args: Any, **kwargs: Any) -> list[EngineOutput]:
        if kwargs.get("seeds") or len(args) > 5:
            raise OutOfMemory("The cpu ran out of memory in the base stage.")
        return list(real(*args, **kwargs))

    monkeypatch.setattr(engine, "generate_images", no_room_for_a_batch)
    events: list[ProgressEvent] = []
    outputs = engine.generate_batch(request(use_refinement=False), [5, 6],
                                    on_progress=events.append, batched=True)
    assert [o.seed for o in outputs] == [5, 6]
    assert all(any("one by one" in n for n in o.notes) for o in outputs)
    assert [e.done for e in events] == list(range(1, 41))


async def test_vary_image_batches_when_the_setting_says_on(
    make_settings: Callable[..., Any], engine: Any
) -> None:
    from sdxl_mcp.service.facade import ImageService

    engine.settings = engine.settings.model_copy(update={"batch_variations": "on"})
    events: list[ProgressEvent] = []
    async with ImageService(make_settings(), backend=engine) as svc:
        source = await generate_image(svc, request(seed=1, use_refinement=False))
        varied = await vary_image(svc, VaryRequest(image=source.image_id or "", count=2, seed=10),
                                on_progress=events.append)
    assert varied.status == "succeeded"
    assert [r.seed for r in varied.results] == [10, 11]
    assert all(r.path and "batched" in r.message for r in varied.results)
    assert {e.total for e in events} == {40} and events[-1].done == 40
