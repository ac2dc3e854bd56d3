"""The precision policy, table-driven, with memory from the real SDXL parameter counts."""

from __future__ import annotations

import pytest

from sdxl_mcp.engine import footprint
from sdxl_mcp.engine.precision import GIB, HardwareFacts, decide_precision


@pytest.fixture(scope="module")
def sdxl_params() -> dict[str, int]:
    base = footprint.reference_param_counts("base")
    refiner = footprint.reference_param_counts("refiner")
    return {
        "with_refiner": footprint.total_param_count(base, refiner),
        "base_only": footprint.total_param_count(base, None),
    }


def cuda(gib: float, bf16: bool = False) -> HardwareFacts:
    return HardwareFacts(kind="cuda", device="cuda:0", name=f"{gib:g} GB card",
                         total_memory_bytes=int(gib * GIB), supports_bf16=bf16)


CPU = HardwareFacts(kind="cpu", device="cpu")
MPS = HardwareFacts(kind="mps", device="mps")


@pytest.mark.parametrize(
    ("hardware", "models", "requested", "expected"),
    [
        pytest.param(cuda(32), "with_refiner", "auto", "fp32", id="32GB+refiner->fp32"),
        pytest.param(cuda(24), "with_refiner", "auto", "fp16", id="24GB+refiner->fp16"),
        pytest.param(cuda(24, bf16=True), "with_refiner", "auto", "bf16",
                     id="24GB+refiner+bf16-card->bf16"),
        pytest.param(cuda(24), "base_only", "auto", "fp32", id="24GB-base-only->fp32"),
        pytest.param(cuda(12), "base_only", "auto", "fp16", id="12GB->fp16"),
        pytest.param(cuda(12, bf16=True), "with_refiner", "auto", "bf16", id="12GB-bf16->bf16"),
        pytest.param(cuda(80, bf16=True), "with_refiner", "auto", "fp32", id="80GB->fp32"),
        pytest.param(CPU, "with_refiner", "auto", "fp32", id="cpu->fp32"),
        pytest.param(MPS, "with_refiner", "auto", "fp16", id="mps->fp16"),
        pytest.param(cuda(32), "with_refiner", "fp16", "fp16", id="explicit-fp16-honoured"),
        pytest.param(cuda(12), "base_only", "fp32", "fp32", id="explicit-fp32-honoured"),
        pytest.param(cuda(24, bf16=True), "with_refiner", "bf16", "bf16", id="explicit-bf16"),
    ],
)
def test_precision_table(
    sdxl_params: dict[str, int], hardware: HardwareFacts, models: str, requested: str,
    expected: str,
) -> None:
    decision = decide_precision(hardware, sdxl_params[models], requested)  # type: ignore[arg-type]
    assert decision.dtype == expected
    assert decision.device == hardware.device
    assert decision.reason


def test_24gb_with_refiner_reason_says_fp32_would_not_fit(sdxl_params: dict[str, int]) -> None:
    decision = decide_precision(cuda(24), sdxl_params["with_refiner"])
    assert "would not fit" in decision.reason
    assert decision.warning is None


def test_small_card_reason_names_the_threshold(sdxl_params: dict[str, int]) -> None:
    decision = decide_precision(cuda(12), sdxl_params["base_only"], fp32_min_vram_gb=20)
    assert "FP32_MIN_VRAM_GB=20" in decision.reason


def test_threshold_setting_moves_the_boundary(sdxl_params: dict[str, int]) -> None:
    assert decide_precision(cuda(24), sdxl_params["base_only"], fp32_min_vram_gb=30).dtype == "fp16"


def test_explicit_choice_that_cannot_fit_warns(sdxl_params: dict[str, int]) -> None:
    decision = decide_precision(cuda(24), sdxl_params["with_refiner"], "fp32")
    assert decision.dtype == "fp32"
    assert decision.warning is not None
    assert "out-of-memory" in decision.warning
    assert "WARNING" in decision.summary


def test_explicit_choice_that_fits_has_no_warning(sdxl_params: dict[str, int]) -> None:
    assert decide_precision(cuda(32), sdxl_params["with_refiner"], "fp32").warning is None


def test_explicit_half_on_cpu_warns() -> None:
    decision = decide_precision(CPU, 10_000_000, "fp16")
    assert decision.dtype == "fp16"
    assert decision.warning and "CPU" in decision.warning


def test_weight_bytes_follow_the_dtype(sdxl_params: dict[str, int]) -> None:
    params = sdxl_params["with_refiner"]
    assert decide_precision(cuda(32), params).weight_bytes == params * 4
    assert decide_precision(cuda(24), params).weight_bytes == params * 2


def test_reference_counts_match_the_published_sdxl_sizes() -> None:
    base = footprint.reference_param_counts("base")
    refiner = footprint.reference_param_counts("refiner")
    assert round(base["unet"] / 1e9, 2) == 2.57
    assert round(refiner["unet"] / 1e9, 2) == 2.26
    assert round(base["text_encoder"] / 1e6) == 123
    assert round(base["text_encoder_2"] / 1e6) == 695
    assert round(base["vae"] / 1e6) == 84
    # The guide's "17 GB with both models" is wrong: fp32 base + refiner is ~22.9 GB.
    both = footprint.total_param_count(base, refiner) * 4
    assert round(both / 1e9, 1) == 22.9
    assert round(footprint.total_param_count(base, None) * 4 / 1e9, 1) == 13.9


def test_shared_components_are_counted_once() -> None:
    base = {"unet": 10, "text_encoder": 1, "text_encoder_2": 5, "vae": 2}
    refiner = {"unet": 8, "text_encoder": 0, "text_encoder_2": 5, "vae": 2}
    assert footprint.total_param_count(base, refiner) == 18 + 8


def test_local_counts_read_from_safetensors_match_the_loaded_model(
    tiny_models: tuple, tiny_engine: object
) -> None:
    base_dir, _ = tiny_models
    counts = footprint.local_param_counts(base_dir)
    unet = tiny_engine.base.unet  # type: ignore[attr-defined]
    assert counts["unet"] == sum(p.numel() for p in unet.parameters())
