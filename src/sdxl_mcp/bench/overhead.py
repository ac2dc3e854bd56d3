"""``--overhead``: raw diffusers vs the full stdio MCP path on the same tiny models.

Both paths run warm, interleaved, each in a child process of its own (the
server, and the raw worker of ``sdxl_mcp.bench.rawworker``) on anyio worker
threads, so process state that moves engine speed is alike on both sides. The
report gives end-to-end medians and, per path, the time spent outside the
engine, which the engine's run-to-run noise does not swamp.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
from tqdm import tqdm

from sdxl_mcp.bench.report import spread_row
from sdxl_mcp.bench.workload import PROMPT, server_env, server_params


async def overhead(runs: int, size: int, steps: int) -> dict[str, Any]:
    """Interleaved raw vs server runs, warm; median per-image difference."""
    from mcp import Client

    from sdxl_mcp.schemas import GenerationRequest

    tmp = Path(tempfile.mkdtemp(prefix="sdxl-bench-"))
    env = server_env(tmp / "server", tmp / "logs", SDXL_MCP_MAX_WAIT_S="3600")
    arguments = {"prompt": PROMPT, "width": size, "height": size, "num_inference_steps": steps,
                 "refiner_mode": "ensemble", "high_noise_frac": 0.8, "use_refinement": True}
    # The server's default guidance, so both paths do the same work.
    guidance = GenerationRequest(prompt=PROMPT).guidance_scale
    raw_runs: list[dict[str, float]] = []
    server_times: list[float] = []
    server_timings: list[dict[str, float]] = []
    raw = await anyio.to_thread.run_sync(RawWorker, env)
    try:
        async with Client(server_params(env), read_timeout_seconds=3600) as client:

            async def server_run(seed: int) -> float:
                started = time.perf_counter()
                result = await client.call_tool("generate_image", {**arguments, "seed": seed})
                elapsed = time.perf_counter() - started
                if result.is_error:
                    raise RuntimeError(f"server run failed: {result.content}")
                server_timings.append(result.structured_content["timings"])  # type: ignore[index]
                return elapsed

            def raw_run(seed: int) -> dict[str, float]:
                return raw.run({"prompt": PROMPT, "size": size, "steps": steps,
                                "high_noise_frac": 0.8, "seed": seed, "guidance_scale": guidance,
                                "out_path": str(tmp / f"raw-{seed}.png")})

            # Warm both paths (model load, first-call allocations) before measuring.
            await anyio.to_thread.run_sync(raw_run, 0)
            await server_run(0)
            server_timings.clear()
            with tqdm(total=2 * runs, desc="overhead", file=sys.stderr, unit="run") as bar:
                for i in range(1, runs + 1):
                    # Interleaved so slow drift on a shared machine hits both paths alike.
                    raw_runs.append(await anyio.to_thread.run_sync(raw_run, i))
                    bar.update()
                    server_times.append(await server_run(i))
                    bar.update()
    finally:
        await anyio.to_thread.run_sync(raw.close)
    return overhead_report(size, steps, raw_runs, server_times, server_timings)


class RawWorker:
    """The raw diffusers baseline in a child process (``sdxl_mcp.bench.rawworker``)."""

    def __init__(self, env: dict[str, str]) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "sdxl_mcp.bench.rawworker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
        )
        self._read()  # {"ready": true} once its pipelines are loaded

    def run(self, arguments: dict[str, Any]) -> dict[str, float]:
        assert self._proc.stdin is not None
        self._proc.stdin.write(json.dumps(arguments) + "\n")
        self._proc.stdin.flush()
        return dict(self._read())

    def _read(self) -> dict[str, Any]:
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError("the raw diffusers worker exited; its error is above on stderr")
        return dict(json.loads(line))

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def overhead_report(
    size: int,
    steps: int,
    raw_runs: list[dict[str, float]],
    server_times: list[float],
    server_timings: list[dict[str, float]],
) -> dict[str, Any]:
    """End-to-end medians, and the same split for both paths: engine vs outside it.

    On a busy machine the engine's run-to-run spread (seconds at 1024²) swamps a
    difference of milliseconds end to end. Each path also times its own engine
    span (base + refiner + decode), so "outside the engine" (for raw: the PNG
    write; for the server: PNG, preview, sidecar, catalog, JSON, stdio) is
    measured per run without that noise.
    """
    med = statistics.median
    raw_times = [r["total"] for r in raw_runs]
    raw_engine = [r["engine"] for r in raw_runs]
    server_engine = [t["base"] + t["refiner"] + t["decode"] for t in server_timings]
    raw_outside = [r["total"] - r["engine"] for r in raw_runs]
    server_outside = [total - engine for total, engine in zip(server_times, server_engine,
                                                              strict=True)]
    added_ms = (med(server_times) - med(raw_times)) * 1000
    added_outside_ms = (med(server_outside) - med(raw_outside)) * 1000
    phases = {k: round(med(t[k] for t in server_timings), 4)
              for k in ("queue_wait", "model_load", "base", "refiner", "decode", "save")}

    def row(path: str, values: list[float]) -> dict[str, Any]:
        return spread_row("path", path, values)

    return {
        "benchmark": "overhead",
        "size": size,
        "steps": steps,
        "runs": len(raw_runs),
        "raw_s": raw_times,
        "server_s": server_times,
        "raw_phases_s": raw_runs,
        "raw_median_s": round(med(raw_times), 4),
        "server_median_s": round(med(server_times), 4),
        "added_ms_per_image": round(added_ms, 1),
        "ratio": round(med(server_times) / med(raw_times), 4),
        "engine_ratio": round(med(server_engine) / med(raw_engine), 4),
        "raw_outside_engine_median_ms": round(med(raw_outside) * 1000, 1),
        "server_outside_engine_median_ms": round(med(server_outside) * 1000, 1),
        "added_outside_engine_ms": round(added_outside_ms, 1),
        "server_phase_medians_s": phases,
        "target_ms": 50,
        "table": [
            row("raw diffusers, end to end", raw_times),
            row("stdio MCP server, end to end", server_times),
            {"path": "added per image, end to end", "median_s": round(added_ms / 1000, 4),
             "min_s": None, "max_s": None},
            row("raw: engine (base+refiner+decode)", raw_engine),
            row("server: engine (base+refiner+decode)", server_engine),
            row("raw: outside the engine (PNG)", raw_outside),
            row("server: outside the engine", server_outside),
            {"path": "added outside the engine", "median_s": round(added_outside_ms / 1000, 4),
             "min_s": None, "max_s": None},
        ],
    }
