"""LoRA adapters and draft mode on the real engine (tiny SDXL, tiny random LoRAs, CPU).

Requests are validated as users send them, then shrunk to 64 px and 2 steps
with ``model_copy`` (the engine does not re-validate): the LoRA behaviour does
not depend on the size, and the suite stays fast.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sdxl_mcp.engine.draft import DRAFT_ADAPTER
from sdxl_mcp.engine.lora import DEFAULT_CAPACITY, adapter_name
from sdxl_mcp.engine.sdxl import SDXLEngine
from sdxl_mcp.errors import BadRequest
from sdxl_mcp.schemas import EditRequest, GenerationRequest
from tests.helpers_http import tiny_settings
from tests.helpers_lora import (
    write_lora,
    write_not_a_lora,
    write_wrong_architecture,
)

TINY = {"width": 64, "height": 64, "num_inference_steps": 2}


@pytest.fixture(scope="module")
def lora_dir(tmp_path_factory: pytest.TempPathFactory, tiny_models: tuple[Path, Path]) -> Path:
    folder = tmp_path_factory.mktemp("loras")
    base = tiny_models[0]
    write_lora(folder, "style", base, seed=1)
    write_lora(folder, "other", base, seed=2)
    write_lora(folder, "kohya_style", base, seed=3, kohya=True)
    write_lora(folder, "turbo", base, seed=4)
    write_not_a_lora(folder)
    write_wrong_architecture(folder)
    return folder


@pytest.fixture(scope="module")
def engine(lora_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SDXLEngine]:
    settings = tiny_settings(tmp_path_factory.mktemp("run"), lora_dirs=[lora_dir],
                             warmup=False, draft_lora=str(lora_dir / "turbo.safetensors"),
                             draft_scheduler="lcm", draft_steps=3)
    engine = SDXLEngine(settings)
    engine.load()
    yield engine


def generation(**fields: Any) -> GenerationRequest:
    request = GenerationRequest(**{"prompt": "a lighthouse at dawn", "use_refinement": False,
                                   **fields})
    return request.model_copy(update=TINY)


def pixels(engine: SDXLEngine, request: GenerationRequest, seed: int = 1) -> np.ndarray:
    return np.asarray(engine.generate(request, seed=seed).image).astype(np.int16)


@pytest.fixture(scope="module")
def plain(engine: SDXLEngine) -> np.ndarray:
    """The pixels of the plain request before any LoRA was loaded."""
    assert engine.loras.loaded() == []
    return pixels(engine, generation())


# ------------------------------------------------------------ the pixels
def test_a_lora_changes_the_pixels_and_leaving_it_out_restores_them_exactly(
    engine: SDXLEngine, plain: np.ndarray
) -> None:
    styled = pixels(engine, generation(loras=[{"name": "style"}]))
    after = pixels(engine, generation())
    assert np.abs(styled - plain).mean() > 1
    assert np.array_equal(after, plain)
    assert "style" in engine.loras.loaded()


def test_the_weight_scales_the_effect_and_zero_is_none(
    engine: SDXLEngine, plain: np.ndarray
) -> None:
    full = pixels(engine, generation(loras=[{"name": "style", "weight": 1.0}]))
    half = pixels(engine, generation(loras=[{"name": "style", "weight": 0.5}]))
    none = pixels(engine, generation(loras=[{"name": "style", "weight": 0.0}]))
    assert np.array_equal(none, plain)
    assert 0 < np.abs(half - plain).mean() < np.abs(full - plain).mean()


def test_two_loras_combine(engine: SDXLEngine) -> None:
    one = pixels(engine, generation(loras=[{"name": "style"}]))
    other = pixels(engine, generation(loras=[{"name": "other"}]))
    both = pixels(engine, generation(loras=[{"name": "style"}, {"name": "other"}]))
    assert not np.array_equal(both, one) and not np.array_equal(both, other)


def test_a_prompt_tag_is_the_same_as_the_loras_entry(engine: SDXLEngine) -> None:
    by_field = engine.generate(generation(loras=[{"name": "style", "weight": 0.7}]), seed=3)
    by_tag = engine.generate(generation(prompt="a lighthouse at dawn <lora:style:0.7>"), seed=3)
    assert np.array_equal(np.asarray(by_field.image), np.asarray(by_tag.image))
    assert "LoRAs: style (0.7)" in by_tag.notes


def test_a_kohya_format_file_loads_and_changes_the_pixels(
    engine: SDXLEngine, plain: np.ndarray
) -> None:
    styled = pixels(engine, generation(loras=[{"name": "kohya_style"}]))
    assert np.abs(styled - plain).mean() > 1


def test_loras_skip_the_refiner_unless_it_is_asked_for(engine: SDXLEngine) -> None:
    skipped = engine.generate(GenerationRequest(prompt="a fox", loras=[{"name": "style"}])
                              .model_copy(update=TINY), seed=1)
    asked = engine.generate(GenerationRequest(prompt="a fox", loras=[{"name": "style"}],
                                              use_refinement=True).model_copy(update=TINY),
                            seed=1)
    assert not skipped.refined and skipped.steps_refiner == 0
    assert any("refiner skipped" in note for note in skipped.notes)
    assert asked.refined and asked.steps_refiner > 0


def test_edits_take_loras_too(engine: SDXLEngine) -> None:
    from PIL import Image

    source = Image.new("RGB", (64, 64), (120, 80, 40))
    fields: dict[str, Any] = {"image": "x", "prompt": "a fox", "num_inference_steps": 2,
                              "strength": 1.0, "use_refinement": False}
    edit = EditRequest(**fields)
    plain = engine.edit(edit, seed=1, source=source)
    styled = engine.edit(EditRequest(**fields, loras=[{"name": "style"}]), seed=1,
                         source=source)
    again = engine.edit(edit, seed=1, source=source)
    assert not np.array_equal(np.asarray(plain.image), np.asarray(styled.image))
    assert np.array_equal(np.asarray(plain.image), np.asarray(again.image))


# ------------------------------------------------------------ the cache
def test_the_cache_keeps_at_most_capacity_loras_and_drops_the_least_recent(
    engine: SDXLEngine, plain: np.ndarray
) -> None:
    cache = engine.loras
    cache.unload_all(engine.base)
    cache.capacity = 2
    try:
        for name in ("style", "other", "kohya_style"):
            engine.generate(generation(loras=[{"name": name}]), seed=1)
        assert cache.loaded() == ["other", "kohya_style"]
        engine.generate(generation(loras=[{"name": "other"}]), seed=1)
        assert cache.loaded() == ["kohya_style", "other"]
        held = {n for names in engine.base.get_list_adapters().values() for n in names}
        assert held == {adapter_name("other"), adapter_name("kohya_style")} | (
            {DRAFT_ADAPTER} & held)
        assert np.array_equal(pixels(engine, generation()), plain)
    finally:
        cache.capacity = DEFAULT_CAPACITY


# ------------------------------------------------------------ bad files
@pytest.mark.parametrize("name", ["not_a_lora", "sd15_lora"])
def test_a_bad_file_is_an_error_naming_it_and_the_engine_keeps_working(
    engine: SDXLEngine, plain: np.ndarray, name: str
) -> None:
    with pytest.raises(BadRequest) as caught:
        engine.generate(generation(loras=[{"name": name}]), seed=1)
    assert name in caught.value.message and "not an SDXL LoRA" in caught.value.message
    assert name not in engine.loras.loaded()
    assert np.array_equal(pixels(engine, generation()), plain)
    styled = pixels(engine, generation(loras=[{"name": "style"}]))
    assert np.abs(styled - plain).mean() > 1


def test_an_unknown_name_lists_the_available_ones(engine: SDXLEngine) -> None:
    with pytest.raises(BadRequest) as caught:
        engine.generate(generation(loras=[{"name": "nope"}]), seed=1)
    assert "'nope'" in caught.value.message and "style" in caught.value.message


# ------------------------------------------------------------ draft
def test_draft_runs_the_configured_steps_and_scheduler_without_the_refiner(
    engine: SDXLEngine, plain: np.ndarray
) -> None:
    resident = engine.base.scheduler
    seen: list[str] = []
    batches: list[int] = []
    hook = engine.base.unet.register_forward_pre_hook(
        lambda _module, args: batches.append(args[0].shape[0]))
    request = GenerationRequest(prompt="a lighthouse at dawn", quality="draft", use_refinement=True)
    try:
        out = engine.generate(
            request.model_copy(update={"width": 64, "height": 64}), seed=1,
            on_progress=lambda e: seen.append(type(engine.base.scheduler).__name__))
    finally:
        hook.remove()
    assert (out.steps_base, out.steps_refiner, out.refined) == (3, 0, False)
    assert set(seen) == {"LCMScheduler"}
    assert batches == [1, 1, 1]  # guidance 1.0: no unconditional half of the batch
    assert engine.base.scheduler is resident
    assert any(note.startswith("draft: 3 steps, lcm") for note in out.notes)
    # The draft LoRA and scheduler are gone for the next plain request.
    assert np.array_equal(pixels(engine, generation()), plain)
