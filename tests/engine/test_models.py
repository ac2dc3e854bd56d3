"""Base models by name on one engine: switched per request, kept in CPU RAM, honest pixels.

A models folder holds tiny checkpoints of other weights (``tests.helpers_checkpoints``);
each test that switches builds its own engine (switching changes the engine).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sdxl_mcp.backend.base import ProgressEvent
from sdxl_mcp.engine.sdxl import SDXLEngine
from sdxl_mcp.errors import BadRequest, ModelUnavailable
from sdxl_mcp.schemas import EditRequest, GenerationRequest
from sdxl_mcp.settings import Settings
from tests.helpers_checkpoints import write_checkpoint
from tests.helpers_images import noise

SMALL = {"width": 256, "height": 256, "num_inference_steps": 20, "use_refinement": False}


@pytest.fixture(scope="module")
def models_dir(tiny_models: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
               ) -> Path:
    folder = tmp_path_factory.mktemp("models")
    write_checkpoint(tiny_models[0], folder / "tunedA.safetensors", perturb=0.05, seed=1)
    write_checkpoint(tiny_models[0], folder / "tunedB.safetensors", perturb=0.05, seed=2)
    broken = folder / "broken.safetensors"  # an SDXL header, then the data cut short
    data = write_checkpoint(tiny_models[0], folder / "whole.safetensors").read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    (folder / "whole.safetensors").unlink()
    return folder


def make_engine(tiny_models: tuple[Path, Path], models_dir: Path, **more: Any) -> SDXLEngine:
    settings = Settings(_env_file=None, base_model="tiny-random",  # type: ignore[call-arg]
                        refiner_model="tiny-random", model_dirs=[models_dir],
                        checkpoint_config=list(tiny_models), preload=False, warmup=False,
                        **more)
    engine = SDXLEngine(settings)
    engine.load()
    return engine


@pytest.fixture
def engine(tiny_models: tuple[Path, Path], models_dir: Path) -> Iterator[SDXLEngine]:
    yield make_engine(tiny_models, models_dir)


def request(**fields: Any) -> GenerationRequest:
    return GenerationRequest(prompt="a lighthouse at dawn", **{**SMALL, **fields})


def pixels(engine: SDXLEngine, **fields: Any) -> np.ndarray:
    return np.asarray(engine.generate(request(**fields), seed=9).image)


def test_a_named_model_gives_its_own_pixels_and_the_default_comes_back(
        engine: SDXLEngine, tiny_engine: SDXLEngine) -> None:
    stock = pixels(tiny_engine)
    tuned = pixels(engine, model="tunedA")
    assert not np.array_equal(tuned, stock)
    assert np.array_equal(pixels(engine), stock)  # back to BASE_MODEL, from CPU RAM
    assert np.array_equal(pixels(engine, model="tunedA"), tuned)


def test_the_output_names_the_model_that_ran_and_its_hash(engine: SDXLEngine,
                                                         models_dir: Path) -> None:
    import hashlib

    out = engine.generate(request(model="tunedB"), seed=1)
    path = models_dir / "tunedB.safetensors"
    assert out.base_model == str(path)
    assert out.model_hash == hashlib.sha256(path.read_bytes()).hexdigest()[:10]
    assert engine.generate(request(), seed=1).model_hash is None  # a folder has none


def test_a_switch_is_reported_as_progress_and_counted_in_model_load(
        engine: SDXLEngine) -> None:
    events: list[ProgressEvent] = []
    out = engine.generate(request(model="tunedA"), seed=1, on_progress=events.append)
    assert events[0].stage == "model" and events[0].message == "loading tunedA"
    assert [e.stage for e in events[1:]] == ["base"] * 20
    assert out.timings["model_load"] > 0
    again: list[ProgressEvent] = []
    engine.generate(request(model="tunedA"), seed=1, on_progress=again.append)
    assert all(e.stage == "base" for e in again)  # already in use: no switch


def test_one_base_on_the_device_and_model_cache_more_in_cpu_ram(
        tiny_models: tuple[Path, Path], models_dir: Path) -> None:
    engine = make_engine(tiny_models, models_dir, model_cache=1)
    engine.generate(request(model="tunedA"), seed=1)
    assert engine.loaded_models() == {"tunedA": "device", "tiny-random": "cpu"}
    engine.generate(request(model="tunedB"), seed=1)
    # tunedA is dropped (cache of 1); BASE_MODEL is never dropped: the refiner shares it.
    assert engine.loaded_models() == {"tunedB": "device", "tiny-random": "cpu"}


def test_an_edit_runs_on_the_named_model(engine: SDXLEngine) -> None:
    def edit(model: str | None) -> np.ndarray:
        req = EditRequest(image="abcdef", prompt="at night", seed=1, num_inference_steps=20,
                          use_refinement=False, model=model)
        return np.asarray(engine.edit(req, 1, noise()).image)

    assert not np.array_equal(edit(None), edit("tunedA"))


def test_a_model_that_fails_to_load_leaves_the_current_one_working(
        engine: SDXLEngine, tiny_engine: SDXLEngine) -> None:
    with pytest.raises(ModelUnavailable) as caught:
        engine.generate(request(model="broken"), seed=9)
    assert "broken" in caught.value.message
    assert engine.loaded_models()["tiny-random"] == "device"
    assert np.array_equal(pixels(engine), pixels(tiny_engine))


def test_a_model_gone_from_the_folder_is_a_clear_error(engine: SDXLEngine) -> None:
    with pytest.raises(BadRequest, match="no model 'nowhere'"):
        engine.generate(request(model="nowhere"), seed=1)
