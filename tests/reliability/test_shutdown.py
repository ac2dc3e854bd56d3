"""Graceful shutdown: SIGTERM/SIGINT or stdin closing stop the server cleanly.

The stdio server runs as a real subprocess (``python -m sdxl_mcp serve``)
spoken to over its pipes, so the test owns its pid. A 1024x1024 generation on
the tiny models is long enough to still be denoising when the signal arrives.
Restarts are in-process servers on the same output folder: what a restarted
server finds is the catalog on disk, whoever opens it.
"""

from __future__ import annotations

import base64
import hashlib
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from sdxl_mcp.backend.base import CancelToken
from sdxl_mcp.entrypoints.mcp.server import build_server
from sdxl_mcp.errors import Busy, Cancelled
from sdxl_mcp.library import CATALOG_FILENAME
from sdxl_mcp.schemas import GenerationRequest
from sdxl_mcp.service.facade import ImageService
from sdxl_mcp.service.generate import submit_generation
from sdxl_mcp.service.jobtable import JobTable
from tests.fakes import GatedBackend
from tests.reliability.support_faults import (
    LARGE,
    LIMIT_S,
    SMALL,
    assert_images_intact,
    catalog_integrity,
    image_files,
    stdio_server,
    structured,
    temp_files,
    text,
    wait_for_denoising,
)

#: The bound on a graceful exit: the running step finishes, then everything closes.
EXIT_LIMIT_S = 60.0
#: Short enough that every generate_image call returns a job handle at once.
HANDLE_ENV = {"SDXL_MCP_MAX_WAIT_S": "1"}


