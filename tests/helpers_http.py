"""Helpers for the transport tests: isolated settings in any scope, a live server.

Module-scoped fixtures cannot use the function-scoped ``make_settings`` of
conftest, so ``tiny_settings`` builds the same settings as a plain function,
under the isolation of ``tests.env``. The fake backend is ``tests.fakes``'.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from sdxl_mcp.service.facade import ImageService
from sdxl_mcp.settings import Settings
from tests.env import isolated_environ

#: Generous upper bounds for waits (guards against hangs, not timing assertions).
STARTUP_LIMIT_S = 60.0


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
    from sdxl_mcp.entrypoints.http.app import build_http_app

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
