"""Models by name in the service: admission with a model's defaults, list_models over
MCP, REST and the CLI, and switches under load that keep the queue honest."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client

from sdxl_mcp.entrypoints.mcp.server import build_server
from sdxl_mcp.errors import BadRequest
from sdxl_mcp.schemas import EditRequest, GenerationRequest
from sdxl_mcp.service.admission import admit
from sdxl_mcp.service.facade import ImageService
from sdxl_mcp.service.generate import generate
from sdxl_mcp.settings import Settings
from tests.fakes import GatedBackend
from tests.helpers_checkpoints import write_checkpoint
from tests.helpers_cli import run_cli
from tests.helpers_http import serve

SMALL = {"width": 256, "height": 256}


@pytest.fixture(scope="module")
def models_dir(tiny_models: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
               ) -> Path:
    folder = tmp_path_factory.mktemp("models")
    write_checkpoint(tiny_models[0], folder / "juggernautXL.safetensors", perturb=0.05, seed=1)
    (folder / "juggernautXL.json").write_text(json.dumps(
        {"num_inference_steps": 30, "guidance_scale": 5, "sampler": "DPM++ 2M Karras",
         "negative_prompt": "blurry"}))
    write_checkpoint(tiny_models[0], folder / "ponyXL.safetensors", perturb=0.05, seed=2)
    return folder


def settings_with(make_settings: Callable[..., Settings], models_dir: Path,
                  tiny_models: tuple[Path, Path], **more: Any) -> Settings:
    return make_settings(model_dirs=[models_dir], checkpoint_config=list(tiny_models), **more)


# ------------------------------------------------------------------ admission
def test_a_models_defaults_fill_what_the_request_left_out(
        make_settings: Callable[..., Settings], models_dir: Path,
        tiny_models: tuple[Path, Path]) -> None:
    settings = settings_with(make_settings, models_dir, tiny_models)
    admitted = admit(settings, GenerationRequest(prompt="x", model="juggernautXL",
                                                 guidance_scale=7))
    assert admitted.num_inference_steps == 30 and admitted.sampler == "DPM++ 2M Karras"
    assert admitted.negative_prompt == "blurry"
    assert admitted.guidance_scale == 7  # given: the request wins


def test_another_model_skips_the_refiner_unless_asked(
        make_settings: Callable[..., Settings], models_dir: Path,
        tiny_models: tuple[Path, Path]) -> None:
    settings = settings_with(make_settings, models_dir, tiny_models)
    assert admit(settings, GenerationRequest(prompt="x", model="ponyXL")).use_refinement is False
    asked = GenerationRequest(prompt="x", model="ponyXL", use_refinement=True)
    assert admit(settings, asked).use_refinement is True
    by_preset = GenerationRequest(prompt="x", model="ponyXL", quality="high")
    assert admit(settings, by_preset).use_refinement is True
    assert admit(settings, EditRequest(image="abcdef", prompt="x", model="ponyXL")
                 ).use_refinement is False


def test_the_base_models_own_name_is_the_default(
        make_settings: Callable[..., Settings], models_dir: Path,
        tiny_models: tuple[Path, Path]) -> None:
    settings = settings_with(make_settings, models_dir, tiny_models)
    admitted = admit(settings, GenerationRequest(prompt="x", model="tiny-random"))
    assert admitted.model is None and admitted.use_refinement is True


def test_an_unknown_model_is_refused_before_a_job_starts(
        make_settings: Callable[..., Settings], models_dir: Path,
        tiny_models: tuple[Path, Path]) -> None:
    settings = settings_with(make_settings, models_dir, tiny_models)
    with pytest.raises(BadRequest, match="juggernautXL, ponyXL, tiny-random"):
        admit(settings, GenerationRequest(prompt="x", model="sdxl-turbo"))


# ------------------------------------------------------------------ list_models
async def test_list_models_names_models_loras_and_styles_over_mcp(
        make_settings: Callable[..., Settings], models_dir: Path,
        tiny_models: tuple[Path, Path], tmp_path: Path) -> None:
    settings = settings_with(make_settings, models_dir, tiny_models)
    svc = ImageService(settings, backend=GatedBackend())  # type: ignore[arg-type]
    async with Client(build_server(settings, svc)) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        listed = await client.call_tool("list_models", {})
        refused = await client.call_tool("generate_image", {"prompt": "x", "model": "nope"})
    assert "list_loras" not in tools and tools["list_models"].annotations.read_only_hint
    body = listed.structured_content or {}
    assert [(m["name"], m["kind"], m["default"]) for m in body["models"]] == [
        ("tiny-random", "diffusers", True), ("juggernautXL", "checkpoint", False),
        ("ponyXL", "checkpoint", False)]
    jugg = body["models"][1]
    assert jugg["defaults"]["sampler"] == "DPM++ 2M Karras" and jugg["size_bytes"] > 0
    assert body["styles"] == [] and body["model_dirs"] == [str(models_dir)]
    assert refused.is_error and "no model 'nope'" in refused.content[0].text  # type: ignore[union-attr]


def test_rest_lists_the_models(make_settings: Callable[..., Settings], models_dir: Path,
                               tiny_models: tuple[Path, Path]) -> None:
    settings = settings_with(make_settings, models_dir, tiny_models)
    with serve(settings, ImageService(settings, backend=GatedBackend())) as live:  # type: ignore[arg-type]
        answer = httpx.get(live.url + "/api/media/models", timeout=30)
    assert answer.status_code == 200
    assert [m["name"] for m in answer.json()["models"]] == ["tiny-random", "juggernautXL",
                                                            "ponyXL"]


def test_the_cli_lists_the_models(models_dir: Path, tiny_models: tuple[Path, Path],
                                  tmp_path: Path) -> None:
    proc = run_cli("models", tmp_path=tmp_path, SDXL_MCP_MODEL_DIRS=str(models_dir))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("tiny-random\tdiffusers") and "default" in lines[0]
    assert lines[1].startswith("juggernautXL\tcheckpoint")
    assert "SDXL_MCP_MODEL_DIRS" in proc.stderr


# ------------------------------------------------------------------ under load
async def test_switches_under_load_keep_the_queue_honest(
        make_settings: Callable[..., Settings], models_dir: Path,
        tiny_models: tuple[Path, Path]) -> None:
    """Four jobs on two models at once: each runs on its own model, none is lost, and
    the loaded models and the queue say so afterwards."""
    from sdxl_mcp.engine.sdxl import SDXLEngine

    settings = settings_with(make_settings, models_dir, tiny_models, refiner_model="",
                             max_queue=8)
    engine = SDXLEngine(settings)
    models = ["juggernautXL", None, "ponyXL", "juggernautXL"]
    results: dict[int, Any] = {}
    async with ImageService(settings, backend=engine) as svc:  # type: ignore[arg-type]
        async def one(index: int) -> None:
            results[index] = await generate(svc, GenerationRequest(
                prompt="a lighthouse", seed=4, model=models[index], reuse=False,
                num_inference_steps=20, **SMALL))

        async with anyio.create_task_group() as tg:
            for index in range(len(models)):
                tg.start_soon(one, index)
        queue = svc.queue_status()
    assert [results[i].status for i in range(4)] == ["succeeded"] * 4
    assert [results[i].model for i in range(4)] == [
        "juggernautXL", "tiny-random", "ponyXL", "juggernautXL"]
    assert results[0].sampler == "DPM++ 2M Karras"  # juggernautXL's defaults
    assert results[0].model_hash and results[0].model_hash != results[2].model_hash
    assert queue["running"] == queue["waiting"] == 0
    assert set(engine.loaded_models()) >= {"tiny-random"}


def test_a_checkpoint_base_models_defaults_apply_without_naming_it(
        make_settings: Callable[..., Settings], models_dir: Path,
        tiny_models: tuple[Path, Path]) -> None:
    settings = make_settings(base_model=str(models_dir / "juggernautXL.safetensors"),
                             checkpoint_config=list(tiny_models))
    admitted = admit(settings, GenerationRequest(prompt="x"))
    assert admitted.sampler == "DPM++ 2M Karras" and admitted.use_refinement is True
