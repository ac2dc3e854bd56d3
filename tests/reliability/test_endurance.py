"""Endurance: 50 real generations in one process, memory and file handles flat.

The real tiny SDXL engine through ``ImageService`` (the path every transport
uses), 256x256, quality "fast" (20 steps, no refiner). After a warm-up of 5
generations the process's RSS, open files, file descriptors and threads are
measured, and again after the 50th; the growth must stay bounded. The numbers
are always printed (``pytest -s``) and, with ``SDXL_MCP_WRITE_ENDURANCE=1``,
written to ``docs/reliability-endurance.json`` so RELIABILITY.md's figures come
from a command:

    SDXL_MCP_WRITE_ENDURANCE=1 .venv/bin/python -m pytest -m endurance -s
"""

from __future__ import annotations

import gc
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import pytest

from sdxl_mcp.schemas import GenerationRequest
from sdxl_mcp.service.facade import ImageService
from sdxl_mcp.service.generate import generate as generate_image
from sdxl_mcp.settings import Settings

pytestmark = pytest.mark.endurance

GENERATIONS = 50
WARMUP = 5
#: Bounds on growth between the end of the warm-up and the end of the run.
MAX_RSS_GROWTH_MB = 150.0
MAX_FD_GROWTH = 2
MAX_THREAD_GROWTH = 2
REPORT = Path(__file__).resolve().parents[2] / "docs" / "reliability-endurance.json"
WRITE_ENV = "SDXL_MCP_WRITE_ENDURANCE"
#: Read at import: conftest's autouse fixture removes every SDXL_MCP_* variable
#: from the environment before each test runs.
WRITE_REPORT = os.environ.get(WRITE_ENV) == "1"


def _snapshot() -> dict[str, float]:
    gc.collect()
    proc = psutil.Process()
    return {
        "rss_mb": round(proc.memory_info().rss / 2**20, 1),
        "open_files": len(proc.open_files()),
        "num_fds": proc.num_fds(),
        "threads": proc.num_threads(),
    }


async def test_fifty_generations_keep_memory_and_file_handles_flat(
    tiny_models: tuple[Path, Path], make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(max_wait_s=600.0)
    load_at_start = os.getloadavg()[0]
    durations: list[float] = []
    paths: list[str] = []
    started = time.perf_counter()
    async with ImageService(settings) as service:
        for i in range(GENERATIONS):
            if i == WARMUP:
                after_warmup = _snapshot()
            request = GenerationRequest(prompt=f"endurance run, image {i}", width=256,
                                        height=256, quality="fast", seed=1000 + i)
            t0 = time.perf_counter()
            result = await generate_image(service, request)
            durations.append(time.perf_counter() - t0)
            assert result.status == "succeeded", result.message
            assert not result.cached
            paths.append(str(result.path))
        at_end = _snapshot()
        queue = service.queue_status()
        engine = service.engine_status()
    total_s = time.perf_counter() - started

    growth = {key: round(at_end[key] - after_warmup[key], 1) for key in at_end}
    report: dict[str, Any] = {
        "generations": GENERATIONS,
        "warmup": WARMUP,
        "request": {"width": 256, "height": 256, "quality": "fast", "num_inference_steps": 20,
                    "use_refinement": False},
        "after_warmup": after_warmup,
        "at_end": at_end,
        "growth": growth,
        "bounds": {"rss_mb": MAX_RSS_GROWTH_MB, "num_fds": MAX_FD_GROWTH,
                   "open_files": MAX_FD_GROWTH, "threads": MAX_THREAD_GROWTH},
        "seconds": {
            "total": round(total_s, 1),
            "per_generation_mean": round(statistics.mean(durations), 3),
            "per_generation_median": round(statistics.median(durations), 3),
            "per_generation_max": round(max(durations), 3),
            "first_generation_incl_model_load": round(durations[0], 3),
        },
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "device": engine.device,
            "dtype": engine.dtype,
            # Timings are only comparable on a quiet machine: this says how quiet it was.
            "load_avg_1min": {"start": round(load_at_start, 2),
                              "end": round(os.getloadavg()[0], 2)},
        },
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": f"{WRITE_ENV}=1 .venv/bin/python -m pytest -m endurance -s",
    }
    print("\nendurance:", json.dumps(report, indent=2))
    if WRITE_REPORT:
        REPORT.parent.mkdir(parents=True, exist_ok=True)
        REPORT.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"endurance: wrote {REPORT}")

    assert len(set(paths)) == GENERATIONS and all(Path(p).is_file() for p in paths)
    assert queue["running"] == 0 and queue["waiting"] == 0
    assert growth["rss_mb"] < MAX_RSS_GROWTH_MB, report
    open_now = [f.path for f in psutil.Process().open_files()]
    assert growth["num_fds"] <= MAX_FD_GROWTH, (report, open_now)
    assert growth["open_files"] <= MAX_FD_GROWTH, (report, open_now)
    assert growth["threads"] <= MAX_THREAD_GROWTH, report
