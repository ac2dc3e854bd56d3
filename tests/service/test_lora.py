"""LoRA adapters and draft mode without torch: the request rules, the files, the
service's admission, ``list_models`` (LoRAs) over MCP and ``/api/media/loras`` over
REST (the engine side is ``test_lora_engine``)."""

from __future__ import annotations

import hashlib
import json
import logging
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client
from pydantic import ValidationError

from sdxl_mcp.entrypoints.mcp.server import build_server
from sdxl_mcp.errors import BadRequest
from sdxl_mcp.library.infotext import InfotextParams, format_infotext, parse_infotext
from sdxl_mcp.library.loras import (
    draft_source,
    lora_files,
    lora_hash,
    resolve_draft,
    resolve_loras,
    warn_missing_dirs,
    with_loras,
)
from sdxl_mcp.schemas import (
    EditRequest,
    GenerationRequest,
    VaryRequest,
    describe_validation_error,
)
from sdxl_mcp.schemas.loras import prompt_loras, prompt_without_lora_tags
from sdxl_mcp.service.facade import ImageService
from sdxl_mcp.service.generate import generate as generate_image
from sdxl_mcp.service.loras import admit
from sdxl_mcp.service.vary import vary as vary_image
from tests.fakes import GatedBackend
from tests.helpers_http import serve

SMALL = {"width": 256, "height": 256, "num_inference_steps": 20}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def fake_safetensors(path: Path, payload: bytes = b"\x00" * 64) -> Path:
    """A file in the safetensors layout (8-byte header length, JSON header, bytes)."""
    header = json.dumps({"w": {"dtype": "U8", "shape": [len(payload)],
                               "data_offsets": [0, len(payload)]}}).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(header)) + header + payload)
    return path