def _finish_over_stdio(server: Any, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + LIMIT_S
    while time.monotonic() < deadline:
        result = server.tool("get_generation", {"job_id": job_id, "wait_seconds": 1})
        if result["structuredContent"]["status"] != "running":
            return dict(result)
    raise TimeoutError(f"job {job_id} did not finish")


async def _restarted(settings: Any, call: Callable[[Any], Any]) -> Any:
    """Run ``call(client)`` against a fresh server on the same output folder."""
    async with Client(build_server(settings)) as client:
        return await call(client)


# ------------------------------------------------------------------ signals
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_to_an_idle_server_exits_zero_while_the_client_keeps_stdin_open(
    signum: signal.Signals, tmp_path: Path
) -> None:
    """A service manager's stop: the client is still connected, nothing is running."""
    with stdio_server(tmp_path) as server:
        status = server.tool("gpu_status", {})
        assert not status.get("isError"), status
        server.process.send_signal(signum)
        code = server.wait(EXIT_LIMIT_S)
        log = server.stderr_tail()
    assert code == 0, log
    assert f"Received {signum.name}: shutting down gracefully" in log


@pytest.mark.slow
async def test_sigterm_cancels_the_running_generation_and_a_restart_finds_everything(
    tmp_path: Path, make_settings: Callable[..., Any], tiny_models: tuple[Path, Path],
) -> None:
    """SIGTERM mid-generation: exit 0 in bounded time, no temp file, catalog closed.

    (SIGINT takes the same handler; its idle test above proves it.) The restart
    answers for the interrupted job and serves the image written before it.
    """
    output = tmp_path / "images"
    with stdio_server(tmp_path, **HANDLE_ENV) as server:
        handle = server.tool("generate_image", {"prompt": "kept", "seed": 5, **SMALL})
        before = _finish_over_stdio(server, handle["structuredContent"]["job_id"])
        assert before["structuredContent"]["status"] == "succeeded", before
        kept = Path(before["structuredContent"]["path"])
        handle = server.tool("generate_image", {"prompt": "interrupted", "seed": 6, **LARGE})
        job = handle["structuredContent"]
        assert job["status"] == "running" and job["job_id"], handle
        wait_for_denoising(server, job["job_id"])

        server.process.send_signal(signal.SIGTERM)
        code = server.wait(EXIT_LIMIT_S)
        log = server.stderr_tail()
    assert code == 0, log
    assert "Received SIGTERM: shutting down gracefully" in log
    assert temp_files(output) == []
    assert not (output / "catalog.sqlite3-wal").exists()  # closed: the WAL checkpointed
    assert catalog_integrity(output) == "ok"
    assert [p.name for p in image_files(output)] == [kept.name]  # nothing half-written
    assert assert_images_intact(output) == 1  # PNG opens, sha256 matches the catalog

    async def follow_up(client: Any) -> tuple[Any, Any]:
        outcome = await client.call_tool("get_generation", {"job_id": job["job_id"]})
        image = await client.read_resource(f"image://{kept.name}")
        return outcome, image

    outcome, image = await _restarted(make_settings(), follow_up)
    assert outcome.is_error, text(outcome)
    assert structured(outcome)["status"] == "cancelled"
    assert "cancelled by shutdown" in text(outcome)
    blob = base64.b64decode(image.contents[0].blob)
    assert hashlib.sha256(blob).hexdigest() == hashlib.sha256(kept.read_bytes()).hexdigest()


@pytest.mark.slow
async def test_closing_stdin_mid_generation_exits_zero_and_records_the_job(
    tmp_path: Path, make_settings: Callable[..., Any], tiny_models: tuple[Path, Path],
) -> None:
    """The client vanishing (its end of the pipe closes) is a graceful shutdown too."""
    output = tmp_path / "images"
    with stdio_server(tmp_path, **HANDLE_ENV) as server:
        handle = server.tool("generate_image", {"prompt": "abandoned", **LARGE})
        job_id = handle["structuredContent"]["job_id"]
        wait_for_denoising(server, job_id)
        server.close_stdin()
        code = server.wait(EXIT_LIMIT_S)
        log = server.stderr_tail()
    assert code == 0, log
    assert "stdin closed: shutting down" in log
    assert temp_files(output) == [] and image_files(output) == []
    assert not (output / "catalog.sqlite3-wal").exists()
    assert catalog_integrity(output) == "ok"

    async def follow_up(client: Any) -> Any:
        return await client.call_tool("get_generation", {"job_id": job_id})

    outcome = await _restarted(make_settings(), follow_up)
    assert outcome.is_error and structured(outcome)["status"] == "cancelled", text(outcome)


# ------------------------------------------------- a load that never ends
#: Far beyond the exit we promise (docs/RELIABILITY.md "Exit times"), far below forever.
HANG_LIMIT_S = 15.0


def _model_that_never_loads(root: Path) -> dict[str, str]:
    """Settings whose base model blocks its loader forever: its ``model_index.json`` is a
    FIFO nobody writes to, as a stuck disk or a huge download would hold a real load."""
    folder = root / "stuck-model"
    folder.mkdir()
    os.mkfifo(folder / "model_index.json")
    return {"SDXL_MCP_BASE_MODEL": str(folder), "SDXL_MCP_REFINER_MODEL": "",
            "SDXL_MCP_PRELOAD": "true", **HANDLE_ENV}


@pytest.mark.parametrize("stop", ["stdin", "SIGTERM", "SIGINT"])
def test_the_server_exits_while_the_models_are_still_loading(tmp_path: Path, stop: str) -> None:
    with stdio_server(tmp_path, **_model_that_never_loads(tmp_path)) as server:
        assert server.tool("gpu_status", {})["structuredContent"]["engine"]["state"] in (
            "loading", "not_loaded")
        if stop == "stdin":
            server.close_stdin()
        else:
            server.process.send_signal(signal.SIGTERM if stop == "SIGTERM" else signal.SIGINT)
        assert server.wait(HANG_LIMIT_S) == 0


def test_a_generation_queued_behind_the_load_is_cancelled_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    with stdio_server(tmp_path, **_model_that_never_loads(tmp_path)) as server:
        handle = server.tool("generate_image", {"prompt": "a fox", **SMALL})["structuredContent"]
        assert handle["status"] == "running"
        server.close_stdin()
        assert server.wait(HANG_LIMIT_S) == 0
        images = server.output_dir
    assert image_files(images) == [] and temp_files(images) == []
    table = JobTable(images / CATALOG_FILENAME)
    try:
        record = table.get(handle["job_id"])
    finally:
        table.close()
    assert record is not None and record[0] == "cancelled"


# ------------------------------------------------------------- lost jobs
async def test_a_job_running_when_the_process_was_killed_is_reported_lost(
    tmp_path: Path, make_settings: Callable[..., Any],
) -> None:
    """SIGKILL cannot be handled: the next start marks what was unfinished as lost."""
    with stdio_server(tmp_path, **HANDLE_ENV) as server:
        handle = server.tool("generate_image", {"prompt": "killed", **LARGE})
        job_id = handle["structuredContent"]["job_id"]
        assert handle["structuredContent"]["status"] == "running", handle
        while "Generation queued" in handle["structuredContent"]["message"]:
            handle = server.tool("get_generation", {"job_id": job_id, "wait_seconds": 0.2})
        server.process.send_signal(signal.SIGKILL)
        assert server.wait(EXIT_LIMIT_S) == -signal.SIGKILL

    async def follow_up(client: Any) -> tuple[Any, Any]:
        lost = await client.call_tool("get_generation", {"job_id": job_id})
        unknown = await client.call_tool("get_generation", {"job_id": "never-existed"})
        return lost, unknown

    lost, unknown = await _restarted(make_settings(), follow_up)
    assert lost.is_error
    assert "lost" in text(lost) and "restarted" in text(lost), text(lost)
    assert unknown.is_error and "No job" in text(unknown)  # "lost" is not "not found"
    assert temp_files(tmp_path / "images") == []
    assert catalog_integrity(tmp_path / "images") == "ok"


@pytest.mark.parametrize("state", ["queued", "running"])
async def test_unfinished_rows_of_a_previous_process_are_lost_not_not_found(
    state: str, make_settings: Callable[..., Any],
) -> None:
    settings = make_settings()
    settings.output_dir.mkdir(parents=True)
    jobs = JobTable(settings.output_dir / "catalog.sqlite3")
    jobs.save("a" * 32, state)
    jobs.close()
    (settings.output_dir / ".tmp-0123456789abcdef.png").write_bytes(b"\x89PNG half")

    service = ImageService(settings, backend=GatedBackend(gate_open=True))  # type: ignore[arg-type]
    async with Client(build_server(settings, service)) as client:
        result = await client.call_tool("get_generation", {"job_id": "a" * 32})
        assert result.is_error
        assert "was lost: the server restarted before it finished" in text(result)
        after = await client.call_tool("generate_image", {"prompt": "next", **SMALL})
        assert structured(after)["status"] == "succeeded", text(after)
    assert temp_files(settings.output_dir) == []  # the crash's half-written file is gone


# -------------------------------------------------------- in-process service
class OneLongStep(GatedBackend):
    """A generation whose current step ends only when the test says so."""

    def __init__(self) -> None:
        super().__init__()
        self.step_may_end = threading.Event()

    def generate(self, req: GenerationRequest, seed: int, on_progress: Any = None,
                 cancel: CancelToken | None = None) -> Any:
        self.started.set()
        self.step_may_end.wait(LIMIT_S)
        assert cancel is not None
        if cancel.cancelled:  # checked after every step, like the real engine
            self.cancelled.set()
            raise Cancelled(f"Generation {cancel.reason} during the base stage.")
        self.gate.set()
        return super().generate(req, seed, on_progress, cancel)


async def test_shutdown_stops_admitting_and_cancels_running_work_within_a_step(
    make_settings: Callable[..., Any],
) -> None:
    settings = make_settings()
    backend = OneLongStep()
    service = ImageService(settings, backend=backend)  # type: ignore[arg-type]
    request = GenerationRequest(prompt="running at shutdown", **SMALL)
    jobs: list[Any] = []
    refused: list[Busy] = []

    async def lifetime() -> None:
        async with service:  # leaving the block is the shutdown
            jobs.append(submit_generation(service, request))
            await anyio.to_thread.run_sync(backend.started.wait)

    with anyio.fail_after(LIMIT_S):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lifetime)
            while not service.jobs.closing:  # shutdown began; the step is still running
                await anyio.sleep(0.01)
            try:
                submit_generation(service, request)
            except Busy as exc:
                refused.append(exc)
            backend.step_may_end.set()  # the step ends; the engine sees the cancel
    assert refused and "shutting down" in refused[0].message
    assert refused[0].retry_after_s
    assert backend.cancelled.is_set()
    job = jobs[0]
    assert job.state == "cancelled" and job.result is not None
    assert "cancelled by shutdown" in job.result.message
    assert temp_files(settings.output_dir) == []
    # The catalog was closed cleanly and holds the job's outcome for a restart.
    assert catalog_integrity(settings.output_dir) == "ok"
    table = JobTable(settings.output_dir / "catalog.sqlite3")
    try:
        assert table.get(job.id) is not None
        assert table.get(job.id)[0] == "cancelled"  # type: ignore[index]
    finally:
        table.close()
