"""What the benchmarks run, and how they spawn ``sdxl-mcp serve``.

``server_env`` gives the server child a clean configuration: every inherited
``SDXL_MCP_*`` variable is dropped (a user's settings must not move the
figures) except the tiny-model cache, and the tiny random models are chosen.
This is the bench's own copy (it ships in the package); the tests have theirs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

PROMPT = "a lighthouse at dawn, oil painting"


def server_env(output_dir: Path, log_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SDXL_MCP_")}
    if "SDXL_MCP_TINY_CACHE" in os.environ:
        env["SDXL_MCP_TINY_CACHE"] = os.environ["SDXL_MCP_TINY_CACHE"]
    env.update(
        SDXL_MCP_BASE_MODEL="tiny-random",
        SDXL_MCP_REFINER_MODEL="tiny-random",
        SDXL_MCP_OUTPUT_DIR=str(output_dir),
        SDXL_MCP_LOG_DIR=str(log_dir),
        **extra,
    )
    return env


def server_params(env: dict[str, str]) -> Any:
    """stdio parameters that start ``sdxl-mcp serve`` with ``env`` (the MCP SDK loads here)."""
    from mcp import StdioServerParameters

    return StdioServerParameters(
        command=sys.executable, args=["-m", "sdxl_mcp", "serve"], env=env
    )