def invalid(model: Any, **fields: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        model(**fields)
    return describe_validation_error(caught.value)


# ---------------------------------------------------------------- the request
def test_prompt_tags_are_read_and_removed_from_the_encoded_text() -> None:
    prompt = "a castle <lora:ink_style:0.8>, misty <lora:film> at dusk"
    assert [(r.name, r.weight) for r in prompt_loras(prompt)] == [("ink_style", 0.8),
                                                                  ("film", 1.0)]
    assert prompt_without_lora_tags(prompt) == "a castle, misty at dusk"
    assert prompt_without_lora_tags("no tags here") == "no tags here"


@pytest.mark.parametrize(("fields", "words"), [
    ({"loras": [{"name": "a", "weight": 2.5}]}, "loras.0.weight must be ≤ 2.0"),
    ({"loras": [{"name": "a", "weight": -0.1}]}, "loras.0.weight must be ≥ 0.0"),
    ({"loras": [{"name": n} for n in "abcde"]}, "loras must have at most 4 items"),
    ({"loras": [{"name": "a"}], "prompt": "x <lora:a:1>"}, "'a' is given twice"),
    ({"prompt": "x <lora:a:3>"}, "prompt: the weight of <lora:a:3> must be 0.0-2.0"),
    ({"prompt": "x <lora:a:b:c>"}, "is not <lora:name> or <lora:name:weight>"),
    ({"prompt": "<lora:a> <lora:b> <lora:c> <lora:d> <lora:e>"}, "at most 4 LoRAs"),
    ({"loras": [{"name": "../a"}]}, "loras.0.name: a LoRA name is a file name"),
    ({"num_inference_steps": 8}, 'num_inference_steps must be ≥ 20 (got 8); fewer steps '
                                 'only with quality "draft"'),
])
def test_bad_lora_and_steps_input_names_the_field(fields: dict[str, Any], words: str) -> None:
    assert words in invalid(GenerationRequest, **{"prompt": "a fox", **fields})


def test_draft_allows_few_steps_and_sets_no_refiner() -> None:
    draft = GenerationRequest(prompt="a fox", quality="draft", num_inference_steps=4)
    assert (draft.num_inference_steps, draft.use_refinement) == (4, False)


def test_loras_skip_the_refiner_unless_use_refinement_is_given() -> None:
    tagged = GenerationRequest(prompt="a fox <lora:ink:1>")
    listed = GenerationRequest(prompt="a fox", loras=[{"name": "ink"}], quality="high")
    asked = GenerationRequest(prompt="a fox", loras=[{"name": "ink"}], use_refinement=True)
    edit = EditRequest(image="x", prompt="a fox", loras=[{"name": "ink"}])
    assert not tagged.use_refinement and not listed.use_refinement and not edit.use_refinement
    assert listed.num_inference_steps == 50  # the rest of the preset stays
    assert asked.use_refinement and GenerationRequest(prompt="a fox").use_refinement


def test_a_request_with_loras_stays_frozen_and_hashable() -> None:
    request = GenerationRequest(prompt="a fox", loras=[{"name": "ink", "weight": 0.5}])
    assert hash(request) == hash(GenerationRequest.model_validate_json(
        request.model_dump_json()))  # what travels to a Ray replica comes back equal


def test_vary_takes_loras_as_an_override() -> None:
    vary = VaryRequest(image="img_1", loras=[{"name": "ink", "weight": 0.5}])
    assert vary.overrides()["loras"] == [{"name": "ink", "weight": 0.5}]
    assert "loras" not in VaryRequest(image="img_1").overrides()


# ---------------------------------------------------------------- the files
def test_files_are_found_by_name_and_an_unknown_name_lists_them(
    make_settings: Callable[..., Any], tmp_path: Path
) -> None:
    fake_safetensors(tmp_path / "a" / "ink.safetensors")
    fake_safetensors(tmp_path / "a" / "sub" / "film.safetensors")
    fake_safetensors(tmp_path / "b" / "ink.safetensors")  # the first folder wins
    settings = make_settings(lora_dirs=[tmp_path / "a", tmp_path / "b", tmp_path / "gone"])
    assert lora_files(settings.lora_dirs) == {"film": tmp_path / "a/sub/film.safetensors",
                                              "ink": tmp_path / "a/ink.safetensors"}
    assert resolve_loras(settings, ["ink"]) == {"ink": tmp_path / "a/ink.safetensors"}
    with pytest.raises(BadRequest) as caught:
        resolve_loras(settings, ["ink", "nope"])
    assert "'nope'" in caught.value.message and "available: film, ink" in caught.value.message


def test_the_hash_is_a1111s_short_hash_of_the_tensor_bytes(tmp_path: Path) -> None:
    path = fake_safetensors(tmp_path / "ink.safetensors", b"tensor bytes")
    assert lora_hash(path) == hashlib.sha256(b"tensor bytes").hexdigest()[:12]
    assert lora_hash(tmp_path / "missing.safetensors") is None


def test_the_infotext_keeps_the_tags_adds_the_entries_and_lora_hashes(
    make_settings: Callable[..., Any], tmp_path: Path
) -> None:
    ink = fake_safetensors(tmp_path / "ink.safetensors", b"ink")
    fake_safetensors(tmp_path / "film.safetensors", b"film")
    settings = make_settings(lora_dirs=[tmp_path])
    request = GenerationRequest(prompt="a fox <lora:film:0.5>", loras=[{"name": "ink",
                                                                         "weight": 0.8}])
    params = InfotextParams(prompt=request.prompt, steps=20, cfg_scale=7.0, seed=1,
                            width=64, height=64, model="m")
    parsed = parse_infotext(format_infotext(with_loras(params, settings, request)))
    assert parsed["prompt"] == "a fox <lora:film:0.5><lora:ink:0.8>"
    assert parsed["Lora hashes"] == (f"ink: {lora_hash(ink)}, "
                                     f"film: {hashlib.sha256(b'film').hexdigest()[:12]}")


@pytest.mark.parametrize(("scheduler", "sampler", "schedule"), [
    ("euler-trailing", "Euler", "SGM Uniform"), ("lcm", "LCM", None), ("tcd", "TCD", None)])
def test_a_draft_infotext_names_the_draft_sampler_as_a1111_does(
    make_settings: Callable[..., Any], scheduler: str, sampler: str, schedule: str | None
) -> None:
    settings = make_settings(draft_scheduler=scheduler)
    request = GenerationRequest(prompt="a fox", quality="draft", num_inference_steps=4,
                                guidance_scale=1.0)
    params = InfotextParams(prompt=request.prompt, steps=4, cfg_scale=1.0, seed=1,
                            width=64, height=64, model="m")
    parsed = parse_infotext(format_infotext(with_loras(params, settings, request)))
    assert parsed["Sampler"] == sampler
    assert parsed.get("Schedule type") == schedule


def test_draft_source_reads_a_file_or_a_hub_id(tmp_path: Path) -> None:
    file = fake_safetensors(tmp_path / "lightning.safetensors")
    assert draft_source(str(file)) == (str(tmp_path), "lightning.safetensors")
    assert draft_source("ByteDance/SDXL-Lightning/sdxl_lightning_4step_lora.safetensors") == (
        "ByteDance/SDXL-Lightning", "sdxl_lightning_4step_lora.safetensors")
    assert draft_source("latent-consistency/lcm-lora-sdxl") == (
        "latent-consistency/lcm-lora-sdxl", None)


# ---------------------------------------------------------------- admission
def test_draft_without_draft_lora_names_the_setting_and_suggests_fast(
    make_settings: Callable[..., Any],
) -> None:
    with pytest.raises(BadRequest) as caught:
        admit(make_settings(), GenerationRequest(prompt="a fox", quality="draft"))
    assert "SDXL_MCP_DRAFT_LORA" in caught.value.message and '"fast"' in caught.value.message


def test_draft_takes_the_servers_steps_and_guidance_unless_given(
    make_settings: Callable[..., Any],
) -> None:
    settings = make_settings(draft_lora="org/repo", draft_steps=6, draft_guidance=1.5)
    filled = resolve_draft(settings, GenerationRequest(prompt="a fox", quality="draft"))
    given = resolve_draft(settings, GenerationRequest(prompt="a fox", quality="draft",
                                                      num_inference_steps=2,
                                                      guidance_scale=2.0))
    assert (filled.num_inference_steps, filled.guidance_scale) == (6, 1.5)
    assert (given.num_inference_steps, given.guidance_scale) == (2, 2.0)
    # What really runs is what the catalogued request says (reuse, vary_image, infotext).
    again = GenerationRequest.model_validate(filled.model_dump(mode="json"))
    assert (again.num_inference_steps, again.guidance_scale) == (6, 1.5)


def test_a_configured_lora_folder_that_does_not_exist_is_a_startup_warning(
    make_settings: Callable[..., Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="sdxl_mcp.library.loras"):
        warn_missing_dirs(make_settings(lora_dirs=[tmp_path / "nowhere"]))
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "nowhere" in caplog.text and "SDXL_MCP_LORA_DIRS" in caplog.text


# ---------------------------------------------------------------- transports
@pytest.mark.anyio
async def test_list_models_lists_loras_and_bad_lora_requests_over_mcp(
    make_settings: Callable[..., Any], tmp_path: Path
) -> None:
    fake_safetensors(tmp_path / "loras" / "ink.safetensors")
    settings = make_settings(lora_dirs=[tmp_path / "loras"])
    backend = GatedBackend(gate_open=True)
    svc = ImageService(settings, backend=backend)  # type: ignore[arg-type]
    async with Client(build_server(settings, svc)) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        listed = await client.call_tool("list_models", {})
        unknown = await client.call_tool("generate_image", {
            "prompt": "a fox", "loras": [{"name": "nope"}], **SMALL})
        tagged = await client.call_tool("generate_image", {
            "prompt": "a fox <lora:nope:1>", **SMALL})
        draft = await client.call_tool("generate_image", {"prompt": "a fox",
                                                          "quality": "draft"})
        queue = svc.queue_status()
        files = list(settings.output_dir.rglob("*.png"))
    assert tools["list_models"].annotations.read_only_hint is True
    assert len(json.dumps(tools["list_models"].model_dump(mode="json"))) < 1500
    assert not listed.is_error
    body = listed.structured_content or {}
    assert [(i["name"], i["loaded"]) for i in body["loras"]] == [("ink", None)]
    assert body["loras"][0]["bytes"] > 0 and "ink" in listed.content[0].text
    for result in (unknown, tagged):
        assert result.is_error and "'nope'" in result.content[0].text
        assert "available: ink" in result.content[0].text
    assert draft.is_error and "SDXL_MCP_DRAFT_LORA" in draft.content[0].text
    assert files == [] and queue["running"] == 0 and queue["waiting"] == 0
    assert backend.calls == 0


def test_rest_lists_the_loras(make_settings: Callable[..., Any], tmp_path: Path) -> None:
    fake_safetensors(tmp_path / "loras" / "ink.safetensors")
    settings = make_settings(lora_dirs=[tmp_path / "loras"])
    with serve(settings) as live:
        answer = httpx.get(live.url + "/api/media/loras", timeout=30)
        document = httpx.get(live.url + "/openapi.json", timeout=30).json()
    assert answer.status_code == 200, answer.text
    assert answer.json()["loras"][0]["name"] == "ink"
    assert answer.json()["loras"][0]["loaded"] is False  # no engine yet: nothing loaded
    assert "/api/media/loras" in document["paths"]


@pytest.mark.anyio
async def test_vary_with_new_loras_skips_the_refiner_and_few_steps_need_draft(
    make_settings: Callable[..., Any], tmp_path: Path
) -> None:
    from tests.fakes import RecordingBackend

    fake_safetensors(tmp_path / "loras" / "ink.safetensors")
    backend = RecordingBackend()
    settings = make_settings(lora_dirs=[tmp_path / "loras"])
    async with ImageService(settings, backend=backend) as svc:  # type: ignore[arg-type]
        source = await generate_image(svc, GenerationRequest(prompt="a fox", seed=1, **SMALL))
        assert backend.requests[-1][0].use_refinement
        await vary_image(svc, VaryRequest(image=source.image_id or "", seed=2,
                                   loras=[{"name": "ink", "weight": 0.6}]))
        with pytest.raises(BadRequest) as caught:
            await vary_image(svc, VaryRequest(image=source.image_id or "", num_inference_steps=6))
    varied = backend.requests[-1][0]
    assert not varied.use_refinement and [(r.name, r.weight) for r in varied.loras] == [
        ("ink", 0.6)]
    assert "num_inference_steps must be ≥ 20 (got 6)" in caught.value.message


def test_a_tag_in_any_case_is_read_like_the_lowercase_one() -> None:
    assert [(r.name, r.weight) for r in prompt_loras("<LoRA:ink:0.5> a cat")] == [("ink", 0.5)]
    assert prompt_without_lora_tags("<LORA:ink:0.5> a cat") == "a cat"
    # It asks for a LoRA, so the refiner is skipped as for <lora:...>.
    assert GenerationRequest(prompt="<LoRA:ink:0.5> a cat").use_refinement is False
