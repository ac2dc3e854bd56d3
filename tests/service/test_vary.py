"""vary_image end to end: the service, the MCP tool and the REST route.

Reproducibility runs on the shared tiny engine (CPU, 256x256, 20 steps, no
refiner); overrides, admission, one job and cancel use the gated fake backend.
Every refused input is one sentence naming the argument, writes nothing and
takes no slot.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import numpy as np
import pytest
from mcp import Client
from PIL import Image
from pydantic import ValidationError

from sdxl_mcp.backend.base import ProgressEvent
from sdxl_mcp.entrypoints.mcp.server import build_server
from sdxl_mcp.errors import BadRequest
from sdxl_mcp.schemas import EditRequest, GenerationRequest, VaryRequest
from sdxl_mcp.service.edit import edit as edit_image
from sdxl_mcp.service.facade import ImageService
from sdxl_mcp.service.generate import generate as generate_image
from sdxl_mcp.service.vary import vary as vary_image
from tests.fakes import RecordingBackend
from tests.helpers_http import serve
from tests.helpers_images import catalogue, files, noise

pytestmark = pytest.mark.anyio
SMALL = {"width": 256, "height": 256, "num_inference_steps": 20, "use_refinement": False}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def source_request(**fields: Any) -> GenerationRequest:
    return GenerationRequest(**{"prompt": "a red fox in the snow", "seed": 1, **SMALL,
                                **fields})


def pixels(path: str | None) -> np.ndarray:
    return np.asarray(Image.open(path or ""))


async def until(condition: Callable[[], bool], limit_s: float = 30.0) -> None:
    deadline = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        await anyio.sleep(0.01)


# ------------------------------------------------------------------ service
async def test_variations_with_a_seed_equal_generations_with_those_seeds(
    make_settings: Callable[..., Any], tiny_engine: Any
) -> None:
    events: list[ProgressEvent] = []
    async with ImageService(make_settings(), backend=tiny_engine) as svc:
        source = await generate_image(svc, source_request())
        varied = await vary_image(svc, VaryRequest(image=source.image_id or "", count=2, seed=10),
                                on_progress=events.append)
        # Catalogued like a generation: the identical request reuses the variation.
        reused = await generate_image(svc, source_request(seed=11))
        singles = [await generate_image(svc, source_request(seed=s, reuse=False)) for s in (10, 11)]
        same_seed = await vary_image(svc, VaryRequest(image=source.image_id or "", seed=1))
    assert varied.status == "succeeded" and varied.success and varied.job_id
    assert varied.source_image_id == source.image_id
    assert [r.seed for r in varied.results] == [10, 11]
    for variation, single in zip(varied.results, singles, strict=True):
        assert variation.image_id not in (source.image_id, single.image_id)
        assert np.array_equal(pixels(variation.path), pixels(single.path))
    assert not np.array_equal(pixels(varied.results[0].path), pixels(varied.results[1].path))
    assert reused.reused and reused.image_id == varied.results[1].image_id
    # Progress runs across both images: one count from 1 to twice an image's steps.
    assert {e.total for e in events} == {40} and events[-1].done == 40
    assert [e.done for e in events] == sorted(e.done for e in events)
    # Reuse never short-circuits a variation: the source's own seed is a new image.
    assert same_seed.results[0].image_id != source.image_id
    assert np.array_equal(pixels(same_seed.results[0].path), pixels(source.path))
    assert not same_seed.results[0].reused


async def test_overrides_are_merged_into_the_catalogued_request(
    make_settings: Callable[..., Any],
) -> None:
    backend = RecordingBackend()
    async with ImageService(make_settings(), backend=backend) as svc:  # type: ignore[arg-type]
        source = await generate_image(svc, GenerationRequest(
            prompt="a lighthouse", negative_prompt="blurry", aspect_ratio="16:9", seed=3,
            num_inference_steps=30, guidance_scale=6.0, use_pexels=True, use_generation=True))
        image = source.image_id or ""
        backend.requests.clear()
        await vary_image(svc, VaryRequest(image=image, seed=7, prompt="a lighthouse at dusk",
                                   guidance_scale=9.0, width=512))
        await vary_image(svc, VaryRequest(image=image, seed=7, quality="fast"))
        await vary_image(svc, VaryRequest(image=image, seed=7, aspect_ratio="1:1", count=3))
        random = await vary_image(svc, VaryRequest(image=image, count=2))
    (changed, seed), (fast, _), (square, _) = backend.requests[:3]
    assert seed == 7 and changed.seed == 7
    assert changed.prompt == "a lighthouse at dusk" and changed.guidance_scale == 9.0
    assert (changed.width, changed.height, changed.aspect_ratio) == (512, 768, None)
    assert changed.negative_prompt == "blurry" and changed.num_inference_steps == 30
    assert not changed.use_pexels and changed.use_generation  # no stock search
    assert fast.prompt == "a lighthouse" and (fast.width, fast.height) == (1344, 768)
    assert (fast.num_inference_steps, fast.use_refinement, fast.guidance_scale) == (
        20, False, 7.5)
    assert [r.seed for r, _ in backend.requests[2:5]] == [7, 8, 9]
    assert (square.width, square.height, square.aspect_ratio) == (1024, 1024, "1:1")
    assert len({r.seed for r in random.results}) == 2
    assert VaryRequest(image=image, seed=2**32 - 1, count=2).seeds() == [2**32 - 1, 0]


# ------------------------------------------------------------- bad input
@pytest.mark.parametrize(("fields", "words"), [
    ({"sharpness": 2}, "sharpness is not a known field"),
    ({"use_pexels": True}, "use_pexels is not a known field"),
    ({"count": 0}, "count must be ≥ 1"),
    ({"count": 5}, "count must be ≤ 4"),
    ({"seed": 2**32, "count": 2}, "seed must be ≤ 4294967295"),
    ({"aspect_ratio": "1:1", "width": 512}, "cannot be combined with width or height"),
    ({"num_inference_steps": 5, "quality": "fast"}, "num_inference_steps must be ≥ 20"),
    ({"use_refinement": "yes"}, "use_refinement must be true or false"),
])
def test_bad_arguments_are_schema_errors_naming_them(fields: dict[str, Any], words: str) -> None:
    from sdxl_mcp.schemas import describe_validation_error

    with pytest.raises(ValidationError) as caught:
        VaryRequest.model_validate({"image": "abcdef", **fields})
    assert words in describe_validation_error(caught.value)


async def test_sources_without_a_catalogued_request_point_to_edit_image(
    make_settings: Callable[..., Any], tmp_path: Path
) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    noise((64, 64)).save(inputs / "photo.png")
    backend = RecordingBackend()
    async with ImageService(make_settings(input_dirs=[inputs]), backend=backend) as svc:  # type: ignore[arg-type]
        photo = catalogue(svc.store, noise(), source="pexels", source_id="42",
                          parameters={"attribution": "Photo by A on Pexels"})
        generated = await generate_image(svc, source_request())
        edited = await edit_image(svc, EditRequest(image=generated.image_id or "",
                                                    prompt="at night"))
        before, calls = files(svc.store.output_dir), len(backend.requests)
        cases = [(photo.image_id, "stock photo.*edit_image"),
                 (str(inputs / "photo.png"), "no catalogued generation request.*edit_image"),
                 (edited.image_id, "made by edit_image")]
        for image, words in cases:
            with pytest.raises(BadRequest, match=words):
                await vary_image(svc, VaryRequest(image=image or ""))
        assert files(svc.store.output_dir) == before and len(backend.requests) == calls
        assert len(svc.jobs.all()) == 2  # the generation and the edit only


# ------------------------------------------------------- jobs and cancel
async def test_all_variations_are_one_job_and_cancel_stops_the_rest(
    make_settings: Callable[..., Any],
) -> None:
    backend = RecordingBackend(passes=2)  # the source and the first variation
    async with ImageService(make_settings(), backend=backend) as svc:  # type: ignore[arg-type]
        source = await generate_image(svc, source_request())
        answers: list[Any] = []

        async def vary() -> None:
            answers.append(await vary_image(
                svc, VaryRequest(image=source.image_id or "", count=3, seed=20), wait_s=60))

        async with anyio.create_task_group() as tg:
            tg.start_soon(vary)
            await until(lambda: len(backend.requests) == 3)  # the second variation runs
            job = svc.jobs.all()[-1]
            assert len(svc.jobs.all()) == 2 and job.seed == 20  # the variations' one job
            assert svc.queue_status()["running_jobs"] == [job.id]
            assert svc.queue_status()["running"] == 1 and svc.queue_status()["waiting"] == 0
            cancelled = await svc.cancel_job(job.id)
        answer = answers[0]
        assert cancelled.status == "cancelled" and backend.cancelled.is_set()
        assert answer.status == "cancelled" and answer.job_id == job.id and not answer.success
        assert [r.seed for r in answer.results] == [20]  # the saved one is kept
        assert "1 of 3 variation(s) were saved" in answer.message
        assert len(backend.requests) == 3  # the third never started
        assert svc.queue_status()["running"] == 0  # the slot is free
        backend.gate.set()
        handle = await vary_image(svc, VaryRequest(image=source.image_id or "", count=2, seed=30))
        assert handle.status == "succeeded" and len(handle.results) == 2
        first = await svc.wait_job(handle.job_id or "", 0)
        assert first.image_id == handle.results[0].image_id
        assert str(handle.results[1].image_id) in first.message


async def test_a_long_run_is_a_job_handle(make_settings: Callable[..., Any]) -> None:
    backend = RecordingBackend(passes=1)
    async with ImageService(make_settings(), backend=backend) as svc:  # type: ignore[arg-type]
        source = await generate_image(svc, source_request())
        handle = await vary_image(svc, VaryRequest(image=source.image_id or "", count=2),
                                  wait_s=0.05)
        assert handle.status == "running" and handle.job_id and handle.results == []
        assert "get_generation" in handle.message
        backend.gate.set()
        done = await svc.wait_job(handle.job_id, 30)
        assert done.status == "succeeded" and done.seed is not None


# -------------------------------------------------------------------- MCP
async def test_mcp_vary_image_lists_the_paths_with_a_preview_links_and_progress(
    make_settings: Callable[..., Any],
) -> None:
    settings = make_settings()
    svc = ImageService(settings, backend=RecordingBackend())  # type: ignore[arg-type]
    progress: list[tuple[float, float | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total))

    async with Client(build_server(settings, svc)) as client:
        source = await generate_image(svc, source_request())
        result = await client.call_tool("vary_image", {"image": source.image_id, "count": 2,
                                                       "seed": 5, "prompt": "a grey fox"},
                                        progress_callback=on_progress)
        unknown = await client.call_tool("vary_image", {"image": source.image_id,
                                                        "sharpness": 1})
        too_many = await client.call_tool("vary_image", {"image": source.image_id, "count": 5})
        photo = catalogue(svc.store, noise(), source="pexels")
        stock = await client.call_tool("vary_image", {"image": photo.image_id})
    assert not result.is_error, result.content
    body = result.structured_content or {}
    assert body["status"] == "succeeded" and [r["seed"] for r in body["results"]] == [5, 6]
    assert [c.type for c in result.content] == ["text", "image", "resource_link",
                                                "resource_link"]
    text = result.content[0].text
    assert all(r["path"] in text for r in body["results"])
    assert progress[-1] == (6, 6)  # the fake's 3 steps, twice
    assert unknown.is_error and "sharpness" in unknown.content[0].text
    assert too_many.is_error and "count" in too_many.content[0].text
    assert stock.is_error and "edit_image" in stock.content[0].text


# ------------------------------------------------------------------- REST
def test_rest_vary_image_answers_every_result_or_422_naming_the_field(
    make_settings: Callable[..., Any],
) -> None:
    settings = make_settings()
    svc = ImageService(settings, backend=RecordingBackend())  # type: ignore[arg-type]
    with serve(settings, svc) as live:
        made = httpx.post(live.url + "/api/media/generate-image", json={
            "prompt": "a red fox", "use_pexels": False, "use_generation": True, "seed": 2,
            **SMALL}, timeout=60)
        assert made.status_code == 200, made.text
        source = made.json()["image_id"]
        url = live.url + "/api/media/vary-image"
        ok = httpx.post(url, json={"image": source, "count": 2, "seed": 1}, timeout=60)
        bad = httpx.post(url, json={"image": source, "count": 0}, timeout=60)
        unknown = httpx.post(url, json={"image": source, "steps": 30}, timeout=60)
    assert ok.status_code == 200, ok.text
    assert [r["seed"] for r in ok.json()["results"]] == [1, 2]
    assert bad.status_code == 422 and "count" in bad.json()["message"]
    assert unknown.status_code == 422 and "steps" in unknown.json()["message"]

