"""Samplers by their A1111 names: each runs on the tiny engine, changes the pixels, and
the resident schedulers come back afterwards."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from diffusers import DPMSolverMultistepScheduler, EulerDiscreteScheduler

from sdxl_mcp.backend.base import ProgressEvent
from sdxl_mcp.engine.samplers import SAMPLERS, sampler_scheduler, swapped_samplers
from sdxl_mcp.engine.sdxl import SDXLEngine
from sdxl_mcp.library.infotext import parse_infotext
from sdxl_mcp.schemas import SAMPLER_NAMES, EditRequest, GenerationRequest
from tests.helpers_images import noise

SMALL = {"width": 256, "height": 256, "num_inference_steps": 20, "use_refinement": False}


def request(**fields: Any) -> GenerationRequest:
    return GenerationRequest(prompt="a lighthouse at dawn", **{**SMALL, **fields})


def test_every_published_sampler_name_has_a_scheduler() -> None:
    assert set(SAMPLERS) == set(SAMPLER_NAMES)


@pytest.mark.parametrize(("name", "kind", "config"), [
    ("DPM++ 2M Karras", DPMSolverMultistepScheduler, {"use_karras_sigmas": True}),
    ("DPM++ 2M SDE Karras", DPMSolverMultistepScheduler,
     {"use_karras_sigmas": True, "algorithm_type": "sde-dpmsolver++"}),
    ("DPM++ 2M", DPMSolverMultistepScheduler, {"use_karras_sigmas": False}),
    ("Euler", EulerDiscreteScheduler, {}),
])
def test_a_sampler_keeps_the_models_training_schedule(
        tiny_engine: SDXLEngine, name: str, kind: type, config: dict[str, Any]) -> None:
    resident = tiny_engine.base.scheduler.config
    scheduler = sampler_scheduler(name, resident)
    assert isinstance(scheduler, kind)
    for key in ("beta_start", "beta_end", "beta_schedule", "steps_offset", "num_train_timesteps"):
        assert scheduler.config[key] == resident[key]
    for key, value in config.items():
        assert scheduler.config[key] == value


@pytest.fixture(scope="module")
def euler_pixels(tiny_engine: SDXLEngine) -> np.ndarray:
    return np.asarray(tiny_engine.generate(request(), seed=11).image)


@pytest.mark.parametrize("name", [n for n in SAMPLER_NAMES if n != "Euler"])
def test_each_sampler_runs_its_steps_and_changes_the_pixels(
        tiny_engine: SDXLEngine, euler_pixels: np.ndarray, name: str) -> None:
    events: list[ProgressEvent] = []
    resident = tiny_engine.base.scheduler
    out = tiny_engine.generate(request(sampler=name), seed=11, on_progress=events.append)
    assert out.steps_base == 20 and [e.step for e in events] == list(range(1, 21))
    assert not np.array_equal(np.asarray(out.image), euler_pixels), name
    assert tiny_engine.base.scheduler is resident


def test_euler_by_name_is_the_resident_default(tiny_engine: SDXLEngine,
                                               euler_pixels: np.ndarray) -> None:
    out = tiny_engine.generate(request(sampler="Euler"), seed=11)
    assert np.array_equal(np.asarray(out.image), euler_pixels)


def test_the_refiner_runs_the_sampler_too_and_gets_its_scheduler_back(
        tiny_engine: SDXLEngine) -> None:
    refiner = tiny_engine.refiner
    assert refiner is not None
    resident = refiner.scheduler
    seen: list[str] = []
    original = type(refiner).__call__

    def spy(pipe: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(type(pipe.scheduler).__name__)
        return original(pipe, *args, **kwargs)

    type(refiner).__call__ = spy  # type: ignore[method-assign]
    try:
        out = tiny_engine.generate(request(use_refinement=True, sampler="UniPC"), seed=3)
    finally:
        type(refiner).__call__ = original  # type: ignore[method-assign]
    assert out.refined and seen == ["UniPCMultistepScheduler"]
    assert refiner.scheduler is resident


def test_an_edit_runs_the_sampler(tiny_engine: SDXLEngine) -> None:
    def edit(sampler: str | None) -> np.ndarray:
        req = EditRequest(image="abcdef", prompt="at night", strength=0.6, seed=1,
                          num_inference_steps=10, use_refinement=False, sampler=sampler)
        return np.asarray(tiny_engine.edit(req, 1, noise()).image)

    assert not np.array_equal(edit(None), edit("DPM++ 2M Karras"))


def test_the_resident_scheduler_comes_back_after_a_failure(tiny_engine: SDXLEngine) -> None:
    base = tiny_engine.base
    resident = base.scheduler
    with pytest.raises(RuntimeError), swapped_samplers([base, None], "Heun"):
        assert base.scheduler is not resident
        raise RuntimeError("the run failed")
    assert base.scheduler is resident


def test_draft_mode_refuses_a_sampler_naming_the_field() -> None:
    with pytest.raises(ValueError, match="sampler"):
        GenerationRequest(prompt="x", quality="draft", sampler="Euler a")


def test_an_unknown_sampler_is_refused_listing_the_names() -> None:
    with pytest.raises(ValueError, match="DPM\\+\\+ 2M Karras"):
        GenerationRequest(prompt="x", sampler="k_euler")


def test_the_infotext_names_the_sampler() -> None:
    from sdxl_mcp.library.infotext import InfotextParams, format_infotext

    text = format_infotext(InfotextParams(prompt="p", steps=30, sampler="DPM++ 2M Karras",
                                          cfg_scale=5, seed=1, width=8, height=8, model="m"))
    assert parse_infotext(text)["Sampler"] == "DPM++ 2M Karras"


async def test_the_saved_png_says_the_sampler_as_a1111_writes_it(
        make_settings: Any, tiny_engine: SDXLEngine) -> None:
    from PIL import Image

    from sdxl_mcp.service.facade import ImageService
    from sdxl_mcp.service.generate import generate

    async with ImageService(make_settings(), backend=tiny_engine) as svc:  # type: ignore[arg-type]
        karras = await generate(svc, request(sampler="DPM++ 2M Karras", seed=2))
        plain = await generate(svc, request(seed=2))
    karras_text = parse_infotext(Image.open(karras.path or "").info["parameters"])
    plain_text = parse_infotext(Image.open(plain.path or "").info["parameters"])
    assert (karras_text["Sampler"], karras_text["Schedule type"]) == ("DPM++ 2M", "Karras")
    assert plain_text["Sampler"] == "Euler" and "Schedule type" not in plain_text
