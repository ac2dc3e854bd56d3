"""npm packages the tests drive (the TypeScript SDK, the MCP Inspector), installed once.

Each is installed with npm at a pinned version into a cache folder outside the
repository (``~/.cache/sdxl-mcp-tests/<folder>``, or under ``$XDG_CACHE_HOME``)
and reused between runs; without node and npm, or when npm cannot install,
the calling test is skipped and says why.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest


def npm_package(package: str, version: str, folder_name: str) -> Path:
    """The cache folder holding ``package@version`` in its ``node_modules``."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip(f"node and npm are needed to run {package}")
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    folder = base / "sdxl-mcp-tests" / folder_name
    installed = folder / "node_modules" / package / "package.json"
    if not (installed.is_file() and json.loads(installed.read_text())["version"] == version):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "package.json").write_text(
            json.dumps({"name": f"sdxl-mcp-{folder_name}", "private": True}) + "\n")
        proc = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--loglevel=error",
             f"{package}@{version}"],
            cwd=folder, capture_output=True, text=True, timeout=600, check=False)
        if proc.returncode != 0:
            pytest.skip(f"npm could not install {package}@{version}: "
                        f"{(proc.stderr or proc.stdout).strip()[-300:]}")
    return folder
