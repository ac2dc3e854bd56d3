"""``--full-size``: the real SDXL architecture (random weights) on a GPU, per dtype.

Three tables: per dtype, base/refiner it/s, VAE decode, both refiner modes end
to end and peak memory; the base UNet's ms per step as each GPU speed setting is
added (applied with the engine's own ``speed_up_unet``); and VAE decode per
dtype. The refiner schedule and the dtypes are the engine's too
(``engine.devices``, ``engine.schedules``), so the bench times what production runs.
Without CUDA it refuses (exit 2) unless ``--force``: full-size SDXL on a CPU
takes minutes per step. Importing this module imports torch. The edit and the
variations (one by one vs batched) tables come from ``bench.edits``, the drafts
and LoRA table from ``bench.draft``, the samplers and model-switch tables from
``bench.models``, the memory tiers under emulated 8/12/16 GB cards from ``bench.memory``.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable
from typing import Any

import torch

from sdxl_mcp.bench.draft import draft_tables
from sdxl_mcp.bench.edits import edit_run, variations_run
from sdxl_mcp.bench.memory import tier_tables
from sdxl_mcp.bench.models import model_tables
from sdxl_mcp.bench.pipelines import (
    Timer,
    build_base_unet,
    build_pipelines,
    build_vae,
    decode_latents,
)
from sdxl_mcp.engine.devices import TORCH_DTYPES, speed_up_unet
from sdxl_mcp.engine.schedules import sequential_refiner_schedule

#: FLOPs per step at 1024² with classifier-free guidance (batch 2), and of one
#: VAE decode at 1024², counted for the real SDXL configs (docs/PERFORMANCE.md).
TFLOP_PER_BASE_STEP = 13.5
TFLOP_PER_REFINER_STEP = 14.6
TFLOP_PER_DECODE = 10.5

#: Dense peak matrix throughput (TFLOP/s) by card and dtype, from vendor sheets;
#: fp32 is plain fp32 (torch does not use TF32 for matmuls by default).
PEAK_TFLOPS: dict[str, dict[str, float]] = {
    "H100": {"fp32": 67.0, "fp16": 989.0, "bf16": 989.0},
    "H200": {"fp32": 67.0, "fp16": 989.0, "bf16": 989.0},
    "A100": {"fp32": 19.5, "fp16": 312.0, "bf16": 312.0},
    "L4": {"fp32": 30.3, "fp16": 121.0, "bf16": 121.0},
    "RTX 4090": {"fp32": 82.6, "fp16": 165.2, "bf16": 165.2},
    "RTX 5090": {"fp32": 104.8, "fp16": 209.5, "bf16": 209.5},
}

#: The GPU speed settings in the order a user turns them on; each row of the
#: table adds one to the row above. "sdpa" is diffusers' default on torch 2.
UNET_SETTINGS: tuple[tuple[str, str], ...] = (
    ("classic attention", "(diffusers AttnProcessor: attention without SDPA)"),
    ("sdpa", "(diffusers' default on torch 2)"),
    ("channels_last", "SDXL_MCP_CHANNELS_LAST=true (default)"),
    ("fuse_qkv", "SDXL_MCP_FUSE_QKV=true"),
    ("compile", "SDXL_MCP_COMPILE=true"),
)


def full_size(args: argparse.Namespace) -> dict[str, Any] | None:
    """The three tables for ``args``; ``None`` (after one stderr line) without CUDA or --force."""
    device = args.device
    if device.startswith("cuda") and not cuda_available():
        if not args.force:
            sys.stderr.write(
                "sdxl-mcp: error: --full-size needs a CUDA GPU (full-size SDXL on a CPU takes "
                "minutes per step); pass --force --device cpu to run it anyway\n"
            )
            return None
        device = "cpu"
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]

    def say(message: str) -> None:
        sys.stderr.write(f"[full-size] {message}\n")

    rows = full_size_run(device=device, dtypes=dtypes, size=args.size, steps=args.steps,
                         kind=args.models, progress=say)
    settings = None if not args.skip_compile else tuple(
        name for name, _ in UNET_SETTINGS if name != "compile")
    speed = unet_settings_run(device=device, dtype_name=args.settings_dtype, size=args.size,
                              steps=args.settings_steps, kind=args.models, settings=settings,
                              progress=say)
    decode = vae_decode_run(device=device, size=args.size, kind=args.models,
                            dtypes=tuple(dtypes), progress=say)
    tables = {
        f"speed settings: base UNet, one CFG step at {args.size}²": speed,
        f"VAE decode at {args.size}² (random weights: 'finite' shows the path, "
        "not the real VAE's fp16 behaviour)": decode,
    }
    tables[f"edit: img2img at {args.size}², strength 0.6, 30 steps"] = edit_run(
        device=device, dtype_name=args.settings_dtype, size=args.size, kind=args.models,
        progress=say)
    tables[f"variations: 4 at {args.size}², one by one vs batched (base + decode)"] = (
        variations_run(device=device, dtype_name=args.settings_dtype, size=args.size,
                       kind=args.models, progress=say))
    return {
        "benchmark": "full_size",
        "models": args.models,
        "table": rows,
        "tables": {**tables, **draft_tables(args, device, say),
                   **model_tables(args, device, say), **tier_tables(args, device, say)},
    }


def cuda_available() -> bool:
    return bool(torch.cuda.is_available())


def full_size_run(
    *, device: str, dtypes: list[str], size: int = 1024, steps: int = 50,
    refiner_steps: int = 30, refiner_strength: float = 0.3, high_noise_frac: float = 0.8,
    kind: str = "sdxl", progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Per dtype: base/refiner it/s, decode time, end-to-end for both modes, peak memory."""
    rows = []
    for dtype_name in dtypes:
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        rows.append(_time_dtype(
            device=device, dtype_name=dtype_name, size=size, steps=steps,
            refiner_steps=refiner_steps, refiner_strength=refiner_strength,
            high_noise_frac=high_noise_frac, kind=kind,
            say=progress or (lambda message: None),
        ))
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    return rows


