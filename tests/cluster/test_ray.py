"""The Ray Serve backend on a local Ray instance: tiny models, CPU replicas.

One module, one shared cluster (starting Ray is the slow part), so the suite
stays inside its time budget.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest
from mcp import Client
from PIL import Image

ray = pytest.importorskip("ray")

from sdxl_mcp.cluster.ray_backend import RayBackend  # noqa: E402
from sdxl_mcp.entrypoints.mcp.server import build_server  # noqa: E402
from sdxl_mcp.service.facade import ImageService  # noqa: E402
from sdxl_mcp.service.generate import generate as generate_image  # noqa: E402
from sdxl_mcp.service.vary import vary as vary_image  # noqa: E402
from sdxl_mcp.settings import Settings  # noqa: E402

SMALL = {"width": 256, "height": 256, "num_inference_steps": 20}


@pytest.fixture(scope="module")
def ray_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    import torch

    root = tmp_path_factory.mktemp("ray")
    # Same thread count as this process: CPU float reductions then match bit for bit,
    # so "same seed, same pixels" can be compared across backends.
    return Settings(  # type: ignore[call-arg]
        _env_file=None, backend="ray", replicas=2, ray_torch_threads=torch.get_num_threads(),
        ray_num_cpus=1,
        base_model="tiny-random", refiner_model="tiny-random", preload=False,
        output_dir=root / "images", log_dir=root / "logs", max_wait_s=300,
    )


@pytest.fixture(scope="module")
def ray_backend(ray_settings: Settings, tiny_models: tuple) -> Iterator[RayBackend]:
    backend = RayBackend(ray_settings)
    backend.load()
    yield backend
    backend.shutdown()


def server_for(settings: Settings, backend: RayBackend, **overrides: Any) -> Any:
    settings = settings.model_copy(update=overrides)
    return build_server(settings, ImageService(settings, backend=backend))


def replica_of(result: Any) -> str:
    return result.structured_content["message"].rsplit("replica ", 1)[-1].rstrip(").")


async def read_png(client: Client, result: Any) -> np.ndarray:
    blob = (await client.read_resource(str(result.content[2].uri))).contents[0].blob
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(blob))))


async def test_same_seed_gives_the_same_pixels_as_the_local_engine(
    ray_settings: Settings, ray_backend: RayBackend, tiny_engine: Any
) -> None:
    from sdxl_mcp.schemas import GenerationRequest

    local = tiny_engine.generate(GenerationRequest(prompt="a red barn", **SMALL), seed=77)
    async with Client(server_for(ray_settings, ray_backend)) as client:
        result = await client.call_tool("generate_image", {"prompt": "a red barn", "seed": 77,
                                                           **SMALL})
        assert not result.is_error, result.content[0].text
        pixels = await read_png(client, result)
    data = result.structured_content
    assert data["steps"] == {"base": local.steps_base, "refiner": local.steps_refiner}
    assert np.array_equal(pixels, np.asarray(local.image))
    assert Path(data["path"]).is_file() and Path(data["metadata_path"]).is_file()


async def test_progress_streams_back_from_the_replica(
    ray_settings: Settings, ray_backend: RayBackend
) -> None:
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        seen.append((value, total, message))

    async with Client(server_for(ray_settings, ray_backend)) as client:
        result = await client.call_tool("generate_image", {"prompt": "x", "seed": 1, **SMALL},
                                        progress_callback=on_progress)
    assert not result.is_error
    values = [v for v, _, _ in seen]
    assert values == sorted(set(values)) and values[-1] == 20
    assert "base" in seen[0][2] and "refiner" in seen[-1][2]


async def test_two_generations_run_on_two_replicas_at_once(
    ray_settings: Settings, ray_backend: RayBackend
) -> None:
    results: list[Any] = []
    async with Client(server_for(ray_settings, ray_backend, max_queue=0)) as client:

        async def one(i: int) -> None:
            results.append(await client.call_tool("generate_image", {"prompt": f"p{i}",
                                                                     "seed": i, **SMALL}))

        async with anyio.create_task_group() as tg:
            tg.start_soon(one, 1)
            tg.start_soon(one, 2)
    # Capacity is two: with MAX_QUEUE=0 neither call was refused as busy.
    assert all(not r.is_error for r in results), [r.content[0].text for r in results]
    assert len({replica_of(r) for r in results}) == 2


async def test_cancel_reaches_the_replica_and_frees_it(
    ray_settings: Settings, ray_backend: RayBackend
) -> None:
    async with Client(server_for(ray_settings, ray_backend, max_wait_s=0.5)) as client:
        big = {"prompt": "slow", "width": 1024, "height": 1024, "num_inference_steps": 50}
        handle = (await client.call_tool("generate_image", big)).structured_content
        assert handle["status"] == "running"
        cancelled = await client.call_tool("cancel_generation", {"job_id": handle["job_id"]})
        assert cancelled.structured_content["status"] == "cancelled"
    # Both replicas serve again: two concurrent calls, no busy error.
    async with Client(server_for(ray_settings, ray_backend, max_queue=0)) as client:
        results: list[Any] = []
        async with anyio.create_task_group() as tg:
            for i in range(2):
                tg.start_soon(lambda i=i: _append(client, results, i))
    assert all(r.structured_content["status"] == "succeeded" for r in results)


async def _append(client: Client, results: list[Any], i: int) -> None:
    results.append(await client.call_tool("generate_image", {"prompt": f"q{i}", **SMALL}))


async def test_a_killed_replica_fails_its_request_retryably_and_is_replaced(
    ray_settings: Settings, ray_backend: RayBackend
) -> None:
    async with Client(server_for(ray_settings, ray_backend, max_wait_s=300)) as client:
        big = {"prompt": "doomed", "width": 1024, "height": 1024, "num_inference_steps": 50}
        outcome: list[Any] = []

        async def run() -> None:
            outcome.append(await client.call_tool("generate_image", big))

        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            victim = None
            with anyio.fail_after(120):
                while victim is None:
                    await anyio.sleep(0.1)
                    busy = [n for n, r in ray_backend._replicas.items() if r.get("current_job")]
                    victim = busy[0] if busy else None
            ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
        failed = outcome[0]
        assert failed.is_error
        assert failed.structured_content["retryable"] is True
        assert "replica" in failed.content[0].text
        # The server keeps serving (the other replica, then the replacement).
        after = await client.call_tool("generate_image", {"prompt": "after", **SMALL})
        assert after.structured_content["status"] == "succeeded"


def test_an_edit_runs_on_a_replica_with_the_local_engines_pixels(
    ray_backend: RayBackend, tiny_engine: Any
) -> None:
    from sdxl_mcp.schemas import EditRequest
    from tests.helpers_images import half_mask, noise

    source, mask = noise((320, 256)), half_mask((320, 256))
    request = EditRequest(image="unused-here", prompt="the same scene at night", strength=0.5,
                          num_inference_steps=10)
    events: list[Any] = []
    remote = ray_backend.edit(request, 9, source, mask, on_progress=events.append)
    local = tiny_engine.edit(request, 9, source, mask)
    assert remote.image.size == source.size == (320, 256)
    assert np.array_equal(np.asarray(remote.image), np.asarray(local.image))
    # The mask travelled: its black half is the source's, exactly.
    assert np.array_equal(np.asarray(remote.image)[:, 160:], np.asarray(source)[:, 160:])
    assert (remote.steps_base, remote.steps_refiner) == (local.steps_base, local.steps_refiner)
    assert events and events[-1].done == events[-1].total
    assert any("ran on replica" in note for note in remote.notes)


async def test_variations_on_the_ray_backend_get_consecutive_seeds(
    ray_settings: Settings, ray_backend: RayBackend
) -> None:
    from sdxl_mcp.schemas import GenerationRequest, VaryRequest

    events: list[Any] = []
    async with ImageService(ray_settings, backend=ray_backend) as service:
        source = await generate_image(service, GenerationRequest(
            prompt="a red fox", seed=1, use_refinement=False, **SMALL))
        varied = await vary_image(
            service, VaryRequest(image=source.image_id or "", count=2, seed=30),
            on_progress=events.append)
    assert varied.status == "succeeded", varied.message
    assert [r.seed for r in varied.results] == [30, 31]
    assert all(r.path and Path(r.path).is_file() for r in varied.results)
    assert {e.total for e in events} == {40} and events[-1].done == 40
