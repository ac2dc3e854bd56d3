"""``--scaling``: images per second through ImageService on Ray Serve, 1 vs 2 CPU replicas.

One torch thread per replica, so two replicas on two cores can show the gain.
Every replica is warmed before the clock starts; Ray is shut down after each
replica count, also on failure.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
from tqdm import tqdm

from sdxl_mcp.bench.workload import PROMPT


async def scaling(runs: int, size: int, steps: int, concurrency: int) -> dict[str, Any]:
    """Throughput with 1 and 2 replicas and their ratio."""
    from sdxl_mcp.settings import Settings

    tmp = Path(tempfile.mkdtemp(prefix="sdxl-bench-"))
    rows = []
    total = max(concurrency, runs * concurrency // 2 * 2)
    for replicas in (1, 2):
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None, backend="ray", replicas=replicas, ray_torch_threads=1,
            ray_num_cpus=1, base_model="tiny-random", refiner_model="tiny-random",
            preload=False, output_dir=tmp / f"r{replicas}", log_dir=tmp / "logs",
            max_queue=total, max_wait_s=3600,
        )
        elapsed = await _throughput(settings, total, concurrency, size, steps)
        rows.append({"replicas": replicas, "images": total, "concurrency": concurrency,
                     "seconds": round(elapsed, 3),
                     "images_per_s": round(total / elapsed, 4)})
    ratio = rows[1]["images_per_s"] / rows[0]["images_per_s"]
    return {"benchmark": "scaling", "size": size, "steps": steps,
            "throughput_ratio_2_vs_1": round(ratio, 3), "table": rows}


async def _throughput(
    settings: Any, total: int, concurrency: int, size: int, steps: int
) -> float:
    """Seconds for ``total`` generations at ``concurrency`` through the service."""
    from sdxl_mcp.cluster.ray_backend import RayBackend
    from sdxl_mcp.schemas import GenerationRequest
    from sdxl_mcp.service.facade import ImageService
    from sdxl_mcp.service.generate import generate

    def request(i: int) -> GenerationRequest:
        return GenerationRequest(prompt=PROMPT, width=size, height=size,
                                 num_inference_steps=steps, seed=i)

    backend = RayBackend(settings)
    await anyio.to_thread.run_sync(backend.load)
    try:
        async with ImageService(settings, backend=backend) as service:
            # Warm every replica before timing.
            async with anyio.create_task_group() as tg:
                for i in range(settings.replicas):
                    tg.start_soon(generate, service, request(i), None, 3600.0)
            limiter = anyio.Semaphore(concurrency)
            with tqdm(total=total, desc=f"{settings.replicas} replica(s)",
                      file=sys.stderr) as bar:

                async def one(i: int) -> None:
                    async with limiter:
                        await generate(service, request(100 + i), None, 3600.0)
                        bar.update()

                started = time.perf_counter()
                async with anyio.create_task_group() as tg:
                    for i in range(total):
                        tg.start_soon(one, i)
                return time.perf_counter() - started
    finally:
        await anyio.to_thread.run_sync(backend.shutdown)
