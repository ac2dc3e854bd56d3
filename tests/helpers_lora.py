"""Tiny random LoRA files for the tiny SDXL UNet (tests; the bench can reuse the idea).

:func:`write_lora` builds a peft ``LoraConfig`` on the UNet's attention
projections (``to_q``, ``to_k``, ``to_v``, ``to_out.0``), initialises BOTH
matrices with seeded noise (peft starts ``lora_B`` at zero, which would change
nothing), takes ``get_peft_model_state_dict`` and saves it with the pipeline
class's ``save_lora_weights`` (diffusers format). ``kohya=True`` rewrites the
same weights in kohya-ss keys (``lora_unet_<module path with _>.lora_down.weight``,
``.lora_up.weight``, ``.alpha``), the format diffusers converts on load.
:func:`write_not_a_lora` and :func:`write_wrong_architecture` make the bad files.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel
from peft import LoraConfig, get_peft_model_state_dict
from safetensors.torch import save_file

TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
RANK = 4


def lora_state_dict(unet_folder: Path, seed: int, scale: float = 0.5) -> dict[str, torch.Tensor]:
    """peft-format LoRA weights (``<module>.lora_A.weight`` / ``.lora_B.weight``), non-zero."""
    unet = UNet2DConditionModel.from_pretrained(unet_folder)
    unet.add_adapter(LoraConfig(r=RANK, lora_alpha=RANK, target_modules=TARGETS,
                                init_lora_weights=False))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in unet.named_parameters():
            if "lora_" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * scale)
    return get_peft_model_state_dict(unet)


def write_lora(folder: Path, name: str, base_model: Path, seed: int = 0,
               kohya: bool = False, scale: float = 0.5) -> Path:
    """``folder/name.safetensors``: a LoRA for the tiny base at ``base_model``."""
    folder.mkdir(parents=True, exist_ok=True)
    weights = lora_state_dict(base_model / "unet", seed, scale)
    path = folder / f"{name}.safetensors"
    if kohya:
        save_file(to_kohya(weights), str(path))
        return path
    StableDiffusionXLPipeline.save_lora_weights(
        save_directory=str(folder), unet_lora_layers=weights, weight_name=path.name,
        safe_serialization=True)
    return path


def to_kohya(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """peft keys -> kohya-ss keys (``lora_unet_...lora_down/lora_up/alpha``)."""
    kohya: dict[str, torch.Tensor] = {}
    for key, value in weights.items():
        module, kind = key.rsplit(".lora_", 1)
        stem = "lora_unet_" + module.replace(".", "_")
        if kind == "A.weight":
            kohya[f"{stem}.lora_down.weight"] = value.contiguous()
            kohya[f"{stem}.alpha"] = torch.tensor(float(RANK))
        else:
            kohya[f"{stem}.lora_up.weight"] = value.contiguous()
    return kohya


def write_not_a_lora(folder: Path, name: str = "not_a_lora") -> Path:
    """A safetensors file of plain model weights (no LoRA keys)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.safetensors"
    save_file({"conv_in.weight": torch.zeros(4, 4, 3, 3)}, str(path))
    return path


def write_wrong_architecture(folder: Path, name: str = "sd15_lora") -> Path:
    """A LoRA whose matrices have another model's widths (SD 1.5's 320 channels)."""
    folder.mkdir(parents=True, exist_ok=True)
    key = "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q"
    path = folder / f"{name}.safetensors"
    save_file({f"unet.{key}.lora_A.weight": torch.ones(RANK, 320),
               f"unet.{key}.lora_B.weight": torch.ones(320, RANK)}, str(path))
    return path
