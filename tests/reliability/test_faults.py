"""Faults, each injected at its real seam, each followed by a generation that succeeds.

Everything goes through the MCP server (the in-memory client, or streamable
HTTP on loopback) over the real tiny SDXL engine on CPU: the UNet forwards and
the VAE decode of the loaded pipelines, the file store's own system calls,
the catalog's SQLite connection, the Pexels HTTP server (a fake on loopback)
and the client's connection.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import torch
from mcp import Client
from mcp.server.mcpserver import MCPServer
from mcp_types.version import LATEST_HANDSHAKE_VERSION

from sdxl_mcp.engine.sdxl import SDXLEngine
from sdxl_mcp.entrypoints.mcp.server import build_server
from sdxl_mcp.library import files as file_store
from sdxl_mcp.service.facade import ImageService
from tests.fake_pexels import KEY, FakePexels
from tests.helpers_http import serve
from tests.reliability.support_faults import (
    LARGE,
    LIMIT_S,
    SMALL,
    FullCatalogConnection,
    OsProxy,
    UnetGate,
    catalog_rows,
    disk_fills_on_write,
    failing_forward,
    finish_job,
    image_files,
    refuse,
    refuse_creating_in,
    sidecar_files,
    structured,
    temp_files,
    text,
    wait_until,
)

OOM = "CUDA out of memory. Tried to allocate 2.00 GiB"


def on_engine(make_settings: Callable[..., Any], engine: Any, **overrides: Any
              ) -> tuple[MCPServer, ImageService]:
    """A server over the shared, already loaded tiny engine, files in this test's dir."""
    settings = make_settings(**overrides)
    service = ImageService(settings, backend=engine)
    return build_server(settings, service), service


async def generate(client: Any, progress: Any = None, **arguments: Any) -> Any:
    return await client.call_tool("generate_image", {"prompt": "a lighthouse at dawn",
                                                     **SMALL, **arguments},
                                  progress_callback=progress)


def assert_succeeded(result: Any) -> dict[str, Any]:
    data = structured(result)
    assert not result.is_error and data["status"] == "succeeded", text(result)
    assert Path(data["path"]).is_file()
    return data


def assert_one_sentence_error(result: Any, *needles: str) -> str:
    message = text(result)
    assert result.is_error, message
    assert "\n" not in message and "Traceback" not in message
    for needle in needles:
        assert needle in message, message
    return message


def assert_nothing_written(service: ImageService) -> None:
    folder = service.settings.output_dir
    assert temp_files(folder) == []
    assert image_files(folder) == [] and sidecar_files(folder) == []
    if (folder / "catalog.sqlite3").exists():
        assert catalog_rows(folder) == []


def assert_slot_free(service: ImageService) -> None:
    queue = service.queue_status()
    assert (queue["running"], queue["waiting"]) == (0, 0), queue


