"""Tiny random-weight SDXL models: the real classes, saved and loaded like real ones.

Tests and the demo run the whole pipeline on CPU in seconds with these. They
use the real SDXL component classes and dimension rules (two text encoders,
text-time conditioning, a four-block VAE so latents have SDXL's 1/8 size),
are written with ``save_pretrained`` and loaded back through the same
``from_pretrained`` path as real models. Outputs are noise; shapes, metadata,
determinism, progress and failure handling are real.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

import platformdirs
import torch
from diffusers import (
    AutoencoderKL,
    EulerDiscreteScheduler,
    StableDiffusionXLImg2ImgPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
)

from sdxl_mcp.engine.checkpoints import byte_alphabet
from sdxl_mcp.engine.quiet import quiet_libraries

log = logging.getLogger(__name__)

#: Bump when the architecture below changes, so cached copies are rebuilt.
TINY_VERSION = "v1"
_SEED = 0

_TE1_HIDDEN = 32
_TE2_HIDDEN = 64  # also te2's projection_dim, as in SDXL (1280/1280)
_TIME_EMBED = 8


def _tokenizer(pad_token: str) -> CLIPTokenizer:
    letters = byte_alphabet()
    tokens = letters + [c + "</w>" for c in letters] + ["<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    return CLIPTokenizer(
        vocab=vocab,
        merges=[],
        pad_token=pad_token,
        model_max_length=77,
    )


def _text_config(hidden: int, projection: int, vocab_size: int) -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=2,  # SDXL reads hidden_states[-2]
        num_attention_heads=4,
        max_position_embeddings=77,
        projection_dim=projection,
        bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1,
        pad_token_id=vocab_size - 1,
    )


def _unet(cross_attention_dim: int, add_embed_inputs: int, refiner: bool) -> UNet2DConditionModel:
    return UNet2DConditionModel(
        sample_size=32,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        cross_attention_dim=cross_attention_dim,
        norm_num_groups=8,
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=_TIME_EMBED,
        projection_class_embeddings_input_dim=add_embed_inputs,
        transformer_layers_per_block=1,
    )


def _vae() -> AutoencoderKL:
    # Four blocks: vae_scale_factor 8 and SDXL-sized latents (two blocks would
    # make latents 4x larger per side and 1024² images take minutes).
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 16, 16, 16),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        norm_num_groups=8,
        layers_per_block=1,
        sample_size=128,
        scaling_factor=0.13025,
        force_upcast=True,
    )


def _scheduler() -> EulerDiscreteScheduler:
    # SDXL's scheduler config.
    return EulerDiscreteScheduler(
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        num_train_timesteps=1000,
        steps_offset=1,
        timestep_spacing="leading",
        prediction_type="epsilon",
        interpolation_type="linear",
        use_karras_sigmas=False,
    )


def write_tiny_models(target: Path) -> tuple[Path, Path]:
    """Write ``target/base`` and ``target/refiner``; return both paths."""
    quiet_libraries()
    torch.manual_seed(_SEED)
    tokenizer = _tokenizer(pad_token="<|endoftext|>")
    tokenizer_2 = _tokenizer(pad_token="!")
    vocab_size = len(tokenizer.get_vocab())
    text_encoder = CLIPTextModel(_text_config(_TE1_HIDDEN, _TE1_HIDDEN, vocab_size))
    text_encoder_2 = CLIPTextModelWithProjection(
        _text_config(_TE2_HIDDEN, _TE2_HIDDEN, vocab_size)
    )
    vae = _vae()
    base_unet = _unet(
        cross_attention_dim=_TE1_HIDDEN + _TE2_HIDDEN,
        add_embed_inputs=6 * _TIME_EMBED + _TE2_HIDDEN,
        refiner=False,
    )
    refiner_unet = _unet(
        cross_attention_dim=_TE2_HIDDEN,
        add_embed_inputs=5 * _TIME_EMBED + _TE2_HIDDEN,
        refiner=True,
    )
    # The refiner shares the VAE and the second text encoder, as SDXL's do.
    shared = {"vae": vae, "text_encoder_2": text_encoder_2, "tokenizer_2": tokenizer_2}
    base = StableDiffusionXLPipeline(**shared, text_encoder=text_encoder, tokenizer=tokenizer,
                                     unet=base_unet, scheduler=_scheduler())
    refiner = StableDiffusionXLImg2ImgPipeline(
        **shared, text_encoder=None, tokenizer=None, unet=refiner_unet, scheduler=_scheduler(),
        requires_aesthetics_score=True, force_zeros_for_empty_prompt=False,
    )
    base_dir, refiner_dir = target / "base", target / "refiner"
    base.save_pretrained(base_dir)
    refiner.save_pretrained(refiner_dir)
    _make_readable(target)
    return base_dir, refiner_dir


def _make_readable(root: Path) -> None:
    # save_pretrained writes safetensors with mode 0600; other users (and
    # containers running as another uid) must be able to read a shared cache.
    for path in root.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def tiny_cache_dir() -> Path:
    override = os.environ.get("SDXL_MCP_TINY_CACHE")
    root = Path(override) if override else Path(platformdirs.user_cache_dir("sdxl-mcp"))
    return root / f"tiny-random-{TINY_VERSION}"


def ensure_tiny_models() -> tuple[Path, Path]:
    """Build the tiny models once and cache them; safe across processes."""
    final = tiny_cache_dir()
    if (final / "refiner" / "model_index.json").exists():
        return final / "base", final / "refiner"
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tiny-", dir=final.parent))
    try:
        log.info("Building the tiny random-weight SDXL models in %s", final)
        write_tiny_models(staging)
        try:
            staging.rename(final)  # atomic publish; another process may have won
        except OSError:
            if not (final / "refiner" / "model_index.json").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final / "base", final / "refiner"
