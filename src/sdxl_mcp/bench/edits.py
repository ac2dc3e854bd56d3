"""``--full-size`` tables for edits and variations: what ``edit_image`` and ``vary_image`` cost.

Two tables, each self-contained (it builds its own random-weight pipelines with
``bench.pipelines.build_pipelines``):

* :func:`edit_run`: one image-to-image edit (the engine's ``from_pipe`` img2img
  pipeline over the resident base) at ``size``², strength 0.6, 30 steps
  (``int(30 x 0.6)`` = 18 run, diffusers' rule), decode included;
* :func:`variations_run`: ``count`` variations of one request (base stage,
  then a VAE decode per image), one by one vs batched in one pipeline call
  with ``num_images_per_prompt`` and a CPU generator per seed, exactly the call
  ``engine.batch`` makes; ``engine_default`` says which one the engine picks on
  this device (``engine.batch.batches`` with SDXL_MCP_BATCH_VARIATIONS=auto).

Figures are not asserted anywhere; tests run the code path on the tiny configs.
Importing this module imports torch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from diffusers import StableDiffusionXLImg2ImgPipeline
from PIL import Image

from sdxl_mcp.bench.pipelines import Timer, build_pipelines, decode_latents
from sdxl_mcp.engine.batch import batches
from sdxl_mcp.engine.devices import TORCH_DTYPES

PROMPT = "futuristic AI agent at a holographic desk"
EDIT_STRENGTH = 0.6
EDIT_STEPS = 30
VARIATION_COUNT = 4
VARIATION_STEPS = 30

Say = Callable[[str], None]


def _quiet(message: str) -> None:
    del message


def _peak_gb(device: str) -> float | None:
    if not device.startswith("cuda"):
        return None
    return round(torch.cuda.max_memory_allocated(device) / 1024**3, 2)


def _reset(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _decode(base: Any, latents: torch.Tensor) -> list[torch.Tensor]:
    """One VAE decode per image, as the engine decodes them."""
    return [decode_latents(base.vae, z) for z in latents.split(1)]


def _start(what: str, device: str, dtype_name: str, kind: str,
           progress: Say | None) -> tuple[Say, Any, Timer]:
    """A run's progress line, its freshly built base pipeline and its timer."""
    say = progress or _quiet
    _reset(device)
    say(f"{what} ({dtype_name}): building models")
    base, _ = build_pipelines(kind, TORCH_DTYPES[dtype_name], device)
    return say, base, Timer(device)


def edit_run(
    *, device: str, dtype_name: str, size: int = 1024, steps: int = EDIT_STEPS,
    strength: float = EDIT_STRENGTH, kind: str = "sdxl", progress: Say | None = None,
) -> list[dict[str, Any]]:
    """One img2img edit of a ``size``² image: seconds, it/s, peak memory."""
    say, base, timer = _start("edit", device, dtype_name, kind, progress)
    edit = StableDiffusionXLImg2ImgPipeline.from_pipe(base)  # shares every weight
    edit.set_progress_bar_config(disable=True)
    source = Image.fromarray(
        np.random.RandomState(0).randint(0, 256, (size, size, 3), dtype=np.uint8))

    def run(n: int) -> Any:
        return edit(prompt=PROMPT, image=source, strength=strength, num_inference_steps=n,
                    generator=torch.Generator("cpu").manual_seed(0), output_type="np").images

    say(f"edit ({dtype_name}): warm-up")
    run(4)
    say(f"edit ({dtype_name}): {steps} steps at strength {strength}")
    seconds, _ = timer.time(lambda: run(steps))
    steps_run = max(1, int(steps * strength))
    row = {"what": "img2img edit", "size": size, "dtype": dtype_name, "strength": strength,
           "steps": steps, "steps_run": steps_run, "edit_s": round(seconds, 3),
           "it_s_incl_decode": round(steps_run / seconds, 3), "peak_memory_gb": _peak_gb(device)}
    return [row]


def variations_run(
    *, device: str, dtype_name: str, size: int = 1024, steps: int = VARIATION_STEPS,
    count: int = VARIATION_COUNT, kind: str = "sdxl", progress: Say | None = None,
) -> list[dict[str, Any]]:
    """``count`` variations one by one, then batched: seconds, per image, peak memory."""
    say, base, timer = _start("variations", device, dtype_name, kind, progress)
    seeds = list(range(100, 100 + count))

    def generate(batch: list[int]) -> list[torch.Tensor]:
        generators = [torch.Generator("cpu").manual_seed(s) for s in batch]
        latents = base(prompt=PROMPT, width=size, height=size, num_inference_steps=steps,
                       num_images_per_prompt=len(batch), output_type="latent",
                       generator=generators if len(batch) > 1 else generators[0]).images
        return _decode(base, latents)

    say(f"variations ({dtype_name}): warm-up")
    base(prompt=PROMPT, width=size, height=size, num_inference_steps=2, output_type="latent",
         num_images_per_prompt=2)
    rows: list[dict[str, Any]] = []
    for mode in ("one by one", "batched"):
        say(f"variations ({dtype_name}): {count} {mode}, {steps} steps")
        _reset(device)
        if mode == "batched":
            seconds, _ = timer.time(lambda: generate(seeds))
        else:
            seconds, _ = timer.time(lambda: [generate([s]) for s in seeds])
        first = rows[0]["total_s"] if rows else seconds
        rows.append({
            "mode": mode, "count": count, "size": size, "dtype": dtype_name, "steps": steps,
            "total_s": round(seconds, 3), "s_per_image": round(seconds / count, 3),
            "speedup": round(first / seconds, 3), "peak_memory_gb": _peak_gb(device),
            "engine_default": (mode == "batched") == batches("auto", device, count),
        })
    return rows
