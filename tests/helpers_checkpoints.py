"""Single-file SDXL checkpoints (the original Stability SGM / A1111 key layout) for tests.

Real users download one ``.safetensors`` per model (CivitAI fine-tunes, the
Stability release files), not diffusers folders. These helpers write the tiny
random-weight pipelines from :func:`sdxl_mcp.engine.tiny.ensure_tiny_models` in
that layout so tests can load them with diffusers' ``from_single_file`` and
check that exactly the same weights come back.

diffusers ships only the original -> diffusers conversion
(``diffusers.loaders.single_file_utils``), so this is its inverse, written out
independently (sharing diffusers' tables would make a wrong table pass). Block
indices are derived from each model's config (number of blocks,
``layers_per_block``, which up blocks have attention), never from real SDXL's
sizes. The layout:

* UNet under ``model.diffusion_model.`` (``input_blocks`` / ``middle_block`` /
  ``output_blocks``; resnets as ``in_layers`` / ``out_layers`` / ``emb_layers``).
* VAE under ``first_stage_model.`` (decoder blocks numbered in reverse; mid-block
  attention as 1x1 convolutions).
* CLIP ViT-L under ``conditioner.embedders.0.transformer.text_model.`` (Hugging
  Face names; transformers >= 5.6 drops the ``text_model.`` prefix in memory).
* OpenCLIP bigG under ``conditioner.embedders.1.model.`` (``.0.`` in a refiner,
  which has no other text encoder): fused ``in_proj_weight`` / ``in_proj_bias``,
  ``positional_embedding``, ``ln_final`` and a transposed ``text_projection``.

diffusers guesses the tiny checkpoint is SD 1.x (it looks for ``resblocks.9``),
so loading must always pass ``config=<the tiny diffusers folder>``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_L_PREFIX = "conditioner.embedders.0.transformer."
#: Keys that mark a checkpoint as SDXL (base) rather than SD 1.x.
SDXL_MARKER_KEYS = (
    "conditioner.embedders.1.model.positional_embedding",
    "model.diffusion_model.label_emb.0.0.weight",
)

_UNET_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0",
                "conv2": "out_layers.3", "time_emb_proj": "emb_layers.1",
                "conv_shortcut": "skip_connection"}
_VAE_RESNET = {"conv_shortcut": "nin_shortcut"}
_VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v",
                  "to_out.0": "proj_out"}
_OPEN_CLIP_LAYER = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "mlp.fc1": "mlp.c_fc",
                    "mlp.fc2": "mlp.c_proj", "self_attn.out_proj": "attn.out_proj"}


def _component(pipe_dir: Path, name: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """One saved component's weights (all safetensors shards) and config.json."""
    folder = pipe_dir / name
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"No .safetensors weights in {folder}")
    weights: dict[str, torch.Tensor] = {}
    for file in files:
        weights.update(load_file(file))
    return weights, json.loads((folder / "config.json").read_text())


def _rename(key: str, modules: dict[str, str], renames: dict[str, str] | None = None) -> str:
    """Map ``<diffusers module>.<rest>`` via the longest known module prefix.

    ``renames`` maps the start of ``rest`` (a sub-module name) to its original name.
    Unknown keys raise, so a missed weight fails loudly instead of vanishing.
    """
    parts = key.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module = ".".join(parts[:cut])
        if module in modules:
            rest = ".".join(parts[cut:])
            for old, new in (renames or {}).items():
                if rest.startswith(old + "."):
                    rest = new + rest[len(old):]
                    break
            return f"{modules[module]}.{rest}"
    raise KeyError(f"No original-layout name for {key!r}")


