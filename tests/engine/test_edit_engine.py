"""The engine's edits on the tiny models (CPU): shared weights, size, steps, mask, failures.

What ``engine.edit`` promises, tested as promised: the edit pipelines are the
base's components (no new tensor), the output is the source's size rounded to
a multiple of 8, the same seed gives the same pixels, black mask pixels keep
the source exactly, cancel stops within a step, and an out-of-memory in the
base stage is retried once with VAE tiling.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from sdxl_mcp.backend.base import CancelToken, ProgressEvent
from sdxl_mcp.engine.edit import base_schedule, output_size
from sdxl_mcp.engine.sdxl import SDXLEngine
from sdxl_mcp.errors import Cancelled, OutOfMemory
from sdxl_mcp.schemas import EditRequest
from tests.reliability.support_faults import failing_forward

STEPS = 20  # strength 0.6 -> 12 base steps, 3 refiner steps


def edit_request(**fields: Any) -> EditRequest:
    return EditRequest(**{"image": "unused", "prompt": "a lighthouse at dusk",
                          "num_inference_steps": STEPS, **fields})


def source(size: tuple[int, int] = (256, 256), seed: int = 0) -> Image.Image:
    noise = np.random.RandomState(seed).randint(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(noise)


def left_half_mask(size: tuple[int, int] = (256, 256)) -> Image.Image:
    mask = Image.new("L", size, 0)
    mask.paste(255, (0, 0, size[0] // 2, size[1]))
    return mask


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def parameter_tensors(*modules: Any) -> set[int]:
    return {p.data_ptr() for m in modules if m is not None for p in m.parameters()}


def components(pipe: Any) -> list[Any]:
    return [pipe.unet, pipe.vae, pipe.text_encoder, pipe.text_encoder_2]


# ------------------------------------------------------------ shared weights
def test_edit_pipelines_share_every_component_with_the_base(tiny_engine: SDXLEngine) -> None:
    base, refiner = tiny_engine.base, tiny_engine.refiner
    before = parameter_tensors(*components(base), *components(refiner))
    tiny_engine.edit(edit_request(use_refinement=False), 1, source())
    tiny_engine.edit(edit_request(use_refinement=False), 1, source(), left_half_mask())
    img2img = tiny_engine._edits.img2img(base)
    inpaint = tiny_engine._edits.inpaint(base)
    for pipe in (img2img, inpaint):
        for name in ("unet", "vae", "text_encoder", "text_encoder_2", "tokenizer",
                     "tokenizer_2", "scheduler"):
            assert getattr(pipe, name) is getattr(base, name), name
    after = parameter_tensors(*components(base), *components(refiner),
                              *components(img2img), *components(inpaint))
    assert after == before  # not one new parameter tensor
    # Built once: the next edit uses the same objects.
    assert tiny_engine._edits.img2img(base) is img2img
    assert tiny_engine._edits.inpaint(base) is inpaint


# ------------------------------------------------------------ size and steps
def test_image_to_image_keeps_the_size_and_runs_strength_times_steps(
    tiny_engine: SDXLEngine,
) -> None:
    events: list[ProgressEvent] = []
    out = tiny_engine.edit(edit_request(), 1, source((320, 256)), on_progress=events.append)
    assert out.image.size == (320, 256)
    assert (out.steps_base, out.steps_refiner, out.refined) == (12, 3, True)
    assert [e.done for e in events] == list(range(1, 16)) and {e.total for e in events} == {15}
    assert not out.notes


def test_a_size_not_a_multiple_of_8_is_rounded_and_said(tiny_engine: SDXLEngine) -> None:
    out = tiny_engine.edit(edit_request(use_refinement=False), 1, source((250, 259)))
    assert out.image.size == (248, 256) == output_size(250, 259)
    assert out.notes == ["the source's 250x259 was rounded to 248x256, a multiple of 8"]


def test_a_tiny_strength_still_runs_one_step(tiny_engine: SDXLEngine) -> None:
    assert base_schedule(10, 0.05) == (20, 1)
    out = tiny_engine.edit(edit_request(strength=0.05, num_inference_steps=10,
                                        use_refinement=False), 1, source())
    assert out.steps_base == 1


# ------------------------------------------------------------ determinism
def test_same_seed_same_pixels_other_seed_other_pixels(tiny_engine: SDXLEngine) -> None:
    a = tiny_engine.edit(edit_request(), 7, source())
    b = tiny_engine.edit(edit_request(), 7, source())
    c = tiny_engine.edit(edit_request(), 8, source())
    assert np.array_equal(pixels(a.image), pixels(b.image))
    assert not np.array_equal(pixels(a.image), pixels(c.image))


# ------------------------------------------------------------------ mask
def test_black_mask_pixels_keep_the_source_exactly(tiny_engine: SDXLEngine) -> None:
    src = source()
    out = tiny_engine.edit(edit_request(), 3, src, left_half_mask())
    plain = tiny_engine.edit(edit_request(), 3, src)
    got, original = pixels(out.image), pixels(src)
    assert np.array_equal(got[:, 128:], original[:, 128:])  # kept: the black half
    assert not np.array_equal(got[:, :128], original[:, :128])  # repainted: the white half
    assert not np.array_equal(got, pixels(plain.image))  # a mask is not image-to-image


def test_a_mask_of_another_resolution_is_resized_with_the_source(
    tiny_engine: SDXLEngine,
) -> None:
    out = tiny_engine.edit(edit_request(use_refinement=False), 3, source((256, 256)),
                           left_half_mask((512, 512)))
    got, original = pixels(out.image), pixels(source((256, 256)))
    assert np.array_equal(got[:, 136:], original[:, 136:])


# ------------------------------------------------------------- failures
def test_cancel_mid_edit_stops_within_a_step_and_the_engine_stays_usable(
    tiny_engine: SDXLEngine,
) -> None:
    token = CancelToken()
    seen: list[ProgressEvent] = []

    def on_progress(event: ProgressEvent) -> None:
        seen.append(event)
        if event.step == 3:
            token.cancel()

    with pytest.raises(Cancelled, match="base stage"):
        tiny_engine.edit(edit_request(), 1, source(), left_half_mask(), on_progress, token)
    assert len(seen) == 3
    assert tiny_engine.edit(edit_request(use_refinement=False), 1, source()).steps_base == 12


def test_out_of_memory_in_the_edit_base_stage_is_retried_once(
    tiny_engine: SDXLEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    unet = tiny_engine.base.unet  # the edit pipelines' UNet too
    monkeypatch.setattr(
        unet, "forward", failing_forward(unet, torch.OutOfMemoryError("CUDA out of memory"), 1)
    )
    out = tiny_engine.edit(edit_request(), 1, source())
    assert out.steps_base == 12 and out.refined
    assert not tiny_engine.base.vae.use_tiling  # low-memory mode was for the retry only


def test_out_of_memory_twice_in_an_edit_is_a_clear_error(
    tiny_engine: SDXLEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    unet = tiny_engine.base.unet
    monkeypatch.setattr(
        unet, "forward", failing_forward(unet, torch.OutOfMemoryError("CUDA out of memory"), 2)
    )
    with pytest.raises(OutOfMemory, match="base stage"):
        tiny_engine.edit(edit_request(), 1, source(), left_half_mask())
    monkeypatch.undo()
    assert tiny_engine.edit(edit_request(), 1, source()).refined


def test_a_refiner_failure_keeps_the_edit(
    tiny_engine: SDXLEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    unet = tiny_engine.refiner.unet  # type: ignore[union-attr]
    monkeypatch.setattr(unet, "forward", failing_forward(unet, RuntimeError("boom"), 99))
    out = tiny_engine.edit(edit_request(), 1, source())
    assert out.refined is False and out.refiner_error == "boom" and out.steps_base == 12