# ------------------------------------------------------------ engine faults
async def test_out_of_memory_in_base_twice_is_a_clear_error_then_the_next_succeeds(
    tiny_engine: SDXLEngine, make_settings: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    unet = tiny_engine.base.unet
    # Fails the first try and the low-memory retry, then the device "has memory" again.
    monkeypatch.setattr(unet, "forward", failing_forward(unet, torch.OutOfMemoryError(OOM), 2))
    server, service = on_engine(make_settings, tiny_engine)
    async with Client(server) as client:
        failed = await generate(client)
        assert_one_sentence_error(failed, "out of memory", "smaller width/height")
        assert structured(failed)["error_code"] == "out_of_memory"
        assert structured(failed)["retryable"] is True
        assert_nothing_written(service)
        status = structured(await client.call_tool("gpu_status", {}))
        assert status["engine"]["state"] == "ready"
        assert_succeeded(await generate(client))
    assert not tiny_engine.base.vae.use_tiling  # the low-memory retry's settings were undone


@pytest.mark.parametrize(
    "error", [torch.OutOfMemoryError(OOM), ValueError("refiner weights produced garbage")],
    ids=["out-of-memory", "exception"],
)
async def test_refiner_failure_keeps_the_base_image_then_the_next_is_refined(
    error: Exception, tiny_engine: SDXLEngine, make_settings: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    refiner = tiny_engine.refiner
    assert refiner is not None
    monkeypatch.setattr(refiner.unet, "forward", failing_forward(refiner.unet, error, 1))
    server, service = on_engine(make_settings, tiny_engine)
    async with Client(server) as client:
        kept = assert_succeeded(await generate(client))
        assert kept["refined"] is False and kept["steps"]["refiner"] == 0
        assert str(error) in kept["refiner_error"]
        if isinstance(error, torch.OutOfMemoryError):
            assert kept["refiner_error"].startswith("out of memory")
        assert "base model only" in kept["message"]
        refined = assert_succeeded(await generate(client))
        assert refined["refined"] is True and refined["refiner_error"] is None
    assert len(catalog_rows(service.settings.output_dir)) == 2


async def test_nan_decode_is_an_error_with_no_png_then_the_next_succeeds(
    tiny_engine: SDXLEngine, make_settings: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    vae = tiny_engine.base.vae
    calls = {"n": 0}

    def nan_decode(z: torch.Tensor, return_dict: bool = True) -> Any:
        calls["n"] += 1
        return (torch.full((z.shape[0], 3, z.shape[2] * 8, z.shape[3] * 8), float("nan")),)

    server, service = on_engine(make_settings, tiny_engine)
    async with Client(server) as client:
        with monkeypatch.context() as patch:
            patch.setattr(vae, "decode", nan_decode)
            failed = await generate(client)
        assert_one_sentence_error(failed, "NaN", "no image was saved")
        assert calls["n"] == 2  # the fp32 retry, then the error
        assert_nothing_written(service)
        assert_succeeded(await generate(client))


# -------------------------------------------------------- model load failure
@pytest.mark.parametrize("preload", [True, False], ids=["preload", "first-use"])
async def test_bad_base_model_leaves_status_and_stock_serving(
    preload: bool, make_settings: Callable[..., Any]
) -> None:
    settings = make_settings(base_model="/nonexistent/sdxl-base", preload=preload)
    async with Client(build_server(settings)) as client:
        if not preload:
            failed = await generate(client)
            assert_one_sentence_error(failed, "SDXL_MCP_BASE_MODEL", "/nonexistent/sdxl-base")

        async def engine_state() -> dict[str, Any]:
            return structured(await client.call_tool("gpu_status", {}))["engine"]

        with anyio.fail_after(LIMIT_S):
            while (engine := await engine_state())["state"] != "failed":
                await anyio.sleep(0.05)
        assert "SDXL_MCP_BASE_MODEL" in engine["error"]
        refused = await generate(client)
        assert_one_sentence_error(refused, "SDXL_MCP_BASE_MODEL", "unavailable")
        stock = await client.call_tool("search_stock_image", {"query": "office"})
        assert stock.is_error
        assert text(stock) == "PEXELS_API_KEY is not set: get a free key at pexels.com/api"
        assert not (await client.call_tool("gpu_status", {})).is_error


@pytest.fixture(scope="module")
def fake_pexels() -> Iterator[FakePexels]:
    with FakePexels().running() as fake:
        yield fake


@pytest.fixture
def pexels(fake_pexels: FakePexels) -> Iterator[FakePexels]:
    fake_pexels.reset()
    yield fake_pexels
    fake_pexels.reset()


async def test_stock_photos_still_served_while_the_model_cannot_load(
    make_settings: Callable[..., Any], pexels: FakePexels
) -> None:
    settings = make_settings(base_model="/nonexistent/sdxl-base", preload=True,
                             pexels_api_key=KEY, pexels_base_url=pexels.base_url)
    async with Client(build_server(settings)) as client:
        found = await client.call_tool("search_stock_image", {"query": "office"})
        assert not found.is_error, text(found)
        photo = await client.call_tool("generate_image", {"prompt": "an office", **SMALL,
                                                          "use_pexels": True})
        data = structured(photo)
        assert not photo.is_error and data["image"]["source"] == "pexels", text(photo)


# ------------------------------------------------------------ storage faults
STORAGE_FAULTS = {
    # the disk fills while the PNG, its sidecar, or the catalog row is written
    "disk-full-png": "No space left on device",
    "disk-full-sidecar": "No space left on device",
    "disk-full-catalog": "database or disk is full",
    # the output folder turns read-only (permissions, or a read-only remount)
    "read-only-create": "Permission denied",
    "read-only-publish": "Read-only file system",
}


def _inject(fault: str, service: ImageService, patch: pytest.MonkeyPatch) -> None:
    store = service.store  # opened before the fault, as on a server that has been up
    folder = store.output_dir
    if fault == "disk-full-png":
        patch.setattr(file_store, "os", OsProxy(os, fdopen=disk_fills_on_write(1)))
    elif fault == "disk-full-sidecar":
        patch.setattr(file_store, "os", OsProxy(os, fdopen=disk_fills_on_write(2)))
    elif fault == "disk-full-catalog":
        patch.setattr(store.catalog, "_conn", FullCatalogConnection(store.catalog._conn))
    elif fault == "read-only-create":
        denied = PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        patch.setattr(file_store, "os", OsProxy(os, open=refuse_creating_in(folder, denied)))
    elif fault == "read-only-publish":
        erofs = OSError(errno.EROFS, os.strerror(errno.EROFS))
        patch.setattr(file_store, "os", OsProxy(os, link=refuse(erofs),
                                                replace=refuse(erofs)))
    else:
        raise AssertionError(fault)


@pytest.mark.parametrize("fault", list(STORAGE_FAULTS))
async def test_storage_fault_is_a_clear_error_with_no_partial_file_then_recovers(
    fault: str, tiny_engine: SDXLEngine, make_settings: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server, service = on_engine(make_settings, tiny_engine)
    async with Client(server) as client:
        with monkeypatch.context() as patch:
            _inject(fault, service, patch)
            failed = await generate(client)
        message = assert_one_sentence_error(failed, STORAGE_FAULTS[fault])
        assert "SDXL_MCP_OUTPUT_DIR" in message
        assert structured(failed)["error_code"] == "storage_error"
        assert_nothing_written(service)  # no image, sidecar, .tmp- file or catalog row
        assert_slot_free(service)
        done = assert_succeeded(await generate(client))
    folder = service.settings.output_dir
    assert [p.name for p in image_files(folder)] == [Path(done["path"]).name]
    assert len(sidecar_files(folder)) == 1 and len(catalog_rows(folder)) == 1


# ------------------------------------------------ cancel, disconnect, timeout
def _only_job(service: ImageService) -> Any:
    jobs = service.jobs.all()
    assert len(jobs) == 1, jobs
    return jobs[0]


async def _job_finished(job: Any) -> None:
    """Polled, not awaited: under uvicorn the job's event belongs to the server's loop."""
    await wait_until(lambda: job.finished is not None, what=f"job {job.id} to finish")


async def test_client_cancel_mid_call_stops_the_job_and_frees_the_slot(
    tiny_engine: SDXLEngine, make_settings: Callable[..., Any]
) -> None:
    """The client abandons its call: the SDK sends notifications/cancelled."""
    server, service = on_engine(make_settings, tiny_engine, max_queue=0)
    denoising = anyio.Event()

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        denoising.set()

    async with Client(server) as client:
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: generate(client, on_progress, **LARGE))
            with anyio.fail_after(LIMIT_S):
                await denoising.wait()
            tg.cancel_scope.cancel()
        job = _only_job(service)
        with anyio.fail_after(LIMIT_S):
            await job.done.wait()
        assert job.state == "cancelled" and "cancelled by the client" in job.result.message
        assert_slot_free(service)
        assert_nothing_written(service)
        assert_succeeded(await generate(client))


async def test_cancel_generation_stops_a_running_job_and_frees_the_slot(
    tiny_engine: SDXLEngine, make_settings: Callable[..., Any]
) -> None:
    server, service = on_engine(make_settings, tiny_engine, max_wait_s=0.2, max_queue=0)
    async with Client(server) as client:
        handle = structured(await generate(client, **LARGE))
        assert handle["status"] == "running"
        job = _only_job(service)
        await wait_until(lambda: job.progress is not None, what="denoising")
        cancelled = await client.call_tool("cancel_generation", {"job_id": handle["job_id"]})
        # It waits up to MAX_WAIT_S for the running step to end; a 1024² step on a
        # busy CPU can take longer, and then the job is followed to its end.
        if structured(cancelled)["status"] == "running":
            cancelled = await finish_job(client, handle["job_id"])
        assert_one_sentence_error(cancelled, "cancelled by the caller")
        assert structured(cancelled)["status"] == "cancelled"
        assert_slot_free(service)
        assert_nothing_written(service)
        handle = structured(await generate(client, prompt="next"))
        assert_succeeded(await finish_job(client, handle["job_id"]))


async def test_cancelling_a_queued_job_frees_its_place_at_once(
    tiny_engine: SDXLEngine, make_settings: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Queued jobs cancelled by cancel_generation or by an abandoned call leave the queue."""
    gate = UnetGate(tiny_engine.base.unet)
    monkeypatch.setattr(tiny_engine.base.unet, "forward", gate)
    server, service = on_engine(make_settings, tiny_engine, max_queue=1, max_wait_s=2.0)
    answers: dict[str, Any] = {}

    async def call(name: str) -> None:
        answers[name] = await generate(client, prompt=name)

    async with Client(server) as client:
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(call, "held")
                await wait_until(gate.entered.is_set, what="the first generation")
                tg.start_soon(call, "queued")
            queued = structured(answers["queued"])
            assert queued["status"] == "running" and service.queue_status()["waiting"] == 1
            with anyio.fail_after(1):  # not MAX_WAIT_S, and not until the slot frees
                cancelled = await client.call_tool("cancel_generation",
                                                   {"job_id": queued["job_id"]})
            assert_one_sentence_error(cancelled, "cancelled by the caller while it was queued")
            assert service.queue_status()["waiting"] == 0

            async with anyio.create_task_group() as tg:  # a caller that gives up while queued
                tg.start_soon(call, "abandoned")
                await wait_until(lambda: service.queue_status()["waiting"] == 1, what="queued")
                tg.cancel_scope.cancel()
            assert "abandoned" not in answers
            await wait_until(lambda: service.queue_status()["waiting"] == 0, limit_s=1,
                             what="the abandoned job to leave the queue")

            async with anyio.create_task_group() as tg:
                tg.start_soon(call, "admitted")
                await wait_until(lambda: service.queue_status()["waiting"] == 1, what="queued")
                gate.open()
            assert not answers["admitted"].is_error, text(answers["admitted"])  # not busy
            for name in ("held", "admitted"):
                result = answers[name]
                if structured(result)["status"] == "running":
                    result = await finish_job(client, structured(result)["job_id"])
                assert_succeeded(result)
        finally:
            gate.open()  # before the server shuts down, or it waits for the engine
    states = sorted(job.state for job in service.jobs.all())
    assert states == ["cancelled", "cancelled", "succeeded", "succeeded"]
    assert len(image_files(service.settings.output_dir)) == 2


async def test_client_that_disconnects_mid_call_over_http_gets_its_job_cancelled(
    tiny_engine: SDXLEngine, make_settings: Callable[..., Any]
) -> None:
    """An MCP client over streamable HTTP goes away mid-call; another keeps working."""
    settings = make_settings(max_queue=0)
    service = ImageService(settings, backend=tiny_engine)
    denoising = anyio.Event()

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        denoising.set()

    async def leaver(url: str) -> None:
        async with Client(f"{url}/mcp") as client:
            await generate(client, on_progress, **LARGE)

    with serve(settings, service) as live:
        async with anyio.create_task_group() as tg:
            tg.start_soon(leaver, live.url)
            with anyio.fail_after(LIMIT_S):
                await denoising.wait()
            tg.cancel_scope.cancel()  # the client's session ends with the call in flight
        job = _only_job(service)
        await _job_finished(job)
        assert job.state == "cancelled", job.result
        assert_slot_free(service)
        async with Client(f"{live.url}/mcp") as other:
            assert_succeeded(await generate(other))


async def test_connection_dropped_without_cancel_does_not_wedge_the_server(
    tiny_engine: SDXLEngine, make_settings: Callable[..., Any]
) -> None:
    """A TCP connection dropped mid-call, no cancel sent (a crashed client).

    MCP's streamable HTTP transport says a disconnection is not a cancel (the
    client may resume), so the job runs to its end: the result is kept for
    get_generation, the slot frees, and the next caller is served.
    """
    settings = make_settings(max_queue=0)
    service = ImageService(settings, backend=tiny_engine)
    headers = {"Accept": "application/json, text/event-stream"}
    with serve(settings, service) as live:
        async with Client(f"{live.url}/mcp") as survivor, httpx.AsyncClient(
            base_url=live.url, timeout=LIMIT_S
        ) as http:
            init = await http.post("/mcp", headers=headers, json={
                "jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {"protocolVersion": LATEST_HANDSHAKE_VERSION, "capabilities": {},
                           "clientInfo": {"name": "crashes", "version": "0"}}})
            session = {**headers, "mcp-session-id": init.headers["mcp-session-id"],
                       "mcp-protocol-version": LATEST_HANDSHAKE_VERSION}
            await http.post("/mcp", headers=session,
                            json={"jsonrpc": "2.0", "method": "notifications/initialized"})
            call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                    "params": {"name": "generate_image",
                               "arguments": {"prompt": "dropped", **SMALL}}}
            async with http.stream("POST", "/mcp", headers=session, json=call) as response:
                assert response.status_code == 200
                async for _ in response.aiter_bytes():
                    break  # the first event arrived: the call is in flight
                await wait_until(lambda: len(service.jobs.all()) == 1, what="the job")
            # The connection is gone, and no notifications/cancelled was sent.
            job = _only_job(service)
            await _job_finished(job)
            await wait_until(lambda: service.queue_status()["running"] == 0, what="free slot")
            kept = await survivor.call_tool("get_generation", {"job_id": job.id})
            assert_succeeded(kept)
            assert_succeeded(await generate(survivor))


async def test_generation_timeout_interrupts_then_a_normal_generation_succeeds(
    tiny_engine: SDXLEngine, make_settings: Callable[..., Any]
) -> None:
    server, service = on_engine(make_settings, tiny_engine, generation_timeout_s=1.0)
    async with Client(server) as client:
        timed_out = await generate(client, **LARGE)
        assert_one_sentence_error(timed_out, "GENERATION_TIMEOUT_S")
        data = structured(timed_out)
        assert data["status"] == "failed" and data["error_code"] == "timeout"
        assert data["retryable"] is True
        assert_slot_free(service)
        assert_nothing_written(service)
        # The operator raises the limit (the fault removed); the engine is fine.
        service.jobs.timeout_s = 600.0
        assert_succeeded(await generate(client))


# ------------------------------------------------------------- Pexels faults
@pytest.mark.parametrize("mode", ["401", "429", "500", "bad-json", "slow"])
async def test_pexels_fault_falls_back_to_sdxl_and_the_server_keeps_serving(
    mode: str, tiny_engine: SDXLEngine, make_settings: Callable[..., Any], pexels: FakePexels,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if mode == "slow":  # a Pexels that hangs: the client's read timeout, shortened
        from sdxl_mcp.stock.pexels import default_http_client

        def short(**kwargs: Any) -> httpx.AsyncClient:
            client = default_http_client(**kwargs)
            client.timeout = httpx.Timeout(0.5)
            return client

        monkeypatch.setattr("sdxl_mcp.stock.pexels.default_http_client", short)
    pexels.set_mode(mode)
    server, service = on_engine(make_settings, tiny_engine, pexels_api_key=KEY,
                                pexels_base_url=pexels.base_url)
    async with Client(server) as client:
        result = await client.call_tool("generate_image", {
            "prompt": "a lighthouse", **SMALL, "use_pexels": True, "use_generation": True})
        data = assert_succeeded(result)
        assert data["image"]["source"] == "sdxl"
        assert pexels.searches, "Pexels was never asked"
        status = await client.call_tool("gpu_status", {})
        assert not status.is_error and structured(status)["pexels"]["configured"] is True
    assert [p.name for p in image_files(service.settings.output_dir)] == [
        Path(data["path"]).name]
    assert temp_files(service.settings.output_dir) == []
