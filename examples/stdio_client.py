"""Spawn `sdxl-mcp serve` over stdio, generate one image with a progress bar.

    python examples/stdio_client.py "a lighthouse at dawn" --seed 7

Uses the built-in tiny model unless SDXL_MCP_BASE_MODEL is set. Prints the
image path, seed and timings; the server's logs go to its stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys

import anyio
from mcp import Client, StdioServerParameters
from tqdm import tqdm


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prompt", nargs="?", default="a lighthouse at dawn, oil painting")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--size", type=int, default=512, help="width and height")
    parser.add_argument("--quality", default="medium", choices=["high", "medium", "fast"])
    args = parser.parse_args()

    env = dict(os.environ)
    env.setdefault("SDXL_MCP_BASE_MODEL", "tiny-random")
    env.setdefault("SDXL_MCP_REFINER_MODEL", "tiny-random")
    command = shutil.which("sdxl-mcp") or sys.executable
    server_args = ["serve"] if command != sys.executable else ["-m", "sdxl_mcp", "serve"]
    params = StdioServerParameters(command=command, args=server_args, env=env)

    bar = tqdm(total=0, unit="step", file=sys.stderr, dynamic_ncols=True)

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        if total and bar.total != total:
            bar.total = int(total)
        if message:
            bar.set_description(message)
        bar.update(int(progress) - bar.n)

    async with Client(params, read_timeout_seconds=600) as client:
        result = await client.call_tool(
            "generate_image",
            {"prompt": args.prompt, "seed": args.seed, "width": args.size, "height": args.size,
             "quality": args.quality},
            progress_callback=on_progress,
        )
    bar.close()
    if result.is_error:
        print(f"error: {result.content[0].text}", file=sys.stderr)  # type: ignore[union-attr]
        return 1
    data = result.structured_content or {}
    if data.get("status") == "running":
        print(f"still running: job {data['job_id']}")
        return 0
    print(data["path"])
    print(f"seed {data['seed']}, {data['precision']} on {data['device']}, "
          f"refined={data['refined']}, steps {data['steps']}")
    print("timings (s): " + json.dumps(data["timings"]))
    kinds = [c.type for c in result.content]
    print(f"content blocks: {', '.join(kinds)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(anyio.run(main))
