"""What a checkpoint file is, read from its header only, and its A1111 hash."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import pytest

from sdxl_mcp.errors import ModelUnavailable
from sdxl_mcp.library.checkpoints import (
    check_checkpoint,
    checkpoint_kind,
    model_hash,
    safetensors_keys,
)


def header_only(path: Path, keys: list[str]) -> Path:
    """A safetensors file whose header names ``keys`` (one float each)."""
    header = {key: {"dtype": "F32", "shape": [1], "data_offsets": [4 * i, 4 * i + 4]}
              for i, key in enumerate(keys)}
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * 4 * len(keys))
    return path


UNET = "model.diffusion_model.input_blocks.0.0.weight"
LABEL = "model.diffusion_model.label_emb.0.0.weight"
KINDS = {
    "sdxl-base": [UNET, LABEL, "conditioner.embedders.0.transformer.text_model.x",
                  "conditioner.embedders.1.model.positional_embedding"],
    "sdxl-refiner": [UNET, LABEL, "conditioner.embedders.0.model.positional_embedding"],
    "sd1": [UNET, "cond_stage_model.transformer.text_model.embeddings.x"],
    "sd2": [UNET, "cond_stage_model.model.positional_embedding"],
    "sd3": ["model.diffusion_model.joint_blocks.0.x", "text_encoders.clip_l.x"],
    "flux": ["double_blocks.0.img_attn.qkv.weight"],
    "lora": ["lora_unet_down_blocks_0.lora_down.weight"],
    "diffusers-component": ["down_blocks.0.resnets.0.conv1.weight"],
    "unknown": ["just.a.tensor"],
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_the_kind_is_read_from_the_keys(kind: str) -> None:
    assert checkpoint_kind(KINDS[kind]) == kind


def test_the_helpers_tiny_checkpoints_are_sdxl_base_and_refiner(tmp_path: Path) -> None:
    from sdxl_mcp.engine.tiny import ensure_tiny_models
    from tests.helpers_checkpoints import write_checkpoint, write_sd15_like

    base_dir, refiner_dir = ensure_tiny_models()
    base = write_checkpoint(base_dir, tmp_path / "base.safetensors")
    refiner = write_checkpoint(refiner_dir, tmp_path / "refiner.safetensors", refiner=True)
    sd15 = write_sd15_like(tmp_path / "sd15.safetensors")
    assert checkpoint_kind(safetensors_keys(base)) == "sdxl-base"
    assert checkpoint_kind(safetensors_keys(refiner)) == "sdxl-refiner"
    assert checkpoint_kind(safetensors_keys(sd15)) == "sd1"


@pytest.mark.parametrize(("kind", "says"), [
    ("sd1", "Stable Diffusion 1.x checkpoint, not an SDXL base"),
    ("flux", "Flux checkpoint"),
    ("lora", "SDXL_MCP_LORA_DIRS"),
    ("sdxl-refiner", "use the refiner file as SDXL_MCP_REFINER_MODEL"),
    ("unknown", "no Stable Diffusion checkpoint layout"),
])
def test_a_file_of_another_kind_is_refused_naming_the_file_and_what_it_is(
        tmp_path: Path, kind: str, says: str) -> None:
    path = header_only(tmp_path / f"{kind}.safetensors", KINDS[kind])
    with pytest.raises(ModelUnavailable) as caught:
        check_checkpoint(path, "sdxl-base", "SDXL_MCP_BASE_MODEL")
    assert says in caught.value.message and str(path) in caught.value.message


@pytest.mark.parametrize("suffix", [".ckpt", ".pt", ".bin"])
def test_a_pickled_checkpoint_is_refused_without_being_opened(
        tmp_path: Path, suffix: str) -> None:
    # An SDXL base header inside: were the file read, it would pass as a checkpoint.
    path = header_only(tmp_path / f"model{suffix}", KINDS["sdxl-base"])
    with pytest.raises(ModelUnavailable, match="pickled checkpoint"):
        check_checkpoint(path, "sdxl-base", "SDXL_MCP_BASE_MODEL")


@pytest.mark.parametrize("content", [b"", b"\x01\x02", b"\xff" * 64, b"random bytes " * 50])
def test_random_bytes_are_not_a_readable_safetensors_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "junk.safetensors"
    path.write_bytes(content)
    with pytest.raises(ModelUnavailable, match="not a readable safetensors file"):
        check_checkpoint(path, "sdxl-base", "SDXL_MCP_BASE_MODEL")


def test_the_model_hash_is_a1111s_autov2(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"0123456789" * 1000)
    assert model_hash(path) == hashlib.sha256(path.read_bytes()).hexdigest()[:10]


def test_the_hash_follows_the_file_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"first version")
    first = model_hash(path)
    path.write_bytes(b"second version, longer")
    assert model_hash(path) != first
    assert model_hash(path) == hashlib.sha256(b"second version, longer").hexdigest()[:10]
