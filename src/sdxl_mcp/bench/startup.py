"""``--startup``: spawn ``sdxl-mcp serve``; seconds to initialize, tools listed, models ready.

It also reports what the tool definitions cost an agent: the characters of
JSON of the ``tools/list`` answer (``entrypoints.mcp.schema.tools_list_size``) and
the budget docs/TOOLS.md states for it.

Each run also times the floor no MCP server in Python can beat on this machine:
a fresh interpreter importing the MCP SDK's server and exiting.
"""

from __future__ import annotations

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
from sdxl_mcp.bench.workload import server_env, server_params
from sdxl_mcp.entrypoints.mcp.schema import TOOLS_LIST_BUDGET, tools_list_size


async def startup(runs: int) -> dict[str, Any]:
    """``runs`` cold starts with PRELOAD on; medians of each milestone and of the floor."""
    from mcp import Client

    tmp = Path(tempfile.mkdtemp(prefix="sdxl-bench-"))
    init_times: list[float] = []
    listed_times: list[float] = []
    ready_times: list[float] = []
    floor_times: list[float] = []
    tools_chars = 0
    env = server_env(tmp / "out", tmp / "logs", SDXL_MCP_PRELOAD="true")
    with tqdm(total=runs, desc="startup", file=sys.stderr, unit="run") as bar:
        for _ in range(runs):
            floor_times.append(await anyio.to_thread.run_sync(_sdk_import_floor))
            started = time.perf_counter()
            async with Client(server_params(env), read_timeout_seconds=600) as client:
                init_times.append(time.perf_counter() - started)
                tools = (await client.list_tools()).tools
                listed_times.append(time.perf_counter() - started)
                tools_chars = tools_list_size(tools)
                while True:
                    status = await client.call_tool("gpu_status", {})
                    state = (status.structured_content or {}).get("engine", {}).get("state")
                    if state in ("ready", "failed"):
                        break
                    await anyio.sleep(0.02)
                ready_times.append(time.perf_counter() - started)
            bar.update()

    def row(milestone: str, values: list[float]) -> dict[str, Any]:
        return spread_row("milestone", milestone, values)

    return {
        "benchmark": "startup",
        "runs": runs,
        "initialize_s": [round(t, 4) for t in init_times],
        "tools_listed_s": [round(t, 4) for t in listed_times],
        "ready_s": [round(t, 4) for t in ready_times],
        "sdk_import_floor_s": [round(t, 4) for t in floor_times],
        "initialize_median_s": round(statistics.median(init_times), 4),
        "tools_listed_median_s": round(statistics.median(listed_times), 4),
        "ready_median_s": round(statistics.median(ready_times), 4),
        "sdk_import_floor_median_s": round(statistics.median(floor_times), 4),
        "target_initialize_s": 1.0,
        "tools_list_chars": tools_chars,
        "tools_list_budget_chars": TOOLS_LIST_BUDGET,
        "table": [
            row("floor: python + MCP SDK import", floor_times),
            row("initialize answered", init_times),
            row("tools listed", listed_times),
            row("models ready (PRELOAD)", ready_times),
        ],
        "tables": {"tool definitions (tools/list, characters of JSON)": [
            {"measure": "tools/list", "chars": tools_chars, "budget": TOOLS_LIST_BUDGET}]},
    }


def _sdk_import_floor() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import mcp.server.mcpserver"], check=True)
    return time.perf_counter() - started
