"""The resident two-stage engine on real tiny SDXL models (CPU, real files)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from sdxl_mcp.backend.base import CancelToken, ProgressEvent
from sdxl_mcp.engine.sdxl import SDXLEngine, sequential_refiner_schedule
from sdxl_mcp.errors import Cancelled, GenerationFailed, ModelUnavailable, OutOfMemory
from sdxl_mcp.schemas import GenerationRequest
from tests.reliability.support_faults import failing_forward

SMALL = {"width": 256, "height": 256, "num_inference_steps": 20}


def request(**fields: Any) -> GenerationRequest:
    return GenerationRequest(prompt="a lighthouse at dawn", **{**SMALL, **fields})


def pixels(image: Any) -> np.ndarray:
    return np.asarray(image)


# ---------------------------------------------------------------- modes
def test_ensemble_splits_the_schedule_at_high_noise_frac(tiny_engine: SDXLEngine) -> None:
    out = tiny_engine.generate(request(), seed=1)
    assert (out.steps_base, out.steps_refiner) == (16, 4)
    assert out.refined and out.refiner_error is None
    assert out.image.size == (256, 256)


def test_sequential_runs_the_requested_refiner_steps(tiny_engine: SDXLEngine) -> None:
    out = tiny_engine.generate(
        request(refiner_mode="sequential", refiner_steps=9, refiner_strength=0.3), seed=1
    )
    assert (out.steps_base, out.steps_refiner) == (20, 9)
    assert out.refined


def test_sequential_schedule_runs_exactly_the_steps_asked() -> None:
    # diffusers alone runs int(30 * 0.3) = 9 steps for "30 refiner steps";
    # the engine lengthens the schedule so the count asked for is the count run.
    assert int(30 * 0.3) == 9
    assert sequential_refiner_schedule(30, 0.3) == 100
    for steps in (1, 7, 30, 100):
        for strength in (0.05, 0.3, 0.77, 1.0):
            length = sequential_refiner_schedule(steps, strength)
            assert min(int(length * strength), length) == steps


def test_refinement_off_runs_the_full_base_schedule(tiny_engine: SDXLEngine) -> None:
    out = tiny_engine.generate(request(use_refinement=False), seed=1)
    assert (out.steps_base, out.steps_refiner, out.refined) == (20, 0, False)


def test_non_square_sizes_give_that_size(tiny_engine: SDXLEngine) -> None:
    out = tiny_engine.generate(request(width=320, height=256, use_refinement=False), seed=1)
    assert out.image.size == (320, 256)


# ---------------------------------------------------------- determinism
def test_same_seed_and_parameters_give_identical_pixels(tiny_engine: SDXLEngine) -> None:
    a = tiny_engine.generate(request(), seed=1234)
    b = tiny_engine.generate(request(), seed=1234)
    assert np.array_equal(pixels(a.image), pixels(b.image))


def test_different_seeds_give_different_pixels(tiny_engine: SDXLEngine) -> None:
    a = tiny_engine.generate(request(use_refinement=False), seed=1)
    b = tiny_engine.generate(request(use_refinement=False), seed=2)
    assert not np.array_equal(pixels(a.image), pixels(b.image))


# -------------------------------------------------------------- progress
def test_progress_covers_both_stages_in_order(tiny_engine: SDXLEngine) -> None:
    events: list[ProgressEvent] = []
    tiny_engine.generate(request(), seed=1, on_progress=events.append)
    assert [e.done for e in events] == list(range(1, 21))
    assert all(e.total == 20 for e in events)
    assert [e.stage for e in events] == ["base"] * 16 + ["refiner"] * 4
    assert [e.step for e in events if e.stage == "refiner"] == [1, 2, 3, 4]
    assert {e.stage_total for e in events if e.stage == "base"} == {16}
    assert "refiner" in events[-1].message


# ---------------------------------------------------------- cancellation
def cancel_at(stage: str, step: int, token: CancelToken) -> Callable[[ProgressEvent], None]:
    seen: list[ProgressEvent] = []

    def on_progress(event: ProgressEvent) -> None:
        seen.append(event)
        if event.stage == stage and event.step == step:
            token.cancel("cancelled by the test")

    on_progress.seen = seen  # type: ignore[attr-defined]
    return on_progress


@pytest.mark.parametrize(("stage", "step"), [("base", 3), ("refiner", 2)])
def test_cancel_stops_within_one_step_and_engine_stays_usable(
    tiny_engine: SDXLEngine, stage: str, step: int
) -> None:
    token = CancelToken()
    listener = cancel_at(stage, step, token)
    with pytest.raises(Cancelled, match=stage):
        tiny_engine.generate(request(), seed=1, on_progress=listener, cancel=token)
    last = listener.seen[-1]  # type: ignore[attr-defined]
    assert (last.stage, last.step) == (stage, step)  # not a single step more
    assert tiny_engine.generate(request(), seed=1).refined


def test_cancel_before_start_runs_nothing(tiny_engine: SDXLEngine) -> None:
    token = CancelToken()
    token.cancel()
    events: list[ProgressEvent] = []
    with pytest.raises(Cancelled):
        tiny_engine.generate(request(), seed=1, on_progress=events.append, cancel=token)
    assert events == []


# ------------------------------------------------------- refiner failure
def test_refiner_exception_keeps_the_base_image(
    tiny_engine: SDXLEngine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    unet = tiny_engine.refiner.unet  # type: ignore[union-attr]
    monkeypatch.setattr(unet, "forward", failing_forward(unet, ValueError("bad latents"), 99))
    out = tiny_engine.generate(request(), seed=1)
    assert out.refined is False
    assert out.refiner_error and "bad latents" in out.refiner_error
    assert out.steps_refiner == 0 and out.steps_base == 16
    assert out.image.size == (256, 256)
    assert "Refinement failed" in caplog.text


def test_refiner_out_of_memory_keeps_the_base_image(
    tiny_engine: SDXLEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    unet = tiny_engine.refiner.unet  # type: ignore[union-attr]
    oom = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    monkeypatch.setattr(unet, "forward", failing_forward(unet, oom, 99))
    out = tiny_engine.generate(request(), seed=1)
    assert out.refined is False
    assert out.refiner_error and out.refiner_error.startswith("out of memory")


# ------------------------------------------------------------ base OOM
def test_base_out_of_memory_once_is_retried_and_succeeds(
    tiny_engine: SDXLEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    unet = tiny_engine.base.unet
    monkeypatch.setattr(
        unet, "forward", failing_forward(unet, torch.OutOfMemoryError("CUDA out of memory"), 1)
    )
    events: list[ProgressEvent] = []
    out = tiny_engine.generate(request(), seed=1, on_progress=events.append)
    assert out.steps_base == 16 and out.refined
    assert not tiny_engine.base.vae.use_tiling  # low-memory mode was for the retry only


def test_base_out_of_memory_twice_is_a_clear_error_and_engine_stays_usable(
    tiny_engine: SDXLEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    unet = tiny_engine.base.unet
    monkeypatch.setattr(
        unet, "forward", failing_forward(unet, torch.OutOfMemoryError("CUDA out of memory"), 2)
    )
    with pytest.raises(OutOfMemory, match="smaller width/height"):
        tiny_engine.generate(request(), seed=1)
    monkeypatch.undo()
    assert tiny_engine.generate(request(), seed=1).refined


# -------------------------------------------------------------- decode
def test_nan_decode_is_retried_then_an_error(
    tiny_engine: SDXLEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    vae = tiny_engine.base.vae
    calls = {"n": 0}

    def nan_decode(z: torch.Tensor, return_dict: bool = True) -> Any:
        calls["n"] += 1
        return (torch.full((z.shape[0], 3, z.shape[2] * 8, z.shape[3] * 8), float("nan")),)

    monkeypatch.setattr(vae, "decode", nan_decode)
    with pytest.raises(GenerationFailed, match="NaN"):
        tiny_engine.generate(request(use_refinement=False), seed=1)
    assert calls["n"] == 2  # one retry in fp32, then the error


def test_black_decode_once_is_retried_and_succeeds(
    tiny_engine: SDXLEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    vae = tiny_engine.base.vae
    original = vae.decode
    calls = {"n": 0}

    def black_once(z: torch.Tensor, return_dict: bool = True) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            return (torch.full((z.shape[0], 3, z.shape[2] * 8, z.shape[3] * 8), -1.0),)
        return original(z, return_dict=return_dict)

    monkeypatch.setattr(vae, "decode", black_once)
    out = tiny_engine.generate(request(use_refinement=False), seed=1)
    assert calls["n"] == 2
    assert pixels(out.image).max() > 0


# ---------------------------------------------------------- bad models
def test_missing_model_folder_names_the_setting(make_settings: Callable[..., Any]) -> None:
    engine = SDXLEngine(make_settings(base_model="/nonexistent/sdxl-base"))
    with pytest.raises(ModelUnavailable, match="SDXL_MCP_BASE_MODEL"):
        engine.load()
    assert engine.state == "failed"
    assert "SDXL_MCP_BASE_MODEL" in (engine.status().error or "")


def test_unreachable_hub_model_names_the_setting(make_settings: Callable[..., Any]) -> None:
    # HF_HUB_OFFLINE=1 (conftest): the hub cannot provide it, like on these machines.
    engine = SDXLEngine(make_settings(refiner_model="no-such-org/no-such-refiner",
                                      allow_cpu=True))
    with pytest.raises(ModelUnavailable, match="SDXL_MCP_REFINER_MODEL='no-such-org"):
        engine.load()


def test_folder_missing_a_component_says_which(
    make_settings: Callable[..., Any], tiny_models: tuple, tmp_path: Any
) -> None:
    import shutil

    broken = tmp_path / "broken-base"
    shutil.copytree(tiny_models[0], broken)
    shutil.rmtree(broken / "unet")
    engine = SDXLEngine(make_settings(base_model=str(broken)))
    with pytest.raises(ModelUnavailable, match="lacks its 'unet/' folder"):
        engine.load()


def test_full_size_models_on_cpu_are_refused_without_allow_cpu(
    make_settings: Callable[..., Any],
) -> None:
    engine = SDXLEngine(make_settings(base_model="stabilityai/stable-diffusion-xl-base-1.0",
                                      refiner_model=""))
    with pytest.raises(ModelUnavailable, match="SDXL_MCP_ALLOW_CPU"):
        engine.load()


def test_generate_after_a_failed_load_raises_model_unavailable(
    make_settings: Callable[..., Any],
) -> None:
    engine = SDXLEngine(make_settings(base_model="/nonexistent/sdxl-base"))
    with pytest.raises(ModelUnavailable):
        engine.generate(request(), seed=1)


# --------------------------------------------------------------- loading
def test_refiner_shares_text_encoder_2_and_vae(tiny_engine: SDXLEngine) -> None:
    assert tiny_engine.refiner is not None
    assert tiny_engine.refiner.text_encoder_2 is tiny_engine.base.text_encoder_2
    assert tiny_engine.refiner.vae is tiny_engine.base.vae


def test_startup_logs_say_what_was_loaded(
    make_settings: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    caplog.set_level(logging.INFO)
    SDXLEngine(make_settings()).load()
    for line in ("Using fp32", "Loading SDXL base model...", "Loading SDXL refinement model...",
                 "SDXL base + refinement models loaded successfully", "Refinement: ENABLED"):
        assert line in caplog.text


def test_no_refiner_configured_loads_base_only(
    make_settings: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    caplog.set_level(logging.INFO)
    engine = SDXLEngine(make_settings(refiner_model=""))
    out = engine.generate(request(), seed=1)
    assert engine.refiner is None
    assert (out.refined, out.steps_base) == (False, 20)
    assert "Refinement: DISABLED" in caplog.text


def test_concurrent_calls_run_one_at_a_time(
    tiny_engine: SDXLEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    unet = tiny_engine.base.unet
    original = unet.forward
    order: list[str] = []

    def recording_forward(*args: Any, **kwargs: Any) -> Any:
        order.append(threading.current_thread().name)
        return original(*args, **kwargs)

    monkeypatch.setattr(unet, "forward", recording_forward)
    threads = [
        threading.Thread(
            target=tiny_engine.generate, name=name,
            args=(request(use_refinement=False), 1),
        )
        for name in ("first", "second")
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Without the lock the two denoising loops would interleave their UNet calls.
    assert len(order) == 40
    first = order[0]
    assert order == [first] * 20 + [n for n in order if n != first]


def test_speed_settings_reach_the_unet(tiny_models: tuple) -> None:
    """What SDXL_MCP_CHANNELS_LAST / FUSE_QKV do, as the engine and the bench apply them."""
    from pathlib import Path

    from diffusers import UNet2DConditionModel

    from sdxl_mcp.engine.sdxl import speed_up_unet

    unet = UNet2DConditionModel.from_pretrained(Path(tiny_models[0]) / "unet")
    same = speed_up_unet(unet, channels_last=True, fuse_qkv=True, compile=False)
    assert same is unet  # only compile wraps the module
    conv = unet.conv_in.weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    assert not conv.is_contiguous()
    processors = {type(p).__name__ for p in unet.attn_processors.values()}
    assert processors == {"FusedAttnProcessor2_0"}
