"""Ray's head survives the thread that started it.

Ray starts its head processes (gcs_server, raylet) with ``PR_SET_PDEATHSIG``,
which on Linux fires when the *thread* that forked them exits. The service
loads the backend in an AnyIO worker thread (the preload), and AnyIO retires
worker threads that stay idle: before the fix the head died with that thread
and the next generation, then the whole server, went with it.

A fresh process (Ray must not be running already, as in test_ray.py's module),
AnyIO's idle time cut to half a second, the preload path, a wait long enough
for the loading thread to retire, then a generation.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("ray")

SCRIPT = textwrap.dedent("""
    import sys, threading, time
    import anyio
    from anyio._backends import _asyncio
    from sdxl_mcp.schemas import GenerationRequest
    from sdxl_mcp.service.facade import ImageService
    from sdxl_mcp.service.generate import generate
    from sdxl_mcp.settings import Settings

    _asyncio.WorkerThread.MAX_IDLE_TIME = 0.5  # AnyIO's is 10 s

    async def main():
        root = sys.argv[1]
        settings = Settings(_env_file=None, backend="ray", replicas=1, ray_num_cpus=1,
                            base_model="tiny-random", refiner_model="", preload=True,
                            output_dir=root + "/images", log_dir=root + "/logs",
                            max_wait_s=300)
        async with ImageService(settings) as svc:
            while svc.engine_state() != "ready":
                assert svc.engine_state() != "failed", svc.backend.status().error
                await anyio.sleep(0.2)
            def workers():
                return {t.ident for t in threading.enumerate() if t.name == "AnyIO worker thread"}

            loaders = workers()
            # AnyIO retires idle workers when it hands out another one: rounds of two
            # concurrent calls, a pause past the idle time, then one call, until every
            # worker alive at "ready" (the loader among them) has been retired.
            for _ in range(30):
                if not loaders & workers():
                    break
                async with anyio.create_task_group() as tg:
                    for seconds in (0.05, 0.1):
                        tg.start_soon(anyio.to_thread.run_sync, time.sleep, seconds)
                await anyio.sleep(0.7)
                await anyio.to_thread.run_sync(time.sleep, 0.01)
                await anyio.sleep(0.1)
            print("LOADER RETIRED", not (loaders & workers()))
            result = await generate(svc, GenerationRequest(
                prompt="a red barn", width=256, height=256, num_inference_steps=20, seed=1))
            print("RESULT", result.status)
            svc.backend.shutdown()

    anyio.run(main)
""")


def test_the_ray_head_outlives_the_thread_that_loaded_the_backend(tmp_path: Path,
                                                                  tiny_models: tuple) -> None:
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True,
                          text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "LOADER RETIRED True" in proc.stdout, proc.stdout  # the situation is real
    assert "RESULT succeeded" in proc.stdout, proc.stderr[-3000:]
