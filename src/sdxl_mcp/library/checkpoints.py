"""Single-file checkpoints on disk: what a file is (by its keys) and its A1111 hash.

Guarantees (tests/library/test_checkpoints.py; docs/MODELS.md):

* only ``.safetensors`` files are read, and only their JSON header: no tensor
  is loaded and nothing is ever unpickled (a ``.ckpt``, ``.pt`` or ``.bin`` is
  refused by its name, unopened);
* :func:`checkpoint_kind` tells an SDXL base or refiner checkpoint (original
  SGM/A1111 key layout) from SD 1.x, SD 2.x, SD3, Flux, a LoRA, a diffusers
  component file or something else, and :func:`check_checkpoint` turns
  anything but the wanted SDXL kind into a ``ModelUnavailable`` that names the
  file, what was found and what to do;
* :func:`model_hash` is A1111's "Model hash" (AutoV2, which Civitai looks up):
  the first 10 hex digits of the whole file's sha256, computed once per file
  and remembered by path, size and modification time.

Pure Python (stdlib only), so the service and ``sdxl-mcp models`` use it without torch.
"""

from __future__ import annotations

import hashlib
import json
import struct
import threading
from pathlib import Path
from typing import Literal

from sdxl_mcp.errors import ModelUnavailable

__all__ = [
    "CHECKPOINT_SUFFIX",
    "CheckpointKind",
    "cached_model_hash",
    "check_checkpoint",
    "checkpoint_kind",
    "looks_like_path",
    "model_hash",
    "model_name",
    "safetensors_keys",
]

CHECKPOINT_SUFFIX = ".safetensors"
#: Suffixes of pickled checkpoints: loading one can run code, so they are never opened.
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl")
#: A header larger than this is not a safetensors header.
MAX_HEADER_BYTES = 100 * 1024 * 1024

CheckpointKind = Literal["sdxl-base", "sdxl-refiner", "sd1", "sd2", "sd3", "flux", "lora",
                         "diffusers-component", "unknown"]

#: What each kind is called in an error sentence.
KIND_NAMES: dict[str, str] = {
    "sdxl-base": "an SDXL base checkpoint",
    "sdxl-refiner": "an SDXL refiner checkpoint",
    "sd1": "a Stable Diffusion 1.x checkpoint",
    "sd2": "a Stable Diffusion 2.x checkpoint",
    "sd3": "a Stable Diffusion 3 checkpoint",
    "flux": "a Flux checkpoint",
    "lora": "a LoRA (put it in SDXL_MCP_LORA_DIRS)",
    "diffusers-component": "one diffusers component (use the whole diffusers folder)",
    "unknown": "no Stable Diffusion checkpoint layout",
}

_UNET = "model.diffusion_model."
_SDXL_TIME_EMBED = _UNET + "label_emb.0.0.weight"  # SDXL's size/crop conditioning
_hash_lock = threading.Lock()
_hashes: dict[tuple[str, int, int], str] = {}


def safetensors_keys(path: Path) -> list[str]:
    """The tensor names in a safetensors file's header (no tensor is read)."""
    with path.open("rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise ValueError("shorter than a safetensors header")
        (length,) = struct.unpack("<Q", head)
        if not 2 <= length <= MAX_HEADER_BYTES:
            raise ValueError("no safetensors header")
        header = json.loads(fh.read(length))
    if not isinstance(header, dict):
        raise ValueError("no safetensors header")
    return [key for key in header if key != "__metadata__"]


def checkpoint_kind(keys: list[str]) -> CheckpointKind:
    """What a checkpoint is, from its tensor names (the layouts' tell-tale keys)."""
    names = set(keys)
    if any(".lora_down." in k or ".lora_A." in k or k.startswith("lora_unet_") for k in keys):
        return "lora"
    if any(k.startswith(("double_blocks.", _UNET + "double_blocks.")) for k in keys):
        return "flux"
    if any(k.startswith((_UNET + "joint_blocks.", "joint_blocks.")) for k in keys):
        return "sd3"
    if _SDXL_TIME_EMBED in names:
        if "conditioner.embedders.1.model.positional_embedding" in names:
            return "sdxl-base"
        if "conditioner.embedders.0.model.positional_embedding" in names:
            return "sdxl-refiner"
    if any(k.startswith(_UNET) for k in keys):
        if any(k.startswith("cond_stage_model.model.") for k in keys):
            return "sd2"
        if any(k.startswith("cond_stage_model.transformer.") for k in keys):
            return "sd1"
    if any(k.startswith(("down_blocks.", "text_model.", "encoder.down_blocks.")) for k in keys):
        return "diffusers-component"
    return "unknown"


def check_checkpoint(path: Path, wanted: Literal["sdxl-base", "sdxl-refiner"],
                     setting: str) -> None:
    """Refuse anything but a readable ``.safetensors`` SDXL checkpoint of kind ``wanted``."""
    shown = f"{setting}={str(path)!r}" if setting else str(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise ModelUnavailable(
            f"{shown} is a pickled checkpoint ({path.suffix}), which can run code when "
            "loaded, so it is not opened. Use the .safetensors version of the model.")
    if path.suffix.lower() != CHECKPOINT_SUFFIX:
        raise ModelUnavailable(f"{shown} is not a .safetensors file or a diffusers folder.")
    try:
        kind = checkpoint_kind(safetensors_keys(path))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ModelUnavailable(f"{shown} is not a readable safetensors file ({exc}).") from None
    if kind != wanted:
        use = ("use the refiner file as SDXL_MCP_REFINER_MODEL" if kind == "sdxl-refiner"
               else "use an SDXL base checkpoint" if wanted == "sdxl-base"
               else "use an SDXL refiner checkpoint or leave SDXL_MCP_REFINER_MODEL empty")
        raise ModelUnavailable(f"{shown} is {KIND_NAMES[kind]}, not "
                               f"{KIND_NAMES[wanted]}; {use}.")


def looks_like_path(ref: str) -> bool:
    """Whether a model setting is a path: hub ids look like "org/name"."""
    return ref.startswith((".", "/", "~")) or ref.count("/") > 1 or "\\" in ref


def model_name(ref: str) -> str:
    """How a model is named (infotext, Result, ``model``): a checkpoint file by its
    stem (as A1111 does), a local folder by its name, a hub id as configured."""
    if ref.lower().endswith(CHECKPOINT_SUFFIX):
        return Path(ref).stem
    if looks_like_path(ref):
        return Path(ref).name or ref
    return ref


def cached_model_hash(path: Path) -> str | None:
    """The hash :func:`model_hash` already computed for this file as it is now, else None."""
    try:
        stat = path.stat()
    except OSError:
        return None
    with _hash_lock:
        return _hashes.get((str(path.resolve()), stat.st_size, stat.st_mtime_ns))


def model_hash(path: Path) -> str:
    """A1111's AutoV2 hash: the first 10 hex digits of the file's sha256 (cached)."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _hash_lock:
        known = _hashes.get(key)
    if known is not None:
        return known
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(8 * 1024 * 1024):
            digest.update(chunk)
    value = digest.hexdigest()[:10]
    with _hash_lock:
        _hashes[key] = value
    return value
