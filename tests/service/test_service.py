"""ImageService: generation, storage, admission and jobs, without any transport."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from PIL import Image

from sdxl_mcp.errors import Busy, NoImageFound, NotFound, StorageError
from sdxl_mcp.library import parse_infotext
from sdxl_mcp.schemas import GenerationRequest
from sdxl_mcp.service.facade import ImageService
from sdxl_mcp.service.generate import generate as generate_image
from sdxl_mcp.service.generate import submit_generation
from sdxl_mcp.service.status import gpu_status
from tests.fakes import GatedBackend

pytestmark = pytest.mark.anyio

SMALL = {"width": 256, "height": 256, "num_inference_steps": 20}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def request(**fields: Any) -> GenerationRequest:
    return GenerationRequest(prompt="a lighthouse at dawn", **{**SMALL, **fields})


async def test_generation_writes_png_sidecar_and_catalog_row(
    make_settings: Callable[..., Any], tiny_models: tuple
) -> None:
    settings = make_settings()
    async with ImageService(settings) as service:
        result = await generate_image(service, request(seed=11))
    assert result.success and result.status == "succeeded"
    path = Path(result.path or "")
    assert path.is_absolute() and path.exists()
    assert result.image_url == result.image.url == str(path)  # type: ignore[union-attr]
    assert (result.image.width, result.image.height) == (256, 256)  # type: ignore[union-attr]
    assert result.seed == 11 and result.refined is True
    assert result.steps.base == 16 and result.steps.refiner == 4
    t = result.timings
    assert t.total == pytest.approx(
        t.queue_wait + t.model_load + t.base + t.refiner + t.decode + t.save, abs=1e-3)
    assert result.generation_time == t.total
    assert parse_infotext(Image.open(path).info["parameters"])["Refiner switch at"] == "0.8"
    sidecar = json.loads(Path(result.metadata_path or "").read_text())
    assert sidecar["seed"] == 11 and sidecar["request"]["prompt"] == "a lighthouse at dawn"
    with sqlite3.connect(settings.output_dir / "catalog.sqlite3") as db:
        rows = db.execute("SELECT name, seed, source FROM images").fetchall()
    assert rows == [(path.name, 11, "sdxl")]


async def test_model_load_includes_building_the_engine(
    make_settings: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first request pays for importing torch and building the engine: say so."""
    import sdxl_mcp.engine.sdxl

    def slow_engine(settings: Any) -> GatedBackend:
        time.sleep(0.5)  # stands in for importing torch and diffusers
        return GatedBackend(gate_open=True)

    monkeypatch.setattr(sdxl_mcp.engine.sdxl, "SDXLEngine", slow_engine)
    async with ImageService(make_settings(preload=False)) as service:
        result = await generate_image(service, request(seed=1))
    assert result.timings.model_load >= 0.5
    assert result.timings.total >= result.timings.model_load


async def test_random_seed_is_returned(make_settings: Callable[..., Any]) -> None:
    async with ImageService(make_settings(), backend=GatedBackend()) as service:
        service.backend.gate.set()  # type: ignore[attr-defined]
        result = await generate_image(service, request())
    assert result.seed is not None and 0 <= result.seed < 2**32


async def test_generation_off_and_no_stock_gives_the_guides_message(
    make_settings: Callable[..., Any],
) -> None:
    async with ImageService(make_settings(), backend=GatedBackend()) as service:
        with pytest.raises(NoImageFound, match="Ensure PEXELS_API_KEY is set or GPU available"):
            await generate_image(service, request(use_generation=False))


async def test_queue_beyond_max_queue_is_busy_with_retry_hint(
    make_settings: Callable[..., Any],
) -> None:
    backend = GatedBackend()
    async with ImageService(make_settings(max_queue=1), backend=backend) as service:
        running = submit_generation(service, request())
        waiting = submit_generation(service, request())
        with pytest.raises(Busy) as busy:
            submit_generation(service, request())
        assert busy.value.retryable and busy.value.retry_after_s
        assert "retry in about" in busy.value.message
        backend.gate.set()
        first = await service.wait_job(running.id, 30)
        second = await service.wait_job(waiting.id, 30)
    assert first.success and second.success and first.path != second.path


async def test_max_wait_returns_a_job_handle_then_the_result(
    make_settings: Callable[..., Any],
) -> None:
    backend = GatedBackend()
    async with ImageService(make_settings(), backend=backend) as service:
        handle = await generate_image(service, request(), wait_s=0.05)
        assert handle.status == "running" and handle.job_id
        assert "get_generation" in handle.message
        backend.gate.set()
        final = await service.wait_job(handle.job_id, 30)
    assert final.status == "succeeded" and final.job_id == handle.job_id


async def test_cancel_job_frees_the_slot(make_settings: Callable[..., Any]) -> None:
    backend = GatedBackend()
    async with ImageService(make_settings(max_queue=0), backend=backend) as service:
        job = submit_generation(service, request())
        await anyio.to_thread.run_sync(backend.started.wait)
        cancelled = await service.cancel_job(job.id)
        assert cancelled.status == "cancelled" and cancelled.error_code == "cancelled"
        backend.gate.set()
        again = await generate_image(service, request())  # the slot is free again
    assert again.success


async def test_generation_timeout_interrupts_and_reports(
    make_settings: Callable[..., Any],
) -> None:
    backend = GatedBackend()
    async with ImageService(make_settings(generation_timeout_s=0.2), backend=backend) as service:
        result = await generate_image(service, request())
        assert result.status == "failed" and result.error_code == "timeout"
        assert "GENERATION_TIMEOUT_S" in result.message
        backend.gate.set()
        assert (await generate_image(service, request())).success


async def test_unknown_job_is_not_found(make_settings: Callable[..., Any]) -> None:
    async with ImageService(make_settings(), backend=GatedBackend()) as service:
        with pytest.raises(NotFound, match="No job with id 'nope'"):
            await service.wait_job("nope", 0)


async def test_an_unusable_output_folder_does_not_stop_the_service(
    make_settings: Callable[..., Any], tmp_path: Path
) -> None:
    """Storage opens at start-up; if it cannot, status still answers and each
    generation says why, in the storage error's words."""
    blocked = tmp_path / "a-file-not-a-folder"
    blocked.write_text("")
    settings = make_settings(output_dir=blocked / "images")
    async with ImageService(settings, backend=GatedBackend(gate_open=True)) as service:
        status = await gpu_status(service)
        assert status.queue["waiting"] == 0
        with pytest.raises(StorageError, match="SDXL_MCP_OUTPUT_DIR"):
            await generate_image(service, request(seed=1))
        assert service.resolve_image("anything.png") is None
        assert service.jobs.all() == []  # refused before admission: nothing queued