def _unet_to_original(weights: dict[str, torch.Tensor],
                      config: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Inverse of diffusers' ``convert_ldm_unet_checkpoint`` for this UNet's config."""
    per_block = config["layers_per_block"]
    if not isinstance(per_block, int):
        raise ValueError("Only a single int layers_per_block is supported")
    n_blocks = len(config["block_out_channels"])
    step = per_block + 1  # resnets (+ attentions) then one down/upsampler per block
    modules = {"conv_in": "input_blocks.0.0", "time_embedding.linear_1": "time_embed.0",
               "time_embedding.linear_2": "time_embed.2", "add_embedding.linear_1": "label_emb.0.0",
               "add_embedding.linear_2": "label_emb.0.2", "conv_norm_out": "out.0",
               "conv_out": "out.2", "mid_block.resnets.0": "middle_block.0",
               "mid_block.attentions.0": "middle_block.1", "mid_block.resnets.1": "middle_block.2"}
    for block in range(n_blocks):
        for layer in range(per_block):
            index = 1 + block * step + layer
            modules[f"down_blocks.{block}.resnets.{layer}"] = f"input_blocks.{index}.0"
            modules[f"down_blocks.{block}.attentions.{layer}"] = f"input_blocks.{index}.1"
        modules[f"down_blocks.{block}.downsamplers.0.conv"] = (
            f"input_blocks.{1 + block * step + per_block}.0.op")
        for layer in range(step):
            index = block * step + layer
            modules[f"up_blocks.{block}.resnets.{layer}"] = f"output_blocks.{index}.0"
            modules[f"up_blocks.{block}.attentions.{layer}"] = f"output_blocks.{index}.1"
        # The upsampler follows the last resnet (and its attention, if the block has one).
        slot = 2 if "CrossAttn" in config["up_block_types"][block] else 1
        modules[f"up_blocks.{block}.upsamplers.0.conv"] = (
            f"output_blocks.{block * step + per_block}.{slot}.conv")
    out = {}
    for key, value in weights.items():
        renames = _UNET_RESNET if ".resnets." in key else None
        out[UNET_PREFIX + _rename(key, modules, renames)] = value
    return out


def _vae_to_original(weights: dict[str, torch.Tensor],
                     config: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Inverse of diffusers' ``convert_ldm_vae_checkpoint`` for this VAE's config."""
    per_block = config["layers_per_block"]
    n_up = len(config["up_block_types"])
    modules = {name: name for name in ("quant_conv", "post_quant_conv")}
    for part in ("encoder", "decoder"):
        modules.update({f"{part}.{name}": f"{part}.{name}" for name in ("conv_in", "conv_out")})
        modules[f"{part}.conv_norm_out"] = f"{part}.norm_out"
        modules[f"{part}.mid_block.attentions.0"] = f"{part}.mid.attn_1"
        for k in range(2):
            modules[f"{part}.mid_block.resnets.{k}"] = f"{part}.mid.block_{k + 1}"
    for block in range(len(config["down_block_types"])):
        for layer in range(per_block):
            modules[f"encoder.down_blocks.{block}.resnets.{layer}"] = (
                f"encoder.down.{block}.block.{layer}")
        modules[f"encoder.down_blocks.{block}.downsamplers.0.conv"] = (
            f"encoder.down.{block}.downsample.conv")
    for block in range(n_up):
        original = n_up - 1 - block  # the original numbers decoder blocks from the bottom
        for layer in range(per_block + 1):
            modules[f"decoder.up_blocks.{block}.resnets.{layer}"] = (
                f"decoder.up.{original}.block.{layer}")
        modules[f"decoder.up_blocks.{block}.upsamplers.0.conv"] = (
            f"decoder.up.{original}.upsample.conv")
    out = {}
    for key, value in weights.items():
        if ".attentions." in key:
            new = _rename(key, modules, _VAE_ATTENTION)
            if new.endswith(".weight") and value.ndim == 2:  # linear -> 1x1 conv
                value = value[:, :, None, None]
        else:
            new = _rename(key, modules, _VAE_RESNET)
        out[VAE_PREFIX + new] = value
    return out


def _with_text_model(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Restore the ``text_model.`` prefix that transformers >= 5.6 drops for CLIPTextModel."""
    return {k if k.startswith(("text_model.", "text_projection.")) else f"text_model.{k}": v
            for k, v in weights.items()}


def _clip_l_to_original(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CLIP ViT-L keeps Hugging Face names under ``conditioner.embedders.0.transformer.``."""
    return {CLIP_L_PREFIX + k: v for k, v in _with_text_model(weights).items()}


def _open_clip_to_original(weights: dict[str, torch.Tensor],
                           prefix: str) -> dict[str, torch.Tensor]:
    """Inverse of diffusers' ``convert_open_clip_checkpoint`` (OpenCLIP bigG names)."""
    weights = _with_text_model(weights)
    fixed = {"text_model.embeddings.position_embedding.weight": "positional_embedding",
             "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
             "text_model.final_layer_norm.weight": "ln_final.weight",
             "text_model.final_layer_norm.bias": "ln_final.bias"}
    layer_prefix = "text_model.encoder.layers."
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key, value in weights.items():
        if key in fixed:
            out[prefix + fixed[key]] = value
        elif key == "text_projection.weight":  # OpenCLIP multiplies x @ proj
            out[prefix + "text_projection"] = value.T.contiguous()
        elif key.startswith(layer_prefix):
            layer, rest = key[len(layer_prefix):].split(".", 1)
            block = f"{prefix}transformer.resblocks.{layer}."
            module, kind = rest.rsplit(".", 1)
            if module in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"):
                qkv.setdefault((block, kind), {})[module[-6]] = value
            else:
                out[block + _OPEN_CLIP_LAYER[module] + "." + kind] = value
        else:
            raise KeyError(f"No original-layout name for {key!r}")
    for (block, kind), parts in qkv.items():
        out[f"{block}attn.in_proj_{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return out


def original_state_dict(pipe_dir: Path, *, refiner: bool = False) -> dict[str, torch.Tensor]:
    """The pipeline's weights under original SGM keys, as one checkpoint file holds them.

    A base has both text encoders (``embedders.0`` CLIP-L, ``embedders.1`` OpenCLIP);
    a refiner has only the OpenCLIP one, as ``embedders.0``.
    """
    unet, unet_config = _component(pipe_dir, "unet")
    vae, vae_config = _component(pipe_dir, "vae")
    state = {**_unet_to_original(unet, unet_config), **_vae_to_original(vae, vae_config)}
    if not refiner:
        state.update(_clip_l_to_original(_component(pipe_dir, "text_encoder")[0]))
    open_clip_prefix = f"conditioner.embedders.{0 if refiner else 1}.model."
    state.update(_open_clip_to_original(_component(pipe_dir, "text_encoder_2")[0],
                                        open_clip_prefix))
    return {k: v.contiguous() for k, v in state.items()}


def write_checkpoint(pipe_dir: Path, out: Path, *, refiner: bool = False,
                     perturb: float = 0.0, seed: int = 0) -> Path:
    """Write the pipeline at pipe_dir as one .safetensors in the original layout;
    perturb > 0 adds seeded noise of that scale to every UNet weight (a different fine-tune)."""
    state = original_state_dict(pipe_dir, refiner=refiner)
    if perturb > 0:
        generator = torch.Generator().manual_seed(seed)
        for key in sorted(k for k in state if k.startswith(UNET_PREFIX)):
            value = state[key]
            state[key] = value + torch.randn(value.shape, generator=generator,
                                             dtype=value.dtype) * perturb
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out), metadata={"format": "pt"})
    return out


def write_sd15_like(out: Path) -> Path:
    """A small .safetensors with SD 1.x-style keys (model.diffusion_model.* plus
    cond_stage_model.transformer.text_model.*), no SDXL keys: for refusal tests."""
    generator = torch.Generator().manual_seed(0)
    shapes = {
        "model.diffusion_model.input_blocks.0.0.weight": (32, 4, 3, 3),
        "model.diffusion_model.input_blocks.0.0.bias": (32,),
        "model.diffusion_model.time_embed.0.weight": (128, 32),
        "model.diffusion_model.out.2.weight": (4, 32, 3, 3),
        "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight": (77, 32),
        "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": (514, 32),
        "cond_stage_model.transformer.text_model.final_layer_norm.weight": (32,),
        "first_stage_model.encoder.conv_in.weight": (8, 3, 3, 3),
    }
    state = {key: torch.randn(shape, generator=generator) for key, shape in shapes.items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out), metadata={"format": "pt"})
    return out
