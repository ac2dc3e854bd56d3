"""``--sweep``: engine-only seconds per image on the tiny models by resolution and steps.

The production engine (``SDXLEngine``) is loaded once and warmed at 256² before
the grid (256/512/1024 px x 20/50 steps) is timed; no service, storage or MCP.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from tqdm import tqdm

from sdxl_mcp.bench.workload import PROMPT


def sweep() -> dict[str, Any]:
    """One row per (size, steps): total and per-phase seconds."""
    from sdxl_mcp.backend.base import CancelToken
    from sdxl_mcp.engine.sdxl import SDXLEngine
    from sdxl_mcp.schemas import GenerationRequest
    from sdxl_mcp.settings import Settings

    engine = SDXLEngine(Settings(_env_file=None, base_model="tiny-random",  # type: ignore[call-arg]
                                 refiner_model="tiny-random", preload=False))
    engine.load()
    engine.generate(GenerationRequest(prompt=PROMPT, width=256, height=256,
                                      num_inference_steps=20), seed=0)
    rows = []
    grid = [(s, n) for s in (256, 512, 1024) for n in (20, 50)]
    for size, steps in tqdm(grid, desc="sweep", file=sys.stderr):
        request = GenerationRequest(prompt=PROMPT, width=size, height=size,
                                    num_inference_steps=steps)
        started = time.perf_counter()
        out = engine.generate(request, seed=1, cancel=CancelToken())
        rows.append({"size": f"{size}x{size}", "steps": f"{out.steps_base}+{out.steps_refiner}",
                     "total_s": round(time.perf_counter() - started, 3),
                     "base_s": out.timings["base"], "refiner_s": out.timings["refiner"],
                     "decode_s": out.timings["decode"]})
    return {"benchmark": "sweep", "models": "tiny-random", "table": rows}
