"""The MCP tools through the in-memory client: what an agent sees."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from typing import Any

import anyio
import numpy as np
import pytest
from mcp import Client
from PIL import Image

from sdxl_mcp.entrypoints.mcp.server import build_server
from sdxl_mcp.service.facade import ImageService
from tests.fakes import GatedBackend
from tests.helpers_mcp import TOOLS

SMALL = {"width": 256, "height": 256, "num_inference_steps": 20}


def text(result: Any) -> str:
    return result.content[0].text


def png_pixels(blob: str | bytes) -> np.ndarray:
    data = base64.b64decode(blob) if isinstance(blob, str) else blob
    return np.asarray(Image.open(io.BytesIO(data)))


@pytest.fixture
def tiny_server(make_settings: Callable[..., Any], tiny_models: tuple) -> Any:
    return build_server(make_settings())


def gated_server(make_settings: Callable[..., Any], backend: GatedBackend, **overrides: Any
                 ) -> Any:
    settings = make_settings(**overrides)
    return build_server(settings, ImageService(settings, backend=backend))


# ------------------------------------------------------------------ listing
async def test_tools_are_listed_with_schemas_and_annotations(tiny_server: Any) -> None:
    async with Client(tiny_server) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(tools) == TOOLS
    for tool in tools.values():
        assert tool.description and tool.output_schema and tool.annotations
    generate = tools["generate_image"]
    props = generate.input_schema["properties"]
    assert generate.input_schema["required"] == ["prompt"]
    assert props["prompt"]["maxLength"] == 500
    width = props["width"]
    assert (width["minimum"], width["maximum"], width["multipleOf"]) == (256, 2048, 8)
    assert width["default"] == 1024 and width["type"] == "integer"
    steps = props["num_inference_steps"]  # null: the quality preset's
    # 1: quality "draft" runs a few steps; outside draft the validator asks for 20.
    # Portable: one type; null (the preset's) is accepted but not published.
    assert (steps["minimum"], steps["maximum"], steps["type"]) == (1, 100, "integer")
    assert all(p.get("description") for p in props.values())
    assert "timings" in generate.output_schema["properties"]
    assert tools["gpu_status"].annotations.read_only_hint is True
    assert tools["get_generation"].annotations.read_only_hint is True
    assert not tools["generate_image"].annotations.read_only_hint  # absent: false
    assert tools["generate_image"].annotations.destructive_hint is False
    assert tools["cancel_generation"].annotations.destructive_hint is True
    assert tools["search_stock_image"].annotations.open_world_hint is True
    assert tools["gpu_status"].annotations.open_world_hint is False


# --------------------------------------------------------------- generation
async def test_generate_image_returns_result_preview_and_link(tiny_server: Any) -> None:
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, total, message))

    async with Client(tiny_server) as client:
        result = await client.call_tool("generate_image", {"prompt": "a lighthouse", "seed": 9,
                                                           **SMALL}, progress_callback=on_progress)
        assert not result.is_error, text(result)
        data = result.structured_content
        assert data["success"] and data["status"] == "succeeded" and data["seed"] == 9
        assert data["steps"] == {"base": 16, "refiner": 4}
        kinds = [c.type for c in result.content]
        assert kinds == ["text", "image", "resource_link"]
        assert data["path"] in text(result)
        preview = result.content[1]
        assert preview.mime_type == "image/jpeg"
        raw = base64.b64decode(preview.data)
        assert len(raw) < 1024 * 1024
        assert max(Image.open(io.BytesIO(raw)).size) <= 512
        link = result.content[2]
        assert str(link.uri) == "image://" + data["image_id"]
        assert link.name == data["path"].rsplit("/", 1)[-1]
        contents = (await client.read_resource(str(link.uri))).contents[0]
        assert contents.mime_type == "image/png"
        assert png_pixels(contents.blob).shape == (256, 256, 3)
    values = [p[0] for p in progress]
    assert values == sorted(set(values)) and values[-1] == progress[-1][1] == 20
    assert "base" in progress[0][2] and "refiner" in progress[-1][2]


async def test_generate_image_logs_what_it_will_generate(tiny_server: Any) -> None:
    messages: list[str] = []

    async def on_log(params: Any) -> None:
        messages.append(str(params.data))

    async with Client(tiny_server, logging_callback=on_log, log_level="info") as client:
        result = await client.call_tool("generate_image", {"prompt": "a lighthouse", **SMALL})
    assert not result.is_error, text(result)
    assert "Generating 256x256, 20 steps, refiner on (ensemble)" in messages


async def test_same_seed_gives_same_pixels_over_mcp(tiny_server: Any) -> None:
    async with Client(tiny_server) as client:
        images = []
        for _ in range(2):
            result = await client.call_tool("generate_image", {"prompt": "a cube", "seed": 42,
                                                               "quality": "fast", **SMALL})
            link = result.content[2]
            images.append(png_pixels((await client.read_resource(str(link.uri))).contents[0].blob))
            assert result.structured_content["seed"] == 42
    assert np.array_equal(images[0], images[1])


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"prompt": ""}, "prompt"),
        ({"prompt": "x" * 501}, "prompt"),
        ({"prompt": "x", "num_inference_steps": 19}, "num_inference_steps"),
        ({"prompt": "x", "num_inference_steps": 101}, "num_inference_steps"),
        ({"prompt": "x", "guidance_scale": 25}, "guidance_scale"),
        ({"prompt": "x", "width": 1001}, "width"),
        ({"prompt": "x", "height": 4096}, "height"),
        ({"prompt": "x", "seed": -1}, "seed"),
        ({"prompt": "x", "high_noise_frac": 0.99}, "high_noise_frac"),
        ({"prompt": "x", "refiner_strength": 0}, "refiner_strength"),
        ({"prompt": "x", "refiner_mode": "parallel"}, "refiner_mode"),
        ({"prompt": "x", "bogus": 1}, "bogus"),
        ({"prompt": 7}, "prompt"),
    ],
)
async def test_bad_arguments_are_one_sentence_naming_the_field_and_session_lives(
    make_settings: Callable[..., Any], arguments: dict[str, Any], field: str
) -> None:
    backend = GatedBackend(gate_open=True)
    async with Client(gated_server(make_settings, backend)) as client:
        result = await client.call_tool("generate_image", arguments)
        assert result.is_error
        message = text(result)
        assert field in message and "\n" not in message and "pydantic" not in message
        after = await client.call_tool("generate_image", {"prompt": "ok", **SMALL})
        assert not after.is_error
    assert backend.calls == 1  # the bad call never reached the engine


# ---------------------------------------------------------------- admission
async def test_calls_beyond_max_queue_are_busy_and_the_rest_finish(
    make_settings: Callable[..., Any],
) -> None:
    backend = GatedBackend()
    results: list[Any] = []
    async with Client(gated_server(make_settings, backend, max_queue=2)) as client:

        async def call(i: int) -> None:
            results.append(await client.call_tool("generate_image", {"prompt": f"p{i}",
                                                                     **SMALL}))

        async with anyio.create_task_group() as tg:
            for i in range(5):
                tg.start_soon(call, i)
            await anyio.to_thread.run_sync(backend.started.wait)
            with anyio.fail_after(10):
                while sum(r.is_error for r in results) < 2:
                    await anyio.sleep(0.01)
            backend.gate.set()
    busy = [r for r in results if r.is_error]
    done = [r for r in results if not r.is_error]
    assert len(busy) == 2 and len(done) == 3
    assert all("busy" in text(r) and "retry in" in text(r) for r in busy)
    paths = {r.structured_content["path"] for r in done}
    assert len(paths) == 3


async def test_max_wait_gives_a_job_handle_that_get_generation_completes(
    make_settings: Callable[..., Any],
) -> None:
    backend = GatedBackend()
    async with Client(gated_server(make_settings, backend, max_wait_s=0.2)) as client:
        first = await client.call_tool("generate_image", {"prompt": "slow", **SMALL})
        assert not first.is_error
        handle = first.structured_content
        assert handle["status"] == "running" and handle["job_id"]
        pending = await client.call_tool("get_generation", {"job_id": handle["job_id"]})
        assert pending.structured_content["status"] == "running"
        backend.gate.set()
        final = await client.call_tool("get_generation", {"job_id": handle["job_id"],
                                                          "wait_seconds": 0.2})
        for _ in range(50):
            if final.structured_content["status"] != "running":
                break
            final = await client.call_tool("get_generation", {"job_id": handle["job_id"],
                                                              "wait_seconds": 0.2})
        assert final.structured_content["status"] == "succeeded"
        assert [c.type for c in final.content] == ["text", "image", "resource_link"]


async def test_cancel_generation_stops_the_job_and_frees_the_slot(
    make_settings: Callable[..., Any],
) -> None:
    backend = GatedBackend()
    async with Client(gated_server(make_settings, backend, max_wait_s=0.1, max_queue=0)
                      ) as client:
        handle = (await client.call_tool("generate_image", {"prompt": "x", **SMALL})
                  ).structured_content
        await anyio.to_thread.run_sync(backend.started.wait)
        cancelled = await client.call_tool("cancel_generation", {"job_id": handle["job_id"]})
        assert cancelled.is_error and cancelled.structured_content["status"] == "cancelled"
        assert backend.cancelled.is_set()
        backend.gate.set()
        again = await client.call_tool("generate_image", {"prompt": "y", **SMALL})
        assert again.structured_content["status"] == "succeeded"


async def test_client_cancel_stops_the_job_and_frees_the_slot(
    make_settings: Callable[..., Any],
) -> None:
    backend = GatedBackend()
    async with Client(gated_server(make_settings, backend, max_queue=0)) as client:
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.call_tool, "generate_image", {"prompt": "x", **SMALL})
            await anyio.to_thread.run_sync(backend.started.wait)
            tg.cancel_scope.cancel()
        with anyio.fail_after(10):
            await anyio.to_thread.run_sync(backend.cancelled.wait)
        backend.gate.set()
        again = await client.call_tool("generate_image", {"prompt": "y", **SMALL})
        assert again.structured_content["status"] == "succeeded"


async def test_unknown_job_is_an_error_result(make_settings: Callable[..., Any]) -> None:
    async with Client(gated_server(make_settings, GatedBackend())) as client:
        result = await client.call_tool("get_generation", {"job_id": "does-not-exist"})
    assert result.is_error and "No job" in text(result)


# ------------------------------------------------------------------ preload
async def test_status_answers_and_generation_waits_while_models_load(
    make_settings: Callable[..., Any],
) -> None:
    backend = GatedBackend(gate_open=True, load_gate_open=False)
    async with Client(gated_server(make_settings, backend, preload=True)) as client:
        status = await client.call_tool("gpu_status", {})
        assert not status.is_error
        assert status.structured_content["engine"]["state"] in ("loading", "not_loaded")
        async with anyio.create_task_group() as tg:
            results: list[Any] = []

            async def generate() -> None:
                results.append(await client.call_tool("generate_image", {"prompt": "x",
                                                                         **SMALL}))

            tg.start_soon(generate)
            await anyio.sleep(0.3)
            assert results == []  # waiting for the load, not failing
            backend.load_gate.set()
        assert results[0].structured_content["status"] == "succeeded"
        assert results[0].structured_content["timings"]["queue_wait"] >= 0


async def test_gpu_status_works_without_a_gpu(tiny_server: Any) -> None:
    async with Client(tiny_server) as client:
        await client.call_tool("generate_image", {"prompt": "x", "quality": "fast", **SMALL})
        status = (await client.call_tool("gpu_status", {})).structured_content
    assert status["cuda_available"] is False
    assert status["engine"]["state"] == "ready"
    assert status["precision"]["dtype"] == "fp32" and status["precision"]["reason"]
    assert status["queue"] == {"running": 0, "waiting": 0, "max_queue": 8, "running_jobs": [],
                               "capacity": 1}
    assert status["last_generation_time"] > 0


async def test_stock_search_without_a_key_says_how_to_get_one(tiny_server: Any) -> None:
    async with Client(tiny_server) as client:
        result = await client.call_tool("search_stock_image", {"query": "office"})
    assert result.is_error
    assert text(result) == "PEXELS_API_KEY is not set: get a free key at pexels.com/api"


@pytest.mark.parametrize(
    "uri", ["image://../../etc/passwd", "image://%2Fetc%2Fpasswd", "image://nope.png",
            "image://catalog.sqlite3"]
)
async def test_images_the_server_did_not_make_are_not_readable(
    tiny_server: Any, uri: str
) -> None:
    async with Client(tiny_server) as client:
        with pytest.raises(Exception, match=r"Unknown resource|No image|rror"):
            await client.read_resource(uri)
