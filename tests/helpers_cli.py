"""The ``sdxl-mcp`` command run as a user runs it: a subprocess on the tiny models."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_cli(*args: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {
        k: v for k, v in os.environ.items() if not k.startswith(("SDXL_MCP_", "PEXELS"))
    }
    if "SDXL_MCP_TINY_CACHE" in os.environ:
        full_env["SDXL_MCP_TINY_CACHE"] = os.environ["SDXL_MCP_TINY_CACHE"]
    full_env.update(
        SDXL_MCP_BASE_MODEL="tiny-random",
        SDXL_MCP_REFINER_MODEL="tiny-random",
        SDXL_MCP_OUTPUT_DIR=str(tmp_path / "images"),
        SDXL_MCP_LOG_DIR=str(tmp_path / "logs"),
        HF_HUB_OFFLINE="1",
    )
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "sdxl_mcp", *args],
        capture_output=True, text=True, env=full_env, cwd=tmp_path, timeout=300,
    )
