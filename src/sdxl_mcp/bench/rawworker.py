"""``python -m sdxl_mcp.bench.rawworker``: the overhead benchmark's raw baseline.

The server path runs the engine in a child process, on anyio worker threads.
The raw diffusers baseline runs the same way here, in its own child process on
anyio worker threads, so process state that shifts engine speed (allocator
arenas, page faults, thread pools) is alike on both sides, and the difference
left is what the server adds. Run in the benchmark's own process instead, the
1024² baseline's engine came out 6.7 % (1.2 s) faster than the same calls in the
server (docs/bench/overhead-20261126T040815Z.json; docs/PERFORMANCE.md).

Protocol, one JSON object per line: ``{"ready": true}`` once the pipelines are
loaded, then for each request line (``RawPipelines.run``'s keyword arguments)
one line of phase timings. A failure ends the process; the caller sees EOF.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import anyio
import anyio.to_thread

if TYPE_CHECKING:
    from sdxl_mcp.bench.pipelines import RawPipelines


def main() -> None:
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything a library prints goes to stderr, never into the protocol
    anyio.run(_serve, protocol)


async def _serve(protocol: IO[str]) -> None:
    from sdxl_mcp.bench.pipelines import RawPipelines

    raw = await anyio.to_thread.run_sync(RawPipelines)
    protocol.write(json.dumps({"ready": True}) + "\n")
    while True:
        line = await anyio.to_thread.run_sync(sys.stdin.readline)
        if not line:
            return
        phases = await anyio.to_thread.run_sync(_run_one, raw, json.loads(line))
        protocol.write(json.dumps(phases) + "\n")


def _run_one(raw: RawPipelines, args: dict[str, Any]) -> dict[str, float]:
    return raw.run(**{**args, "out_path": Path(args["out_path"])})


if __name__ == "__main__":
    main()
