"""Memory tiers: the pure plan (a table of cards), and which mechanism each tier engages
(a recording fake at the diffusers/accelerate seam; no GPU here)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline

from sdxl_mcp.engine.footprint import reference_param_counts
from sdxl_mcp.engine.memory import CONTEXT_BYTES, TIERS, WORKING_BYTES, peak_bytes, plan_memory
from sdxl_mcp.engine.offload import OffloadOps, park_base, place, place_base
from sdxl_mcp.engine.precision import GIB, HardwareFacts
from tests.helpers_cli import run_cli

BASE = reference_param_counts("base")
REFINER = reference_param_counts("refiner")


def card(gib: float | None, kind: str = "cuda") -> HardwareFacts:
    return HardwareFacts(kind=kind, device="cuda:0" if kind == "cuda" else kind,  # type: ignore[arg-type]
                         total_memory_bytes=None if gib is None else int(gib * GIB))


# ------------------------------------------------------------------ the plan
@pytest.mark.parametrize(("gib", "dtype", "tier"), [
    (80, "fp16", "full"), (24, "fp16", "full"), (16, "fp16", "full"),
    (12, "fp16", "balanced"), (10, "fp16", "balanced"),
    (8, "fp16", "low"), (6, "fp16", "minimal"), (4, "fp16", "minimal"),
    (48, "fp32", "full"), (24, "fp32", "balanced"), (16, "fp32", "low"),
    (8, "bf16", "low"),
])
def test_auto_picks_the_fastest_tier_that_fits_the_card(gib: float, dtype: str,
                                                        tier: str) -> None:
    plan = plan_memory("auto", card(gib), dtype, BASE, REFINER)  # type: ignore[arg-type]
    assert plan.tier == tier, plan.reason
    assert plan.reason.startswith(f"auto: {tier}")


def test_the_tiers_need_less_and_less() -> None:
    peaks = [peak_bytes(tier, BASE, REFINER, "fp16") for tier in TIERS]
    assert peaks == sorted(peaks, reverse=True)
    # The stock pair resident in fp16: about 11.5 GB (10^9 bytes) of weights.
    weights = peaks[0] - WORKING_BYTES - CONTEXT_BYTES
    assert 11.0e9 < weights < 11.8e9


def test_without_a_refiner_full_fits_a_smaller_card() -> None:
    assert plan_memory("auto", card(12), "fp16", BASE, None).tier == "full"  # type: ignore[arg-type]


def test_an_explicit_tier_is_used_and_warned_about_when_it_cannot_fit() -> None:
    plan = plan_memory("full", card(8), "fp16", BASE, REFINER)
    assert plan.tier == "full" and plan.warning and "SDXL_MCP_MEMORY=auto" in plan.warning
    assert plan_memory("low", card(24), "fp16", BASE, REFINER).warning is None


def test_on_a_cpu_the_tier_is_reported_not_applied() -> None:
    assert plan_memory("auto", card(None, "cpu"), "fp32", BASE, REFINER).tier == "full"
    low = plan_memory("low", card(None, "cpu"), "fp32", BASE, REFINER)
    assert low.tier == "low" and "reported, not applied" in low.reason


def test_an_unknown_card_keeps_everything_resident() -> None:
    plan = plan_memory("auto", card(None), "fp16", BASE, REFINER)
    assert plan.tier == "full" and "unknown" in plan.reason


# ------------------------------------------------------------------ mechanisms
class Recording(OffloadOps):
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def _name(self, pipe: Any) -> str:
        return "refiner" if isinstance(pipe, StableDiffusionXLImg2ImgPipeline) else "base"

    def to_device(self, pipe: Any, device: str) -> None:
        self.calls.append(("to_device", self._name(pipe)))

    def swap_unets(self, base: Any, refiner: Any, device: str) -> None:
        self.calls.append(("swap_unets", f"{self._name(base)}+{self._name(refiner)}"))

    def model_offload(self, pipe: Any, device: str) -> None:
        self.calls.append(("model_offload", self._name(pipe)))

    def sequential_offload(self, pipe: Any, device: str) -> None:
        self.calls.append(("sequential_offload", self._name(pipe)))

    def tile_vae(self, pipe: Any) -> None:
        self.calls.append(("tile_vae", self._name(pipe)))

    def remove_hooks(self, pipe: Any) -> None:
        self.calls.append(("remove_hooks", self._name(pipe)))


@pytest.fixture
def pipes(tiny_models: tuple[Path, Path]) -> tuple[Any, Any]:
    base = StableDiffusionXLPipeline.from_pretrained(tiny_models[0])
    refiner = StableDiffusionXLImg2ImgPipeline.from_pretrained(
        tiny_models[1], text_encoder_2=base.text_encoder_2, vae=base.vae)
    return base, refiner


@pytest.mark.parametrize(("tier", "calls"), [
    ("full", [("to_device", "base"), ("to_device", "refiner")]),
    ("balanced", [("to_device", "base"), ("to_device", "refiner"),
                  ("swap_unets", "base+refiner")]),
    ("low", [("model_offload", "base"), ("tile_vae", "base"),
             ("model_offload", "refiner"), ("tile_vae", "refiner")]),
    ("minimal", [("sequential_offload", "base"), ("tile_vae", "base"),
                 ("sequential_offload", "refiner"), ("tile_vae", "refiner")]),
])
def test_each_tier_engages_its_mechanism_on_cuda(pipes: tuple[Any, Any], tier: str,
                                                 calls: list[tuple[str, str]]) -> None:
    base, refiner = pipes
    ops = Recording()
    used = place(tier, base, refiner, "cuda:0", ops)  # type: ignore[arg-type]
    assert ops.calls == calls
    # Offloading tiers give the refiner its own copies: one hook chain per pipeline.
    shares = used.text_encoder_2 is base.text_encoder_2 and used.vae is base.vae
    assert shares == (tier in ("full", "balanced"))


@pytest.mark.parametrize("tier", TIERS)
def test_off_cuda_every_tier_just_moves_the_models(pipes: tuple[Any, Any], tier: str) -> None:
    base, refiner = pipes
    ops = Recording()
    used = place(tier, base, refiner, "cpu", ops)
    assert ops.calls == [("to_device", "base"), ("to_device", "refiner")]
    assert used.vae is base.vae


@pytest.mark.parametrize(("tier", "placed", "parked"), [
    ("full", [("to_device", "base")], []),
    ("balanced", [("to_device", "base"), ("remove_hooks", "refiner"),
                  ("swap_unets", "base+refiner")], [("remove_hooks", "base")]),
    ("low", [("model_offload", "base"), ("tile_vae", "base")], [("remove_hooks", "base")]),
    ("minimal", [("sequential_offload", "base"), ("tile_vae", "base")],
     [("remove_hooks", "base")]),
])
def test_a_switched_base_takes_and_leaves_its_tier(
        pipes: tuple[Any, Any], tier: str, placed: list[tuple[str, str]],
        parked: list[tuple[str, str]]) -> None:
    base, refiner = pipes
    ops = Recording()
    place_base(tier, base, refiner, "cuda:0", ops)  # type: ignore[arg-type]
    assert ops.calls == placed
    ops.calls.clear()
    park_base(tier, base, shared_with_refiner=False, ops=ops)  # type: ignore[arg-type]
    assert ops.calls == parked


# ------------------------------------------------------------------ reported
def test_gpu_reports_the_tier_and_why(tmp_path: Path, tiny_models: tuple) -> None:
    proc = run_cli("gpu", tmp_path=tmp_path, SDXL_MCP_MEMORY="low")
    assert proc.returncode == 0, proc.stderr
    engine = json.loads(proc.stdout)["engine"]
    assert engine["memory_tier"] == "low"
    assert "reported, not applied" in engine["memory_reason"]


@pytest.mark.parametrize("tier", TIERS)
def test_each_tiers_real_mechanism_gives_the_same_pixels(
        tiny_models: tuple[Path, Path], tier: str) -> None:
    """diffusers' and accelerate's own offload, engaged with the CPU as the execution
    device: the base and the refiner still make the same latents as resident models."""
    import numpy as np
    import torch

    def latents(pipes: tuple[Any, Any]) -> list[Any]:
        base, refiner = pipes
        for pipe in (base, refiner):
            pipe.set_progress_bar_config(disable=True)

        def seed() -> torch.Generator:
            return torch.Generator("cpu").manual_seed(0)

        common = {"prompt": "a lighthouse", "num_inference_steps": 8, "output_type": "latent"}
        first = base(width=256, height=256, denoising_end=0.8, generator=seed(), **common).images
        refined = refiner(image=first, denoising_start=0.8, generator=seed(), **common).images
        again = base(width=256, height=256, generator=seed(), **common).images
        return [refined.numpy(), again.numpy()]

    def fresh() -> tuple[Any, Any]:
        base = StableDiffusionXLPipeline.from_pretrained(tiny_models[0])
        refiner = StableDiffusionXLImg2ImgPipeline.from_pretrained(
            tiny_models[1], text_encoder_2=base.text_encoder_2, vae=base.vae)
        return base, refiner

    resident = latents(fresh())
    base, refiner = fresh()
    refiner = place(tier, base, refiner, "cpu", offload_off_cuda=True)  # type: ignore[arg-type]
    assert all(np.array_equal(a, b) for a, b in zip(resident, latents((base, refiner)),
                                                    strict=True))
