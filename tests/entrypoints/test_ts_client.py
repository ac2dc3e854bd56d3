"""The official TypeScript MCP client (``@modelcontextprotocol/sdk``) against ``sdxl-mcp serve``.

That client validates every ``structuredContent`` against the tool's output
schema (Ajv) and throws on a mismatch, so this is the check that the compact
output schemas (``entrypoints.mcp.schema``) still describe what the tools send. The SDK is
installed once with npm, at a pinned version, outside the repository
(``tests/helpers_npm.py``); without node and npm, or when npm cannot install,
the test is skipped and says why.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sdxl_mcp.entrypoints.mcp.guide import PROMPT_NAME
from tests.env import server_env
from tests.helpers_mcp import TOOLS
from tests.helpers_npm import npm_package

TS_SDK_VERSION = "1.32.2"
SCRIPT = Path(__file__).parent / "ts_client" / "check.mjs"


@pytest.fixture(scope="module")
def ts_client() -> Path:
    """The cache folder with the pinned SDK installed and the check script beside it."""
    folder = npm_package("@modelcontextprotocol/sdk", TS_SDK_VERSION, f"ts-sdk-{TS_SDK_VERSION}")
    # Beside node_modules, so the script's imports resolve there.
    shutil.copyfile(SCRIPT, folder / SCRIPT.name)
    return folder


@pytest.fixture(scope="module")
def seen(ts_client: Path, tiny_models: tuple, tmp_path_factory: pytest.TempPathFactory
         ) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("ts-client")
    env = {
        **os.environ,
        "SDXL_MCP_TS_COMMAND": json.dumps([sys.executable, "-m", "sdxl_mcp", "serve"]),
        # A tiny generation on a busy CPU can take a minute: always wait for it.
        "SDXL_MCP_TS_ENV": json.dumps(server_env(root, SDXL_MCP_MAX_WAIT_S="600")),
    }
    proc = subprocess.run(["node", str(ts_client / SCRIPT.name)], cwd=root, env=env,
                          capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, f"the TypeScript client failed:\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_typescript_client_lists_every_tool_and_the_prompt(seen: dict[str, Any]) -> None:
    assert set(seen["tools"]) >= TOOLS
    assert PROMPT_NAME in seen["prompts"]


def test_typescript_client_accepts_every_structured_result(seen: dict[str, Any]) -> None:
    # Each call below passed the client's output-schema validation to get here.
    made = seen["generate_image"]
    assert not made["isError"] and made["structured"]["status"] == "succeeded"
    followed = seen["get_generation"]["structured"]
    assert followed["status"] == "succeeded"
    assert followed["image_id"] == made["structured"]["image_id"]
    assert seen["gpu_status"]["structured"]["engine"]["state"] in ("not_loaded", "loading", "ready")
    assert seen["find_images"]["structured"]["total"] >= 1
    exported = seen["export_image"]
    assert not exported["isError"] and exported["structured"]["width"] == 400


def test_typescript_client_gets_errors_as_results(seen: dict[str, Any]) -> None:
    assert seen["bad_job"]["isError"] and seen["bad_job"]["structured"] is None
