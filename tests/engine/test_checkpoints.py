"""Single-file SDXL checkpoints on the engine: the same weights as the folder model, offline.

The tiny base and refiner are written in the original SGM/A1111 layout by
``tests.helpers_checkpoints``; SDXL_MCP_CHECKPOINT_CONFIG points at the tiny
folders (the built-in configs describe the real SDXL, whose weights are not here).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sdxl_mcp.engine.checkpoints import builtin_config, config_folder
from sdxl_mcp.engine.footprint import reference_param_counts
from sdxl_mcp.engine.sdxl import SDXLEngine
from sdxl_mcp.errors import ModelUnavailable
from sdxl_mcp.schemas import GenerationRequest
from sdxl_mcp.settings import Settings
from tests.helpers_checkpoints import write_checkpoint, write_sd15_like

SMALL = {"width": 256, "height": 256, "num_inference_steps": 20}


@pytest.fixture(scope="module")
def checkpoints(tiny_models: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
                ) -> dict[str, Path]:
    base_dir, refiner_dir = tiny_models
    folder = tmp_path_factory.mktemp("checkpoints")
    return {
        "base": write_checkpoint(base_dir, folder / "tinyXL.safetensors"),
        "refiner": write_checkpoint(refiner_dir, folder / "tinyXL_refiner.safetensors",
                                    refiner=True),
        "tuned": write_checkpoint(base_dir, folder / "tinyXL_tuned.safetensors", perturb=0.05,
                                  seed=1),
        "sd15": write_sd15_like(folder / "sd15.safetensors"),
    }


def engine_on(tiny_models: tuple[Path, Path], base: Path | str, refiner: Path | str = ""
              ) -> SDXLEngine:
    settings = Settings(_env_file=None, base_model=str(base), refiner_model=str(refiner),  # type: ignore[call-arg]
                        checkpoint_config=list(tiny_models), preload=False, warmup=False)
    engine = SDXLEngine(settings)
    engine.load()
    return engine


def pixels(engine: SDXLEngine, **fields: Any) -> np.ndarray:
    request = GenerationRequest(prompt="a lighthouse at dawn", **{**SMALL, **fields})
    return np.asarray(engine.generate(request, seed=5).image)


def test_a_single_file_base_gives_the_folder_models_pixels(
        tiny_models: tuple[Path, Path], tiny_engine: SDXLEngine,
        checkpoints: dict[str, Path]) -> None:
    engine = engine_on(tiny_models, checkpoints["base"])
    assert np.array_equal(pixels(engine, use_refinement=False),
                          pixels(tiny_engine, use_refinement=False))


def test_a_single_file_refiner_refines_like_the_folder_refiner(
        tiny_models: tuple[Path, Path], tiny_engine: SDXLEngine,
        checkpoints: dict[str, Path]) -> None:
    engine = engine_on(tiny_models, checkpoints["base"], checkpoints["refiner"])
    assert np.array_equal(pixels(engine), pixels(tiny_engine))
    assert engine.refiner is not None and engine.refiner.vae is engine.base.vae


def test_another_fine_tune_gives_other_pixels(tiny_models: tuple[Path, Path],
                                               checkpoints: dict[str, Path]) -> None:
    plain = engine_on(tiny_models, checkpoints["base"])
    tuned = engine_on(tiny_models, checkpoints["tuned"])
    assert not np.array_equal(pixels(plain, use_refinement=False),
                              pixels(tuned, use_refinement=False))


@pytest.mark.parametrize(("which", "says"), [
    ("sd15", "Stable Diffusion 1.x checkpoint"),
    ("refiner", "SDXL refiner checkpoint, not an SDXL base"),
])
def test_a_file_that_is_not_an_sdxl_base_is_refused_naming_it(
        tiny_models: tuple[Path, Path], checkpoints: dict[str, Path], which: str,
        says: str) -> None:
    settings = Settings(_env_file=None, base_model=str(checkpoints[which]), refiner_model="",  # type: ignore[call-arg]
                        preload=False)
    engine = SDXLEngine(settings)
    with pytest.raises(ModelUnavailable) as caught:
        engine.load()
    assert says in caught.value.message and "SDXL_MCP_BASE_MODEL" in caught.value.message
    assert engine.status().state == "failed"


def test_the_built_in_configs_describe_sdxl_and_need_no_hub() -> None:
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    def count(model: Any) -> int:
        return sum(p.numel() for p in model.parameters())

    for kind in ("base", "refiner"):
        folder = builtin_config(kind)  # type: ignore[arg-type]
        with init_empty_weights():  # the architecture only, on the meta device
            counts = {
                "unet": count(UNet2DConditionModel.from_config(
                    UNet2DConditionModel.load_config(folder / "unet"))),
                "vae": count(AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae"))),
                "text_encoder_2": count(CLIPTextModelWithProjection(
                    CLIPTextConfig.from_pretrained(folder / "text_encoder_2"))),
                "text_encoder": count(CLIPTextModel(CLIPTextConfig.from_pretrained(
                    folder / "text_encoder"))) if kind == "base" else 0,
            }
        assert counts == reference_param_counts(kind)  # type: ignore[arg-type]
        index = json.loads((folder / "model_index.json").read_text())
        assert index["_class_name"] == ("StableDiffusionXLPipeline" if kind == "base"
                                        else "StableDiffusionXLImg2ImgPipeline")
        assert (folder / "tokenizer_2").is_dir() and (folder / "scheduler").is_dir()


def test_the_built_in_tokenizer_is_clips() -> None:
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(builtin_config("base") / "tokenizer")
    # OpenAI CLIP's ids for these words (the vocabulary both SDXL encoders use).
    assert tokenizer("a photo of a cat")["input_ids"] == [49406, 320, 1125, 539, 320, 2368,
                                                          49407]
    padded = CLIPTokenizer.from_pretrained(builtin_config("base") / "tokenizer_2")
    assert padded("a cat", padding="max_length", max_length=6)["input_ids"][-1] == 0  # "!"


def test_a_configured_folder_is_used_for_its_pipeline_only(
        tiny_models: tuple[Path, Path]) -> None:
    base_dir, refiner_dir = tiny_models
    assert config_folder("base", [refiner_dir, base_dir]) == base_dir
    assert config_folder("refiner", [refiner_dir]) == refiner_dir
    assert config_folder("refiner", [base_dir]) == builtin_config("refiner")


async def test_the_image_names_the_checkpoint_and_its_a1111_hash(
        tiny_models: tuple[Path, Path], checkpoints: dict[str, Path],
        make_settings: Callable[..., Settings]) -> None:
    import hashlib

    from PIL import Image

    from sdxl_mcp.library.infotext import parse_infotext
    from sdxl_mcp.service.facade import ImageService
    from sdxl_mcp.service.generate import generate

    engine = engine_on(tiny_models, checkpoints["base"])
    settings = make_settings(base_model=str(checkpoints["base"]), refiner_model="")
    request = GenerationRequest(prompt="a lighthouse", seed=3, sampler="UniPC",
                                use_refinement=False, **SMALL)
    async with ImageService(settings, backend=engine) as svc:  # type: ignore[arg-type]
        result = await generate(svc, request)
    expected = hashlib.sha256(checkpoints["base"].read_bytes()).hexdigest()[:10]
    assert (result.model, result.model_hash, result.sampler) == ("tinyXL", expected, "UniPC")
    text = parse_infotext(Image.open(result.path or "").info["parameters"])
    assert (text["Model"], text["Model hash"], text["Sampler"]) == ("tinyXL", expected, "UniPC")
