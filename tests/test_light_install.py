"""`pip install sdxl-mcp` without the engine extra: a deliberate, light product.

Each test runs a real subprocess in which the engine's packages do not exist:
a ``sitecustomize`` on PYTHONPATH puts ``None`` into ``sys.modules`` for them,
which is exactly what Python reports for a package that is not installed
(``import torch`` raises ModuleNotFoundError, ``importlib.util.find_spec``
returns None). The server must start, serve status, and answer every
generation with one sentence naming the extra and the command: no traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sdxl_mcp.backend.factory import ENGINE_EXTRA_MISSING

ENGINE_PACKAGES = ("torch", "diffusers", "transformers", "accelerate", "safetensors", "pynvml")
INSTALL_HINT = "pip install 'sdxl-mcp[engine]'"


@pytest.fixture
def light_env(tmp_path: Path) -> dict[str, str]:
    blocker = tmp_path / "no-engine"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(
        "import sys\n"
        f"for name in {ENGINE_PACKAGES!r}:\n"
        "    sys.modules[name] = None  # what Python reports for a missing package\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SDXL_MCP_", "PEXELS"))}
    env.update(
        PYTHONPATH=os.pathsep.join([str(blocker), *filter(None, [env.get("PYTHONPATH")])]),
        SDXL_MCP_OUTPUT_DIR=str(tmp_path / "images"),
        SDXL_MCP_LOG_DIR=str(tmp_path / "logs"),
        HF_HUB_OFFLINE="1",
    )
    return env


def _python(code: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=120)


def test_the_blocker_really_hides_the_engine(light_env: dict[str, str], tmp_path: Path) -> None:
    proc = _python("""
        import importlib.util
        try:
            import torch
        except ModuleNotFoundError:
            print("no torch", importlib.util.find_spec("torch"))
    """, light_env, tmp_path)
    assert proc.stdout.strip() == "no torch None", proc.stderr


def test_mcp_server_starts_says_which_extra_and_refuses_generation_in_one_sentence(
    light_env: dict[str, str], tmp_path: Path
) -> None:
    proc = _python("""
        import anyio, json, os, sys
        from mcp import Client, StdioServerParameters

        async def main():
            # The whole environment: the SDK passes only a safe subset by default.
            params = StdioServerParameters(command=sys.executable,
                                           args=["-m", "sdxl_mcp", "serve"],
                                           env=dict(os.environ))
            async with Client(params) as client:
                generated = await client.call_tool("generate_image", {"prompt": "a cat"})
                status = await client.call_tool("gpu_status", {})
            print(json.dumps({
                "is_error": generated.is_error,
                "text": [c.text for c in generated.content if c.type == "text"],
                "status_error": status.is_error,
                "engine": status.structured_content["engine"]["state"],
            }))

        anyio.run(main)
    """, light_env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout.strip().splitlines()[-1])
    assert answer["is_error"] is True
    assert answer["text"] == [ENGINE_EXTRA_MISSING]
    assert answer["status_error"] is False and answer["engine"] == "not_loaded"
    log = (tmp_path / "logs" / "sdxl_mcp.log").read_text()
    assert sum(INSTALL_HINT in line for line in log.splitlines()) == 1  # the start-up line
    assert "Traceback" not in log and "ModuleNotFoundError" not in log


def test_rest_generation_answers_503_naming_the_extra(
    light_env: dict[str, str], tmp_path: Path
) -> None:
    proc = _python("""
        import json
        from starlette.testclient import TestClient
        from sdxl_mcp.entrypoints.http.app import build_http_app
        from sdxl_mcp.settings import load_settings

        app = build_http_app(load_settings())
        with TestClient(app, base_url="http://127.0.0.1") as client:
            response = client.post("/api/media/generate-image",
                                   json={"prompt": "a cat", "use_pexels": False,
                                         "use_generation": True})
            print(json.dumps({"status": response.status_code, "body": response.json()}))
    """, light_env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout.strip().splitlines()[-1])
    assert answer["status"] == 503
    assert answer["body"]["message"] == ENGINE_EXTRA_MISSING
    assert answer["body"]["error_code"] == "model_unavailable"
    assert "Traceback" not in proc.stderr


def test_cli_generate_fails_with_one_line_naming_the_extra(
    light_env: dict[str, str], tmp_path: Path
) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "sdxl_mcp", "generate", "a cat", "--no-progress"],
        capture_output=True, text=True, env=light_env, cwd=tmp_path, timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.strip().splitlines()[-1] == f"sdxl-mcp: error: {ENGINE_EXTRA_MISSING}"
    assert "Traceback" not in proc.stderr and "ModuleNotFoundError" not in proc.stderr


def test_make_tiny_models_names_the_extra(light_env: dict[str, str], tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "sdxl_mcp", "make-tiny-models", str(tmp_path / "tiny")],
        capture_output=True, text=True, env=light_env, cwd=tmp_path, timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == f"sdxl-mcp: error: {ENGINE_EXTRA_MISSING}"
