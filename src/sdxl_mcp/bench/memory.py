"""``--full-size`` rows for the memory tiers: smaller cards emulated on a big one.

One table (:func:`tier_tables`): for caps of 8, 12 and 16 GB
(``torch.cuda.set_per_process_memory_fraction``), the tier ``auto`` picks for
that card (``engine.memory``) and the next faster one, each placed with the
engine's own ``engine.offload.place`` on fresh pipelines of ``--models`` in
``--settings-dtype``: one base + refiner image (ensemble, ``--steps`` or 10
steps, ``--size``²), its seconds and peak allocated memory, or "out of
memory". Without CUDA the caps cannot apply: the rows run uncapped and say so
(the code path is what the CPU test checks).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import torch

from sdxl_mcp.bench.pipelines import build_pipelines
from sdxl_mcp.engine.devices import TORCH_DTYPES, free_device_memory, is_out_of_memory
from sdxl_mcp.engine.footprint import reference_param_counts
from sdxl_mcp.engine.memory import TIERS, plan_memory
from sdxl_mcp.engine.offload import place
from sdxl_mcp.engine.precision import GIB, HardwareFacts

CAPS_GB = (8, 12, 16)
STEPS = 10


def tier_tables(args: argparse.Namespace, device: str,
                progress: Callable[[str], None] | None = None
                ) -> dict[str, list[dict[str, Any]]]:
    """The ``--full-size`` report's memory-tier table, keyed by its title."""
    say = progress or (lambda message: None)
    steps = args.steps or STEPS
    rows = []
    cuda = device.startswith("cuda")
    total = torch.cuda.get_device_properties(0).total_memory if cuda else None
    for cap in CAPS_GB:
        hardware = HardwareFacts(kind="cuda", device=device, total_memory_bytes=cap * GIB)
        picked = plan_memory("auto", hardware, args.settings_dtype,  # type: ignore[arg-type]
                             reference_param_counts("base"), reference_param_counts("refiner"))
        index = TIERS.index(picked.tier)
        for tier in (TIERS[index - 1:index + 1] if index > 0 else (picked.tier,)):
            if cuda and total is not None:
                torch.cuda.set_per_process_memory_fraction(min(1.0, cap * GIB / total))
            row = {"card_gb": cap, "tier": tier, "auto": tier == picked.tier,
                   "capped": cuda, **_one_image(args, device, tier, steps)}
            rows.append(row)
            say(f"{cap} GB, {tier}: {row}")
    if cuda:
        torch.cuda.set_per_process_memory_fraction(1.0)
    title = (f"memory tiers: base + refiner, {args.settings_dtype}, {args.size}², {steps} "
             "steps, cards emulated by capping this one")
    return {title: rows}


def _one_image(args: argparse.Namespace, device: str, tier: str, steps: int) -> dict[str, Any]:
    dtype = TORCH_DTYPES[args.settings_dtype]
    base = refiner = None
    try:
        base, refiner = build_pipelines(args.models, dtype, "cpu")
        for pipe in (base, refiner):
            pipe.set_progress_bar_config(disable=True)
        refiner = place(tier, base, refiner, device)  # type: ignore[arg-type]
        assert refiner is not None
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        common = {"prompt": "bench", "num_inference_steps": steps, "output_type": "latent",
                  "generator": torch.Generator("cpu").manual_seed(0)}
        started = time.perf_counter()
        latents = base(width=args.size, height=args.size, denoising_end=0.8, **common).images
        refiner(image=latents, denoising_start=0.8, **common)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        peak = torch.cuda.max_memory_allocated() / GIB if device.startswith("cuda") else None
        return {"seconds": round(seconds, 2),
                "peak_gb": round(peak, 2) if peak is not None else None, "error": None}
    except Exception as exc:
        if not is_out_of_memory(exc):
            raise
        return {"seconds": None, "peak_gb": None, "error": "out of memory"}
    finally:
        del base, refiner
        free_device_memory()
