"""``--exit``: seconds from stdin closing, SIGTERM or SIGINT to the exit of ``sdxl-mcp serve``.

One phase at a time, on the tiny models, over raw JSON-RPC on the child's pipes:
importing torch and loading (0.3 s after ``initialize``), a generation queued
while the models load, idle (models ready), and generating (a 1024² job
running). Each row is the median of ``runs`` starts, with the exit codes seen.
docs/RELIABILITY.md "Exit times" quotes the table.
"""

from __future__ import annotations

import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sdxl_mcp.bench.workload import PROMPT, server_env

PHASES = ("loading", "queued while loading", "idle", "generating")
HOW = ("stdin closed", "SIGTERM", "SIGINT")
#: How long after the handshake each phase is caught.
_SETTLE_S = {"loading": 0.3, "queued while loading": 0.3, "idle": 12.0, "generating": 12.0}
_HANDSHAKE = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-11-25", "capabilities": {},
    "clientInfo": {"name": "sdxl-mcp bench", "version": "1"}}}


def _call(size: int, steps: int) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "generate_image",
        "arguments": {"prompt": PROMPT, "width": size, "height": size,
                      "num_inference_steps": steps}}}


def _one(phase: str, how: str, root: Path) -> tuple[float, int]:
    env = server_env(root / "images", root / "logs", HF_HUB_OFFLINE="1")
    child = subprocess.Popen([sys.executable, "-m", "sdxl_mcp", "serve"], env=env,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL)
    assert child.stdin is not None and child.stdout is not None

    def send(message: dict[str, Any]) -> None:
        assert child.stdin is not None
        child.stdin.write((json.dumps(message) + "\n").encode())
        child.stdin.flush()

    try:
        send(_HANDSHAKE)
        child.stdout.readline()
        send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        if phase == "queued while loading":
            send(_call(256, 20))
        time.sleep(_SETTLE_S[phase])
        if phase == "generating":
            send(_call(1024, 50))
            time.sleep(2.0)
        started = time.perf_counter()
        if how == "stdin closed":
            child.stdin.close()
        else:
            child.send_signal(signal.SIGTERM if how == "SIGTERM" else signal.SIGINT)
        code = child.wait(60)
        return time.perf_counter() - started, code
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def exits(runs: int) -> dict[str, Any]:
    """Median seconds to exit, per phase and way of stopping."""
    rows = []
    for phase in PHASES:
        for how in HOW:
            seconds, codes = [], set()
            for _ in range(max(1, runs)):
                with tempfile.TemporaryDirectory(prefix="sdxl-exit-") as tmp:
                    took, code = _one(phase, how, Path(tmp))
                seconds.append(took)
                codes.add(code)
            rows.append({"phase": phase, "stop": how,
                         "median_s": round(statistics.median(seconds), 3),
                         "max_s": round(max(seconds), 3), "exit_codes": sorted(codes)})
    return {"benchmark": "exit", "runs": max(1, runs), "table": rows}
