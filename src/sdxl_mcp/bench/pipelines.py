"""The bench's torch models and its timer: raw diffusers pipelines, random-weight SDXL.

Raw pipelines are the overhead benchmark's baseline: the same tiny models, the
same call pattern (base latents -> refiner -> PIL image -> PNG), no service,
storage or MCP in between.

Full-size models are the real SDXL architecture built from the configs shipped
in ``sdxl_mcp/engine/configs/`` with random weights: no download, the real FLOPs
and memory. Importing this module imports torch and diffusers; only
``fullsize`` and ``rawworker`` (in its child process) do.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from diffusers import (
    AutoencoderKL,
    StableDiffusionXLImg2ImgPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from sdxl_mcp.engine import tiny
from sdxl_mcp.engine.footprint import CONFIG_DIR
from sdxl_mcp.engine.quiet import quiet_libraries

quiet_libraries()


class RawPipelines:
    """Plain diffusers on the tiny models: the overhead benchmark's baseline."""

    def __init__(self) -> None:
        base_dir, refiner_dir = tiny.ensure_tiny_models()
        self.base = StableDiffusionXLPipeline.from_pretrained(base_dir)
        self.refiner = StableDiffusionXLImg2ImgPipeline.from_pretrained(
            refiner_dir, text_encoder_2=self.base.text_encoder_2, vae=self.base.vae
        )
        self.base.set_progress_bar_config(disable=True)
        self.refiner.set_progress_bar_config(disable=True)

    def run(self, prompt: str, size: int, steps: int, high_noise_frac: float, seed: int,
            out_path: Path, guidance_scale: float) -> dict[str, float]:
        """One ensemble generation saved as PNG (PIL defaults); seconds per phase.

        ``engine`` is base + refiner + decode (the refiner pipeline decodes), the
        span the server reports as its base, refiner and decode timings, so the
        two paths can be compared outside the engine as well as end to end.
        """
        started = time.perf_counter()
        generator = torch.Generator("cpu").manual_seed(seed)
        latents = self.base(
            prompt=prompt, width=size, height=size, num_inference_steps=steps,
            denoising_end=high_noise_frac, output_type="latent", generator=generator,
            guidance_scale=guidance_scale,
        ).images
        base_done = time.perf_counter()
        image = self.refiner(
            prompt=prompt, num_inference_steps=steps, denoising_start=high_noise_frac,
            image=latents, generator=generator, guidance_scale=guidance_scale,
        ).images[0]
        engine_done = time.perf_counter()
        image.save(out_path)
        finished = time.perf_counter()
        return {
            "total": finished - started,
            "base": base_done - started,
            "engine": engine_done - started,
            "save": finished - engine_done,
        }


def model_config(name: str, kind: str) -> dict[str, Any]:
    """A shipped config: ``kind`` is "sdxl" (the real architecture) or "tiny"."""
    return dict(json.loads((CONFIG_DIR / f"{kind}_{name}.json").read_text()))


def build_pipelines(kind: str, dtype: torch.dtype, device: str) -> tuple[Any, Any]:
    """Base and refiner with random weights; kind is "sdxl" (real) or "tiny"."""
    if kind == "tiny":
        base_dir, refiner_dir = tiny.ensure_tiny_models()
        base = StableDiffusionXLPipeline.from_pretrained(base_dir, dtype=dtype)
        refiner = StableDiffusionXLImg2ImgPipeline.from_pretrained(
            refiner_dir, text_encoder_2=base.text_encoder_2, vae=base.vae, dtype=dtype
        )
    else:
        tokenizer = tiny._tokenizer("<|endoftext|>")  # token ids only; the cost is the UNet
        tokenizer_2 = tiny._tokenizer("!")
        with torch.device(device):
            te1 = CLIPTextModel(CLIPTextConfig(**model_config("text_encoder", kind)))
            te2 = CLIPTextModelWithProjection(
                CLIPTextConfig(**model_config("text_encoder_2", kind)))
            vae = AutoencoderKL.from_config(model_config("vae", kind))
            unet = UNet2DConditionModel.from_config(model_config("base_unet", kind))
            refiner_unet = UNet2DConditionModel.from_config(model_config("refiner_unet", kind))
        base = StableDiffusionXLPipeline(
            vae=vae, text_encoder=te1, text_encoder_2=te2, tokenizer=tokenizer,
            tokenizer_2=tokenizer_2, unet=unet, scheduler=tiny._scheduler(),
        )
        refiner = StableDiffusionXLImg2ImgPipeline(
            vae=vae, text_encoder=None, tokenizer=None, text_encoder_2=te2,
            tokenizer_2=tokenizer_2, unet=refiner_unet, scheduler=tiny._scheduler(),
            requires_aesthetics_score=True,
        )
    base.to(device, dtype)
    refiner.to(device, dtype)
    # The VAE decodes in fp32 (force_upcast), as the engine does by default.
    base.set_progress_bar_config(disable=True)
    refiner.set_progress_bar_config(disable=True)
    return base, refiner


def _component(cls: Any, folder: str, config: str, kind: str, device: str) -> Any:
    """One model: the tiny model's folder, or random weights of the real architecture."""
    if kind == "tiny":
        base_dir, _ = tiny.ensure_tiny_models()
        return cls.from_pretrained(Path(base_dir) / folder)
    with torch.device(device):
        return cls.from_config(model_config(config, kind))


def build_base_unet(kind: str, device: str, dtype: torch.dtype) -> Any:
    """The base UNet alone, in eval mode on ``device``."""
    return _component(UNet2DConditionModel, "unet", "base_unet", kind, device).to(
        device, dtype).eval()


def build_vae(kind: str, device: str) -> Any:
    """The VAE alone, in eval mode on ``device`` (fp32)."""
    return _component(AutoencoderKL, "vae", "vae", kind, device).to(device).eval()


class Timer:
    """Seconds for a call: CUDA events on a GPU (stream time, so no host-side guess
    about when queued kernels finish), perf_counter on a CPU."""

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")

    def time(self, fn: Callable[[], Any]) -> tuple[float, Any]:
        if not self.cuda:
            started = time.perf_counter()
            out = fn()
            return time.perf_counter() - started, out
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        out = fn()
        end.record()
        end.synchronize()
        return float(start.elapsed_time(end)) / 1000, out


def decode_latents(vae: Any, latents: torch.Tensor) -> torch.Tensor:
    """The VAE decode the benchmarks time: in fp32 when fp16 would overflow (the
    VAE's ``force_upcast``), as the engine decodes; the VAE's dtype is put back."""
    original = vae.dtype
    upcast = original == torch.float16 and bool(vae.config.force_upcast)
    if upcast:
        vae.to(torch.float32)
    try:
        with torch.no_grad():
            return vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor).sample
    finally:
        if upcast:
            vae.to(original)
