"""Honest capabilities: ``logging`` is declared and ``logging/setLevel`` filters what is sent;
stderr carries the server's own log lines only."""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from sdxl_mcp.entrypoints.mcp.server import build_server
from sdxl_mcp.service.facade import ImageService
from tests.fakes import GatedBackend
from tests.helpers_cli import run_cli

SMALL = {"width": 256, "height": 256, "num_inference_steps": 20}
#: A line the server's own logging writes (logs.setup_logging's format).
OWN_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")


@pytest.fixture
def server(make_settings: Callable[..., Any]) -> Any:
    settings = make_settings()
    return build_server(settings, ImageService(settings, backend=GatedBackend(gate_open=True)))  # type: ignore[arg-type]


async def _messages_at(server: Any, level: str | None) -> tuple[Any, list[tuple[str, str]]]:
    received: list[tuple[str, str]] = []

    async def on_log(params: Any) -> None:
        received.append((params.level, str(params.data)))

    async with Client(server, mode="legacy", logging_callback=on_log) as client:
        if level is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # deprecated in 2026-07-28, the handshake's own
                await client.set_logging_level(level)  # type: ignore[arg-type]
        result = await client.call_tool("generate_image", {"prompt": "a lighthouse", **SMALL})
        capabilities = client.server_capabilities
    assert not result.is_error
    return capabilities, received


async def test_the_handshake_declares_logging(server: Any) -> None:
    capabilities, _ = await _messages_at(server, None)
    assert capabilities.logging is not None


async def test_info_messages_arrive_at_level_info(server: Any) -> None:
    _, received = await _messages_at(server, "info")
    assert ("info", "Generating 256x256, 20 steps, refiner on (ensemble)") in received


async def test_set_level_warning_keeps_info_messages_back(server: Any) -> None:
    _, received = await _messages_at(server, "warning")
    assert [level for level, _ in received if level in ("debug", "info", "notice")] == []


def test_stderr_carries_only_the_servers_own_lines(tiny_models: tuple, tmp_path: Path) -> None:
    """A real start with the models preloaded (torch, diffusers and transformers imported)."""
    proc = run_cli("gpu", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    strangers = [line for line in proc.stderr.splitlines() if line and not OWN_LINE.match(line)]
    assert strangers == []
