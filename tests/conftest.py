"""Shared fixtures: settings isolated from the developer's environment, tiny models."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sdxl_mcp.settings import Settings
from tests.env import isolate


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No developer setting steers a test, and no test reaches a model hub."""
    isolate(monkeypatch)


@pytest.fixture(scope="session")
def tiny_models() -> tuple[Path, Path]:
    """The cached tiny base and refiner folders (built once per machine)."""
    from sdxl_mcp.engine.tiny import ensure_tiny_models

    return ensure_tiny_models()


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Settings on the tiny models, writing into this test's temp dir, no .env."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "base_model": "tiny-random",
            "refiner_model": "tiny-random",
            "output_dir": tmp_path / "images",
            "log_dir": tmp_path / "logs",
            "preload": False,
            # A loaded machine must not turn a finished-result test into a job handle.
            "max_wait_s": 600.0,
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    return make


@pytest.fixture(scope="session")
def tiny_engine(tiny_models: tuple[Path, Path]) -> Iterator[Any]:
    """One loaded engine shared by the engine tests (loading is the slow part)."""
    from sdxl_mcp.engine.sdxl import SDXLEngine

    settings = Settings(_env_file=None, base_model="tiny-random",  # type: ignore[call-arg]
                        refiner_model="tiny-random", preload=False)
    engine = SDXLEngine(settings)
    engine.load()
    yield engine