def _time_dtype(
    *, device: str, dtype_name: str, size: int, steps: int, refiner_steps: int,
    refiner_strength: float, high_noise_frac: float, kind: str, say: Callable[[str], None],
) -> dict[str, Any]:
    timer = Timer(device)
    name = torch.cuda.get_device_name(device) if device.startswith("cuda") else "CPU"
    dtype = TORCH_DTYPES[dtype_name]
    say(f"{dtype_name}: building models")
    base, refiner = build_pipelines(kind, dtype, device)
    common = {"prompt": "futuristic AI agent at a holographic desk", "output_type": "latent",
              "generator": torch.Generator("cpu").manual_seed(0)}

    def run_base(n: int, end: float | None = None) -> Any:
        return base(width=size, height=size, num_inference_steps=n, denoising_end=end,
                    **common).images

    def decode(latents: Any) -> Any:
        return decode_latents(base.vae, latents)

    def ensemble() -> Any:
        latents = run_base(steps, high_noise_frac)
        latents = refiner(image=latents, num_inference_steps=steps,
                          denoising_start=high_noise_frac, **common).images
        return decode(latents)

    say(f"{dtype_name}: warm-up")
    warm = run_base(2)
    decode(warm)
    refiner(image=warm, num_inference_steps=4, strength=0.5, **common)

    say(f"{dtype_name}: base {steps} steps")
    base_s, latents = timer.time(lambda: run_base(steps))
    say(f"{dtype_name}: refiner {refiner_steps} steps")
    schedule = sequential_refiner_schedule(refiner_steps, refiner_strength)
    refiner_s, refined = timer.time(lambda: refiner(
        image=latents, num_inference_steps=schedule, strength=refiner_strength,
        **common).images)
    decode_s, _ = timer.time(lambda: decode(refined))
    say(f"{dtype_name}: ensemble {steps} steps")
    ensemble_s, _ = timer.time(ensemble)

    base_its = steps / base_s
    peak = PEAK_TFLOPS.get(next((k for k in PEAK_TFLOPS if k in name), ""), {}).get(dtype_name)
    achieved = TFLOP_PER_BASE_STEP * base_its if size == 1024 and kind == "sdxl" else None
    return {
        "device": name,
        "dtype": dtype_name,
        "size": size,
        "models": kind,
        "base_it_s": round(base_its, 3),
        "refiner_it_s": round(refiner_steps / refiner_s, 3),
        "vae_decode_s": round(decode_s, 4),
        "sequential_s": round(base_s + refiner_s + decode_s, 3),
        "sequential_steps": f"{steps} + {refiner_steps}",
        "ensemble_s": round(ensemble_s, 3),
        "ensemble_steps": f"{steps} split at {high_noise_frac}",
        "peak_memory_gb": round(torch.cuda.max_memory_allocated(device) / 1024**3, 2)
        if device.startswith("cuda") else None,
        "base_tflops": round(achieved, 1) if achieved else None,
        "pct_of_peak": round(100 * achieved / peak, 1) if achieved and peak else None,
    }


