"""Reuse: an identical request with an explicit seed gets the catalogued image at once."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from sdxl_mcp.entrypoints.mcp.server import build_server
from sdxl_mcp.library.reuse import NOT_PIXELS, request_key
from sdxl_mcp.schemas import GenerationRequest
from sdxl_mcp.service.facade import ImageService
from sdxl_mcp.service.generate import generate as generate_image
from sdxl_mcp.settings import Settings
from tests.fakes import GatedBackend

SMALL = {"width": 256, "height": 256, "num_inference_steps": 20}


def _request(**fields: Any) -> GenerationRequest:
    return GenerationRequest(**{"prompt": "a lighthouse", "seed": 7, **SMALL, **fields})


@pytest.mark.parametrize("change", [
    {"prompt": "a lighthouse at night"}, {"negative_prompt": "fog"}, {"seed": 8},
    {"guidance_scale": 7.0}, {"num_inference_steps": 21}, {"width": 264},
    {"use_refinement": False}, {"high_quality": False}, {"refiner_mode": "sequential"},
    {"high_noise_frac": 0.7}, {"refiner_steps": 10}, {"refiner_strength": 0.4},
    {"sampler": "DPM++ 2M Karras"}, {"sampler": "Euler"}, {"model": "juggernautXL_v9"},
])
def test_any_pixel_changing_field_misses(
    make_settings: Callable[..., Settings], change: dict[str, Any]
) -> None:
    settings = make_settings()
    assert request_key(_request(**change), settings) != request_key(_request(), settings)


@pytest.mark.parametrize("setting", [
    {"base_model": "/models/other-base"}, {"refiner_model": "/models/other-refiner"},
    {"vae_model": "madebyollin/sdxl-vae-fp16-fix"}, {"precision": "fp16"}, {"device": "cuda"},
])
def test_another_model_precision_or_device_misses(
    make_settings: Callable[..., Settings], setting: dict[str, Any]
) -> None:
    assert request_key(_request(), make_settings(**setting)) != request_key(
        _request(), make_settings())


def test_fields_that_do_not_change_pixels_share_the_key(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    same = _request(use_pexels=True, reuse=False)
    assert request_key(same, settings) == request_key(_request(), settings)
    by_ratio = GenerationRequest(prompt="a lighthouse", seed=7, aspect_ratio="16:9")
    by_size = GenerationRequest(prompt="a lighthouse", seed=7, width=1344, height=768)
    assert request_key(by_ratio, settings) == request_key(by_size, settings)


def test_a_key_made_before_samplers_and_models_existed_still_matches(
    make_settings: Callable[..., Settings],
) -> None:
    """The canonical JSON of a request without a sampler or model is what it was before
    those fields came."""
    settings = make_settings()
    fields = _request().model_dump(mode="json", exclude=set(NOT_PIXELS))
    assert fields.pop("sampler") is None and fields.pop("model") is None
    fields["models"] = {"base": settings.base_model, "refiner": settings.refiner_model,
                        "vae": settings.vae_model, "precision": settings.precision,
                        "device": settings.device}
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert request_key(_request(), settings) == hashlib.sha256(canonical.encode()).hexdigest()


def test_no_seed_no_key(make_settings: Callable[..., Settings]) -> None:
    assert request_key(_request(seed=None), make_settings()) is None


@pytest.mark.anyio
async def test_identical_request_returns_the_catalogued_image_without_generating(
    make_settings: Callable[..., Settings],
) -> None:
    backend = GatedBackend(gate_open=True)
    async with ImageService(make_settings(), backend=backend) as service:
        first = await generate_image(service, _request())
        again = await generate_image(service, _request())
        assert backend.calls == 1
        assert again.reused is True and first.reused is False
        assert again.path == first.path and again.image_id == first.image_id
        assert "Reused" in again.message and "reuse=false" in again.message
        fresh = await generate_image(service, _request(reuse=False))
        assert backend.calls == 2 and fresh.path != first.path and not fresh.reused


@pytest.mark.anyio
async def test_a_deleted_file_is_generated_again(make_settings: Callable[..., Settings]) -> None:
    backend = GatedBackend(gate_open=True)
    async with ImageService(make_settings(), backend=backend) as service:
        first = await generate_image(service, _request())
        Path(first.path or "").unlink()
        again = await generate_image(service, _request())
    assert backend.calls == 2 and not again.reused and Path(again.path or "").exists()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_reuse_and_find_images_over_mcp(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    service = ImageService(settings, backend=GatedBackend(gate_open=True))
    async with Client(build_server(settings, service)) as client:
        made = (await client.call_tool("generate_image", {
            "prompt": "a red lighthouse", "seed": 3, **SMALL})).structured_content
        other = (await client.call_tool("generate_image", {
            "prompt": "a green field", "aspect_ratio": "3:2", "num_inference_steps": 20,
        })).structured_content
        reused = (await client.call_tool("generate_image", {
            "prompt": "a red lighthouse", "seed": 3, **SMALL})).structured_content
        found = await client.call_tool("find_images", {"query": "lighthouse"})
        everything = await client.call_tool("find_images", {})
        bad = await client.call_tool("find_images", {"limit": 51})
    assert made["image_id"] and reused["reused"] is True
    assert reused["image_id"] == made["image_id"]
    assert (other["image"]["width"], other["image"]["height"]) == (1216, 832)
    hits = found.structured_content["images"]
    assert found.structured_content["total"] == 1 and hits[0]["image_id"] == made["image_id"]
    assert hits[0]["uri"] == f"image://{made['image_id']}"
    assert [i["image_id"] for i in everything.structured_content["images"]] == [
        other["image_id"], made["image_id"]]  # newest first
    assert bad.is_error and "limit" in bad.content[0].text  # type: ignore[union-attr]
