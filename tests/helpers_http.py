"""Helpers for the transport tests: isolated settings, a fake backend, a live server.

Module-scoped fixtures cannot use the function-scoped ``make_settings`` and
``_isolated_env`` fixtures of conftest, so this module offers the same
isolation as plain functions.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from PIL import Image

from sdxl_mcp.backend import CancelToken, EngineOutput, ProgressEvent
from sdxl_mcp.errors import Cancelled
from sdxl_mcp.schemas import GenerationRequest
from sdxl_mcp.service import ImageService
from sdxl_mcp.settings import Settings

#: Environment variables a developer may have set that must not steer the tests.
LEAKY_PREFIXES = ("SDXL_MCP_", "PEXELS_API_KEY")
#: Generous upper bounds for waits (guards against hangs, not timing assertions).
STARTUP_LIMIT_S = 60.0


def clean_environ() -> dict[str, str]:
    """``os.environ`` without the developer's SDXL_MCP_*/Pexels settings, hub offline."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(LEAKY_PREFIXES) or k == "SDXL_MCP_TINY_CACHE"
    }
    env["HF_HUB_OFFLINE"] = "1"
    return env


@contextlib.contextmanager
def isolated_environ() -> Iterator[None]:
    """Apply :func:`clean_environ` to this process until the block ends."""
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if name.startswith(LEAKY_PREFIXES) and name != "SDXL_MCP_TINY_CACHE":
                mp.delenv(name)
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield


def tiny_settings(root: Path, **overrides: Any) -> Settings:
    """Like conftest's ``make_settings`` (tiny models, files under ``root``), any scope."""
    values: dict[str, Any] = {
        "base_model": "tiny-random",
        "refiner_model": "tiny-random",
        "output_dir": root / "images",
        "log_dir": root / "logs",
        "preload": False,
    }
    values.update(overrides)
    with isolated_environ():
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]


class GatedBackend:
    """A stand-in backend whose generations wait until the test opens ``gate``."""

    state = "ready"

    def __init__(self, *, gate_open: bool = False) -> None:
        self.gate = threading.Event()
        if gate_open:
            self.gate.set()
        self.started = threading.Event()
        self.calls = 0

    def load(self) -> None:
        pass

    def status(self) -> dict[str, Any]:
        return {"state": "ready", "device": "cpu", "dtype": "fp32", "error": None}

    def generate(
        self, req: GenerationRequest, seed: int, on_progress: Any = None,
        cancel: CancelToken | None = None,
    ) -> EngineOutput:
        self.calls += 1
        self.started.set()
        while not self.gate.wait(0.01):
            if cancel is not None and cancel.cancelled:
                raise Cancelled(f"Generation {cancel.reason} during the base stage.")
        if on_progress:
            on_progress(ProgressEvent("base", 1, 1, 1, 1))
        return EngineOutput(
            image=Image.new("RGB", (req.width, req.height), "white"), seed=seed,
            steps_base=1, steps_refiner=0, refined=False, refiner_error=None,
            precision="fp32", device="cpu", base_model="fake", refiner_model=None,
            timings={"base": 0.01},
        )


@dataclass
class LiveServer:
    """A running HTTP app: its base URL, port, settings and service."""

    url: str
    port: int
    settings: Settings
    service: ImageService


@contextlib.contextmanager
def serve(settings: Settings, service: ImageService | None = None) -> Iterator[LiveServer]:
    """Run ``build_http_app(settings, service)`` under uvicorn on a free loopback port."""
    from sdxl_mcp.http import build_http_app

    svc = service if service is not None else ImageService(settings)
    app = build_http_app(settings, svc)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))  # bound here, so no other process can take the port
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_config=None, access_log=False,
            timeout_graceful_shutdown=5,
        )
    )
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"uvicorn-{port}", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + STARTUP_LIMIT_S
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the HTTP server stopped during start-up")
            if time.monotonic() > deadline:
                raise RuntimeError("the HTTP server did not start")
            time.sleep(0.01)
        yield LiveServer(f"http://127.0.0.1:{port}", port, settings, svc)
    finally:
        server.should_exit = True
        thread.join(STARTUP_LIMIT_S)
        sock.close()