def _unet_inputs(unet: Any, size: int, device: str, dtype: torch.dtype) -> dict[str, Any]:
    """One denoising step's inputs with classifier-free guidance (batch of 2)."""
    config = unet.config
    text_dim = (config.projection_class_embeddings_input_dim
                - 6 * config.addition_time_embed_dim)
    latent = size // 8
    return {
        "sample": torch.randn(2, config.in_channels, latent, latent, device=device, dtype=dtype),
        "timestep": torch.tensor(999, device=device),
        "encoder_hidden_states": torch.randn(
            2, 77, config.cross_attention_dim, device=device, dtype=dtype),
        "added_cond_kwargs": {
            "text_embeds": torch.randn(2, text_dim, device=device, dtype=dtype),
            "time_ids": torch.tensor(
                [[size, size, 0, 0, size, size]] * 2, device=device, dtype=dtype),
        },
        "return_dict": False,
    }


def unet_settings_run(
    *, device: str, dtype_name: str, size: int = 1024, steps: int = 10, kind: str = "sdxl",
    settings: tuple[str, ...] | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Base UNet milliseconds per step as each speed setting is added.

    Applies each setting with the engine's own ``speed_up_unet``, to the base UNet
    alone: that is where the time goes. ``compile_s`` is the
    first compiled call, which the engine pays during preload. ``settings``
    picks rows (default: all of ``UNET_SETTINGS``).
    """
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    say = progress or (lambda message: None)
    dtype = TORCH_DTYPES[dtype_name]
    say(f"speed settings ({dtype_name}): building the base UNet")
    unet = build_base_unet(kind, device, dtype)
    inputs = _unet_inputs(unet, size, device, dtype)
    timer = Timer(device)
    model: Any = unet
    rows: list[dict[str, Any]] = []
    baseline: float | None = None
    for name, setting in UNET_SETTINGS:
        if settings is not None and name not in settings:
            continue
        say(f"speed settings ({dtype_name}): {name}")
        if name == "classic attention":
            unet.set_attn_processor(AttnProcessor())
        elif name == "sdpa":
            unet.set_attn_processor(AttnProcessor2_0())
        else:
            model = speed_up_unet(model, channels_last=name == "channels_last",
                                  fuse_qkv=name == "fuse_qkv", compile=name == "compile")

        step = functools.partial(model, **inputs)
        with torch.inference_mode():
            first_s, _ = timer.time(step)  # warm-up; for "compile", the compilation
            timer.time(step)
            per_step = timer.time(functools.partial(_repeat, step, steps))[0] / steps
        if name == "sdpa":
            baseline = per_step
        rows.append({
            "setting": f"+ {name}" if rows else name,
            "how": setting,
            "dtype": dtype_name,
            "ms_per_step": round(per_step * 1000, 2),
            "it_s": round(1 / per_step, 3),
            "vs_sdpa": round(baseline / per_step, 3) if baseline else None,
            "compile_s": round(first_s, 1) if name == "compile" else None,
        })
    return rows


def _repeat(fn: Callable[[], Any], times: int) -> None:
    for _ in range(times):
        fn()


def vae_decode_run(
    *, device: str, size: int = 1024, kind: str = "sdxl", dtypes: tuple[str, ...] = (
        "fp32", "fp16", "bf16"), progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """VAE decode time per dtype, and whether the output stayed finite.

    Random weights do not reproduce the real SDXL VAE's fp16 overflow, so
    "finite" here only shows the path works; the engine checks every real
    decode and retries in fp32 (``SDXL_MCP_VAE_MODEL`` can name an fp16-safe VAE).
    """
    say = progress or (lambda message: None)
    timer = Timer(device)
    model = build_vae(kind, device)
    latents = torch.randn(1, model.config.latent_channels, size // 8, size // 8, device=device)
    rows = []
    for dtype_name in dtypes:
        say(f"VAE decode: {dtype_name}")
        dtype = TORCH_DTYPES[dtype_name]
        model.to(dtype=dtype)
        z = latents.to(dtype) / model.config.scaling_factor
        with torch.inference_mode():
            decode = functools.partial(model.decode, z, return_dict=False)
            decode()  # warm-up
            seconds, _ = timer.time(decode)
            finite = bool(torch.isfinite(decode()[0]).all())
        rows.append({"dtype": dtype_name, "decode_s": round(seconds, 4), "finite": finite})
    return rows
