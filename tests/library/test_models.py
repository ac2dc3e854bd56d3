"""The models folder: what is a model there, by which name, with which defaults."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sdxl_mcp.errors import BadRequest
from sdxl_mcp.library.models import default_model, find_model, model_defaults, model_entries
from sdxl_mcp.settings import Settings

SDXL_KEYS = ["model.diffusion_model.label_emb.0.0.weight",
             "conditioner.embedders.1.model.positional_embedding"]


def fake_checkpoint(path: Path, keys: list[str] = SDXL_KEYS) -> Path:
    header = {key: {"dtype": "F32", "shape": [1], "data_offsets": [4 * i, 4 * i + 4]}
              for i, key in enumerate(keys)}
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * 4 * len(keys))
    return path


def diffusers_folder(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "model_index.json").write_text('{"_class_name": "StableDiffusionXLPipeline"}')
    return path


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    first, second = tmp_path / "models", tmp_path / "more-models"
    first.mkdir()
    second.mkdir()
    fake_checkpoint(first / "juggernautXL_v9.safetensors")
    (first / "juggernautXL_v9.json").write_text(json.dumps(
        {"num_inference_steps": 30, "guidance_scale": 5, "sampler": "DPM++ 2M Karras"}))
    diffusers_folder(first / "realvis-xl")
    fake_checkpoint(first / "v1-5-pruned.safetensors",
                    ["model.diffusion_model.x", "cond_stage_model.transformer.text_model.x"])
    (first / "notes.txt").write_text("not a model")
    (first / "old.ckpt").write_bytes(b"\x80\x04 pickle")
    fake_checkpoint(second / "juggernautXL_v9.safetensors")  # the first folder wins
    fake_checkpoint(second / "ponyXL.safetensors")
    return first, second


def settings_for(make_settings: Callable[..., Settings], folders: tuple[Path, Path],
                 **more: Any) -> Settings:
    return make_settings(model_dirs=list(folders), **more)


def test_checkpoints_and_diffusers_folders_are_models_by_name(
        make_settings: Callable[..., Settings], folders: tuple[Path, Path]) -> None:
    entries = model_entries(settings_for(make_settings, folders))
    assert sorted(entries) == ["juggernautXL_v9", "ponyXL", "realvis-xl"]
    assert entries["juggernautXL_v9"].kind == "checkpoint"
    assert entries["juggernautXL_v9"].ref == str(folders[0] / "juggernautXL_v9.safetensors")
    assert entries["realvis-xl"].kind == "diffusers"


def test_an_unknown_name_lists_the_models_there_are(
        make_settings: Callable[..., Settings], folders: tuple[Path, Path]) -> None:
    with pytest.raises(BadRequest) as caught:
        find_model(settings_for(make_settings, folders), "dreamshaperXL")
    message = caught.value.message
    assert message.startswith("model: no model 'dreamshaperXL'")
    for name in ("juggernautXL_v9", "ponyXL", "realvis-xl", "tiny-random"):
        assert name in message


def test_the_base_model_is_found_by_its_own_name(
        make_settings: Callable[..., Settings], folders: tuple[Path, Path]) -> None:
    settings = settings_for(make_settings, folders)
    entry = find_model(settings, "tiny-random")
    assert entry.default and entry == default_model(settings)


def test_a_checkpoint_as_base_model_is_named_by_its_stem(
        make_settings: Callable[..., Settings], folders: tuple[Path, Path]) -> None:
    path = folders[0] / "juggernautXL_v9.safetensors"
    entry = default_model(make_settings(base_model=str(path)))
    assert (entry.name, entry.kind, entry.default) == ("juggernautXL_v9", "checkpoint", True)
    assert model_defaults(entry).sampler == "DPM++ 2M Karras"


def test_the_defaults_file_beside_a_model_is_read(
        make_settings: Callable[..., Settings], folders: tuple[Path, Path]) -> None:
    entry = find_model(settings_for(make_settings, folders), "juggernautXL_v9")
    defaults = model_defaults(entry)
    assert (defaults.num_inference_steps, defaults.guidance_scale, defaults.sampler) == (
        30, 5.0, "DPM++ 2M Karras")
    assert model_defaults(find_model(settings_for(make_settings, folders), "ponyXL")) == (
        type(defaults)())


@pytest.mark.parametrize(("content", "says"), [
    ('{"guidance_scale": 50}', "guidance_scale"),
    ('{"sampler": "k_euler"}', "sampler"),
    ('{"steps": 30}', "steps"),
    ("not json", "not JSON"),
])
def test_a_bad_defaults_file_is_refused_naming_the_file(
        make_settings: Callable[..., Settings], folders: tuple[Path, Path], content: str,
        says: str) -> None:
    (folders[0] / "juggernautXL_v9.json").write_text(content)
    entry = find_model(settings_for(make_settings, folders), "juggernautXL_v9")
    with pytest.raises(BadRequest) as caught:
        model_defaults(entry)
    assert "juggernautXL_v9.json" in caught.value.message and says in caught.value.message


def test_a_missing_models_folder_is_no_models(make_settings: Callable[..., Settings],
                                              tmp_path: Path) -> None:
    assert model_entries(make_settings(model_dirs=[tmp_path / "nowhere"])) == {}
