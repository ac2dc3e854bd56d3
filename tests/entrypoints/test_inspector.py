"""The official MCP Inspector's CLI (``@modelcontextprotocol/inspector`` 2.x) against
``sdxl-mcp serve``: its schema-portability lint of ``tools/list`` finds nothing.

The Inspector writes ``Schema portability: N errors, M warnings ...`` on stderr when it
finds anything (80 warnings before the schemas were made portable). Installed once with
npm (``tests/helpers_npm.py``); skipped, saying why, without node and npm.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.env import server_env
from tests.helpers_mcp import TOOLS
from tests.helpers_npm import npm_package

INSPECTOR_VERSION = "2.12.0"


@pytest.fixture(scope="module")
def inspector() -> Path:
    folder = npm_package("@modelcontextprotocol/inspector", INSPECTOR_VERSION,
                         f"inspector-{INSPECTOR_VERSION}")
    return folder / "node_modules" / ".bin" / "mcp-inspector"


def test_the_inspector_finds_no_schema_portability_problem(inspector: Path,
                                                            tmp_path: Path) -> None:
    env = {**server_env(tmp_path), "MCP_CATALOG_PATH": str(tmp_path / "inspector.json")}
    proc = subprocess.run(
        [str(inspector), "--cli", sys.executable, "-m", "sdxl_mcp", "serve",
         "--method", "tools/list"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert {tool["name"] for tool in json.loads(proc.stdout)["tools"]} >= TOOLS
    findings = [line for line in proc.stderr.splitlines() if "Schema portability" in line]
    assert findings == []
