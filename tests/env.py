"""The tests' environment: one isolation rule, one builder for server subprocesses.

Isolation drops every variable a developer may have set that would steer a test
(``SDXL_MCP_*``, ``PEXELS_API_KEY``), keeps ``SDXL_MCP_TINY_CACHE`` (where the
tiny models are cached, not a setting) and sets ``HF_HUB_OFFLINE=1``: no test may
reach a model hub. conftest applies it to every test; ``isolated_environ`` applies
it in module-scoped fixtures, which cannot use conftest's function-scoped one;
``clean_environ`` and ``server_env`` give it to child processes.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

#: Environment variables a developer may have set that must not steer the tests.
LEAKY_PREFIXES = ("SDXL_MCP_", "PEXELS_API_KEY")
#: Kept: it locates the tiny-model cache and changes no setting.
KEPT = "SDXL_MCP_TINY_CACHE"


def _leaky(name: str) -> bool:
    return name.startswith(LEAKY_PREFIXES) and name != KEPT


def isolate(mp: pytest.MonkeyPatch) -> None:
    """Through ``mp``, drop the developer's settings from ``os.environ``; hub offline."""
    for name in list(os.environ):
        if _leaky(name):
            mp.delenv(name)
    mp.setenv("HF_HUB_OFFLINE", "1")


@contextlib.contextmanager
def isolated_environ() -> Iterator[None]:
    """:func:`isolate` this process until the block ends (any fixture scope)."""
    with pytest.MonkeyPatch.context() as mp:
        isolate(mp)
        yield


def clean_environ() -> dict[str, str]:
    """``os.environ`` as :func:`isolate` leaves it, for a child process."""
    env = {k: v for k, v in os.environ.items() if not _leaky(k)}
    env["HF_HUB_OFFLINE"] = "1"
    return env


def server_env(root: Path, **extra: str) -> dict[str, str]:
    """A child ``sdxl-mcp`` process's environment: isolated, tiny models, files under
    ``root`` (``images/``, ``logs/``), no preload; ``extra`` adds or overrides."""
    return {
        **clean_environ(),
        "SDXL_MCP_BASE_MODEL": "tiny-random",
        "SDXL_MCP_REFINER_MODEL": "tiny-random",
        "SDXL_MCP_OUTPUT_DIR": str(root / "images"),
        "SDXL_MCP_LOG_DIR": str(root / "logs"),
        "SDXL_MCP_PRELOAD": "false",
        **extra,
    }
