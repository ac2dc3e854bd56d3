"""Parameter counts of the models to load, from their files or their real configs.

The precision policy needs the weight size of what will be loaded. Local
folders are measured from their safetensors headers (no weights read, no
torch). Hub ids not in the local cache are measured by building the real SDXL
architecture (configs shipped in ``configs/``) on the meta device: real
parameter counts, no download, no memory.
"""

from __future__ import annotations

import json
import math
import struct
from functools import cache
from pathlib import Path
from typing import Literal

COMPONENTS = ("unet", "text_encoder", "text_encoder_2", "vae")
#: The refiner reuses the base's second text encoder and VAE (docs/HOW-IT-WORKS.md).
SHARED_WITH_REFINER = ("text_encoder_2", "vae")
CONFIG_DIR = Path(__file__).parent / "configs"

_SAFETENSORS_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "U8": 1}


def safetensors_param_count(path: Path) -> int:
    """Number of values stored in one safetensors file, read from its header."""
    with path.open("rb") as fh:
        (header_len,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(header_len))
    return sum(
        math.prod(meta["shape"]) for key, meta in header.items() if key != "__metadata__"
    )


#: Where each component's weights sit in a single-file checkpoint (the SGM/A1111 layout).
_CHECKPOINT_PREFIXES = {
    "base": {"unet": "model.diffusion_model.", "vae": "first_stage_model.",
             "text_encoder": "conditioner.embedders.0.",
             "text_encoder_2": "conditioner.embedders.1."},
    "refiner": {"unet": "model.diffusion_model.", "vae": "first_stage_model.",
                "text_encoder_2": "conditioner.embedders.0."},
}


def single_file_param_counts(path: Path, kind: Literal["base", "refiner"]) -> dict[str, int]:
    """Per-component parameter counts of a single-file checkpoint, from its header."""
    with path.open("rb") as fh:
        (header_len,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(header_len))
    counts = dict.fromkeys(COMPONENTS, 0)
    for key, meta in header.items():
        for name, prefix in _CHECKPOINT_PREFIXES[kind].items():
            if key.startswith(prefix):
                counts[name] += math.prod(meta["shape"])
    return counts


def _component_count(folder: Path) -> int:
    files = sorted(folder.glob("*.safetensors"))
    # A folder may hold the same weights twice (e.g. an ".fp16." variant): count one set.
    plain = [f for f in files if len(f.name.split(".")) == 2]
    chosen = plain or files
    if chosen:
        return sum(safetensors_param_count(f) for f in chosen)
    bins = list(folder.glob("*.bin"))
    # Legacy pickles: no header to read; fp32 is what they hold in practice.
    return sum(f.stat().st_size // 4 for f in bins)


def local_param_counts(model_dir: Path) -> dict[str, int]:
    """Per-component parameter counts of a diffusers folder (missing parts = 0)."""
    return {
        name: _component_count(model_dir / name) if (model_dir / name).is_dir() else 0
        for name in COMPONENTS
    }


@cache
def reference_param_counts(kind: Literal["base", "refiner"]) -> dict[str, int]:
    """Counts of the real SDXL architecture, built on the meta device from its configs."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    def load(name: str) -> dict[str, object]:
        return dict(json.loads((CONFIG_DIR / f"{name}.json").read_text()))

    def count(model: object) -> int:
        return sum(p.numel() for p in model.parameters())  # type: ignore[attr-defined]

    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(load(f"sdxl_{kind}_unet"))
        vae = AutoencoderKL.from_config(load("sdxl_vae"))
        te2 = CLIPTextModelWithProjection(CLIPTextConfig(**load("sdxl_text_encoder_2")))
        te1 = CLIPTextModel(CLIPTextConfig(**load("sdxl_text_encoder"))) if kind == "base" else None
        return {
            "unet": count(unet),
            "text_encoder": count(te1) if te1 is not None else 0,
            "text_encoder_2": count(te2),
            "vae": count(vae),
        }


def total_param_count(base: dict[str, int], refiner: dict[str, int] | None) -> int:
    """Everything resident at once, the refiner's shared parts counted once."""
    total = sum(base.values())
    if refiner is not None:
        total += sum(v for k, v in refiner.items() if k not in SHARED_WITH_REFINER)
    return total
