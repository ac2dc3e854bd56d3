"""``--full-size`` rows for models and samplers: what a switch and each sampler cost.

Two tables (:func:`model_tables`), on the base pipeline of ``--models`` (real SDXL
configs, random weights) in ``--settings-dtype`` at ``--size``:

* samplers: one row per A1111 sampler name at 30 steps (base only, latents, CFG),
  seconds and it/s: a second-order sampler (Heun, DPM++ SDE) runs two UNet calls
  per step but the last, so it costs about twice as much;
* model switch: the engine's own switch (``engine.models.BaseModels.use``) from
  the base on the device to a second base, once loaded from disk (a diffusers
  folder the bench writes; a single-file checkpoint adds its key conversion)
  and once from the CPU RAM cache, and back.

Timings are CUDA-event stream time on a GPU (``Timer``) or wall time for the
switch, which is host work (disk, copies). Importing this module imports torch.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from diffusers import StableDiffusionXLPipeline

from sdxl_mcp.bench.pipelines import Timer, build_pipelines
from sdxl_mcp.engine.devices import TORCH_DTYPES
from sdxl_mcp.engine.models import BaseModels
from sdxl_mcp.engine.offload import park_base, place_base
from sdxl_mcp.engine.samplers import SAMPLERS, swapped_samplers

SAMPLER_STEPS = 30
GUIDANCE = 5.0


def model_tables(args: argparse.Namespace, device: str,
                 progress: Callable[[str], None] | None = None
                 ) -> dict[str, list[dict[str, Any]]]:
    """The ``--full-size`` report's sampler and model-switch tables, keyed by title."""
    say = progress or (lambda message: None)
    dtype = TORCH_DTYPES[args.settings_dtype]
    base, _ = build_pipelines(args.models, dtype, device)
    base.set_progress_bar_config(disable=True)
    steps = args.steps or SAMPLER_STEPS
    samplers = sampler_rows(base, device, args.size, steps, say)
    switch = switch_rows(base, device, dtype, say)
    return {
        f"samplers: base only, {args.settings_dtype}, {args.size}², {steps} steps, "
        f"CFG {GUIDANCE:g}": samplers,
        f"model switch: {args.settings_dtype} base, disk (diffusers folder) vs CPU RAM": switch,
    }


def sampler_rows(base: Any, device: str, size: int, steps: int,
                 say: Callable[[str], None]) -> list[dict[str, Any]]:
    """One row per sampler: seconds for ``steps`` steps and it/s (after a warm-up step)."""
    timer = Timer(device)
    rows = []
    for name in SAMPLERS:
        with swapped_samplers([base], name):
            def run(n: int) -> Any:
                return base(prompt="bench", width=size, height=size, num_inference_steps=n,
                            guidance_scale=GUIDANCE, output_type="latent",
                            generator=torch.Generator("cpu").manual_seed(0)).images

            run(2)  # warm-up (a multistep sampler needs two steps to use its history)
            seconds, _ = timer.time(lambda: run(steps))
        rows.append({"sampler": name, "steps": steps, "seconds": round(seconds, 3),
                     "it_per_s": round(steps / seconds, 2)})
        say(f"sampler {name}: {seconds:.2f} s")
    return rows


def switch_rows(base: Any, device: str, dtype: torch.dtype,
                say: Callable[[str], None]) -> list[dict[str, Any]]:
    """The engine's switch to a second base: from disk, back from CPU RAM, and again."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="sdxl-bench-model-") as scratch:
        folder = Path(scratch) / "second"
        started = time.perf_counter()
        base.save_pretrained(folder)
        say(f"wrote the second base in {time.perf_counter() - started:.1f} s")
        # The full tier's placement, as the engine does it on a card that fits both.
        models = BaseModels("first", base, device, capacity=1,
                            place=lambda pipe: place_base("full", pipe, None, device),
                            park=lambda pipe, shared: park_base("full", pipe, shared))

        def load() -> Any:
            pipe = StableDiffusionXLPipeline.from_pretrained(folder, dtype=dtype)
            pipe.set_progress_bar_config(disable=True)
            return pipe

        for label, name in (("disk (from_pretrained, then to the device)", "second"),
                            ("CPU RAM cache (back to the first)", "first"),
                            ("CPU RAM cache (the second again)", "second")):
            seconds = models.use(name, load, None, 0)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            rows.append({"switch to": name, "from": label, "seconds": round(seconds, 3)})
            say(f"switch to {name} from {label}: {seconds:.2f} s")
    return rows
