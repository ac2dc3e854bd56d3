"""Load: 8 concurrent generate_image calls against MAX_QUEUE=2, over MCP and REST.

One generation runs and MAX_QUEUE=2 wait, so of 8 simultaneous calls 3 are
admitted and 5 are refused at once with a retry hint. Every call is accounted
for (succeeded, job handle, or busy), every handle finishes through the job
API, and every image is a distinct, complete file. The first generation is
held at its first UNet step until all 8 calls have been admitted or refused,
so the split does not depend on how fast the machine is.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client
from PIL import Image

from sdxl_mcp.engine.sdxl import SDXLEngine
from sdxl_mcp.entrypoints.mcp.server import build_server
from sdxl_mcp.service.facade import ImageService
from tests.fakes import GatedBackend
from tests.helpers_http import serve
from tests.reliability.support_faults import (
    LIMIT_S,
    SMALL,
    UnetGate,
    catalog_rows,
    finish_job,
    structured,
    temp_files,
    text,
    wait_until,
)

CALLS = 8
MAX_QUEUE = 2
ADMITTED = 1 + MAX_QUEUE  # the running one plus the waiting ones
#: Small, so admitted calls answer with a job handle instead of blocking.
MAX_WAIT_S = 0.5


def assert_distinct_complete_images(paths: list[str], folder: Path) -> None:
    assert len(paths) == ADMITTED and len(set(paths)) == ADMITTED
    digests = set()
    for name in paths:
        path = Path(name)
        assert path.is_absolute() and path.parent == folder.resolve()
        data = path.read_bytes()
        digests.add(hashlib.sha256(data).hexdigest())
        with Image.open(path) as image:
            image.load()
            assert image.size == (SMALL["width"], SMALL["height"])
    assert len(digests) == ADMITTED  # distinct seeds, distinct pixels
    rows = catalog_rows(folder)
    assert sorted(r["path"] for r in rows) == sorted(paths)
    assert temp_files(folder) == []


async def test_eight_concurrent_mcp_calls_are_all_accounted_for(
    tiny_engine: SDXLEngine, make_settings: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real tiny engine; the first generation waits at its first step for the gate."""
    gate = UnetGate(tiny_engine.base.unet)
    monkeypatch.setattr(tiny_engine.base.unet, "forward", gate)
    settings = make_settings(max_queue=MAX_QUEUE, max_wait_s=MAX_WAIT_S)
    service = ImageService(settings, backend=tiny_engine)
    answers: dict[int, Any] = {}

    async with Client(build_server(settings, service)) as client:

        async def call(i: int) -> None:
            answers[i] = await client.call_tool(
                "generate_image", {"prompt": f"lighthouse {i}", "seed": 100 + i, **SMALL})

        try:
            async with anyio.create_task_group() as tg:
                for i in range(CALLS):
                    tg.start_soon(call, i)
                # Refusals are immediate; admission is decided while the engine is held.
                await wait_until(lambda: sum(a.is_error for a in answers.values())
                                 == CALLS - ADMITTED, what="the busy answers")
                await wait_until(gate.entered.is_set, what="the first generation")
                gate.open()
        finally:
            gate.open()

        assert len(answers) == CALLS
        busy = [a for a in answers.values() if a.is_error]
        succeeded = [a for a in answers.values()
                     if not a.is_error and structured(a)["status"] == "succeeded"]
        handles = [a for a in answers.values()
                   if not a.is_error and structured(a)["status"] == "running"]
        assert len(busy) == CALLS - ADMITTED
        assert len(succeeded) + len(handles) == ADMITTED
        for answer in busy:
            message = text(answer)
            assert "busy" in message and "MAX_QUEUE=2" in message
            match = re.search(r"\(retry_after_s=(\d+)\)$", message)
            assert match and int(match.group(1)) >= 1, message
        for handle in handles:
            assert structured(handle)["job_id"]
            done = await finish_job(client, structured(handle)["job_id"])
            assert not done.is_error and structured(done)["status"] == "succeeded", text(done)
            succeeded.append(done)
        paths = [structured(a)["path"] for a in succeeded]
        assert_distinct_complete_images(paths, settings.output_dir)
        queue = structured(await client.call_tool("gpu_status", {}))["queue"]
        assert (queue["running"], queue["waiting"]) == (0, 0)


async def test_eight_concurrent_rest_posts_get_200_202_or_429_with_retry_after(
    make_settings: Callable[..., Any],
) -> None:
    """The REST API under uvicorn on loopback; a gated fake engine holds the slot."""
    settings = make_settings(max_queue=MAX_QUEUE, max_wait_s=MAX_WAIT_S)
    backend = GatedBackend()
    service = ImageService(settings, backend=backend)  # type: ignore[arg-type]
    with serve(settings, service) as live:
        async with httpx.AsyncClient(base_url=live.url, timeout=LIMIT_S) as http:
            responses: dict[int, httpx.Response] = {}

            async def post(i: int) -> None:
                responses[i] = await http.post("/api/media/generate-image", json={
                    "prompt": f"lighthouse {i}", "seed": 100 + i, "use_pexels": False,
                    "use_generation": True, **SMALL})

            try:
                async with anyio.create_task_group() as tg:
                    for i in range(CALLS):
                        tg.start_soon(post, i)
                    await wait_until(lambda: len(responses) == CALLS, what="every answer")
            finally:
                backend.gate.set()

            codes = sorted(r.status_code for r in responses.values())
            assert set(codes) <= {200, 202, 429}, codes
            refused = [r for r in responses.values() if r.status_code == 429]
            accepted = [r for r in responses.values() if r.status_code in (200, 202)]
            assert len(refused) == CALLS - ADMITTED and len(accepted) == ADMITTED
            for response in refused:
                assert int(response.headers["Retry-After"]) >= 1
                body = response.json()
                assert body["error_code"] == "busy" and body["retryable"] is True
            paths = []
            for response in accepted:
                body = response.json()
                if response.status_code == 202:
                    assert body["status"] == "running" and body["job_id"]
                    with anyio.fail_after(LIMIT_S):
                        while response.status_code == 202:
                            response = await http.get(f"/api/media/jobs/{body['job_id']}",
                                                      params={"wait": MAX_WAIT_S})
                    body = response.json()
                assert response.status_code == 200 and body["status"] == "succeeded", body
                image = await http.get(f"/api/media/images/{Path(body['path']).name}")
                assert image.status_code == 200
                assert image.content == Path(body["path"]).read_bytes()
                paths.append(body["path"])
            health = (await http.get("/healthz")).json()
    assert backend.calls == ADMITTED
    assert health["queue"]["running"] == 0 and health["queue"]["waiting"] == 0
    assert_distinct_complete_images(paths, settings.output_dir)
