"""``--full-size`` draft and LoRA rows: what a 4-step draft and an active LoRA cost.

One table (:func:`draft_tables`), on the base pipeline of ``--models`` (real SDXL configs,
random weights) in ``--settings-dtype`` at ``--size``: 4-step draft rows and regular rows,
without a LoRA and with one of SDXL-Lightning's shape, random in value (active, fused, or
loaded but disabled). Timings are CUDA-event stream time on a GPU, each after a one-step
warm-up call (details: docs/ARCHITECTURE.md "Guarantees").
Importing this module imports torch, diffusers and peft.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import torch
from peft import LoraConfig

from sdxl_mcp.bench.pipelines import Timer, build_pipelines, decode_latents
from sdxl_mcp.engine.devices import TORCH_DTYPES
from sdxl_mcp.engine.draft import draft_scheduler

#: SDXL-Lightning's LoRA: rank 64, alpha 8 (its kohya file), on these module names.
LIGHTNING_RANK = 64
LIGHTNING_ALPHA = 8
LIGHTNING_TARGETS: tuple[str, ...] = (
    "to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2",
    "conv1", "conv2", "conv_shortcut", "time_emb_proj", "downsamplers.0.conv",
    "upsamplers.0.conv",
)
DRAFT_STEPS = 4
DRAFT_GUIDANCE = 1.0
REGULAR_GUIDANCE = 5.0
ADAPTER = "bench_lightning_shape"


def draft_tables(
    args: argparse.Namespace, device: str, progress: Callable[[str], None] | None = None
) -> dict[str, list[dict[str, Any]]]:
    """The ``--full-size`` report's draft/LoRA table, keyed by its title."""
    rows = draft_run(device=device, dtype_name=args.settings_dtype, size=args.size,
                     kind=args.models, regular_steps=args.steps, progress=progress)
    title = (f"drafts and LoRA: base only, {args.settings_dtype}, {args.size}² "
             f"(LoRA rank {LIGHTNING_RANK}, SDXL-Lightning's shape, random weights)")
    return {title: rows}


def attach_lightning_shaped_lora(unet: Any, rank: int = LIGHTNING_RANK,
                                 seed: int = 0) -> dict[str, int]:
    """Add a random LoRA of SDXL-Lightning's shape to ``unet`` as :data:`ADAPTER`.

    ``lora_B`` gets small random values (PEFT starts it at zero), so the adapter
    changes the output as a trained one would. Returns its layer and parameter count.
    """
    config = LoraConfig(r=rank, lora_alpha=LIGHTNING_ALPHA,
                        target_modules=list(LIGHTNING_TARGETS), init_lora_weights="gaussian")
    unet.add_adapter(config, adapter_name=ADAPTER)
    generator = torch.Generator("cpu").manual_seed(seed)
    params = 0
    with torch.no_grad():
        for name, param in unet.named_parameters():
            if f".{ADAPTER}." not in f"{name}.":
                continue
            params += param.numel()
            if "lora_B" in name and not param.is_meta:
                noise = torch.randn(param.shape, generator=generator) * 0.01
                param.copy_(noise.to(param.device, param.dtype))
    layers = sum(1 for _, module in unet.named_modules()
                 if ADAPTER in getattr(module, "lora_A", {}))
    return {"layers": layers, "params": params}


def draft_run(
    *, device: str, dtype_name: str = "fp16", size: int = 1024, kind: str = "sdxl",
    draft_steps: int = DRAFT_STEPS, regular_steps: int = 50,
    rank: int = LIGHTNING_RANK, progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """The rows: drafts (none / LoRA active / fused), regular (none / active / disabled)."""
    say = progress or (lambda message: None)
    dtype = TORCH_DTYPES[dtype_name]
    timer = Timer(device)
    say(f"drafts ({dtype_name}): building the base")
    base, refiner = build_pipelines(kind, dtype, device)
    del refiner  # drafts and LoRA requests run the base alone
    resident = base.scheduler
    trailing = draft_scheduler("euler-trailing", resident.config)  # the engine's draft one
    unet = base.unet

    def generate(steps: int, guidance: float, scheduler: Any) -> Callable[[], Any]:
        """One base call to latents with ``scheduler`` swapped in (as engine.draft does)."""
        def run() -> Any:
            base.scheduler = scheduler
            try:
                latents = base(prompt="a lighthouse on a cliff at dusk", width=size,
                               height=size, num_inference_steps=steps,
                               guidance_scale=guidance, output_type="latent",
                               generator=torch.Generator("cpu").manual_seed(0)).images
            finally:
                base.scheduler = resident
            return latents
        return run

    def decode(latents: Any) -> Any:
        return decode_latents(base.vae, latents)

    rows: list[dict[str, Any]] = []
    plain: dict[str, float] = {}

    def row(name: str, lora: str, steps: int, guidance: float, scheduler: Any,
            label: str) -> None:
        say(f"drafts ({dtype_name}): {name}")
        run = generate(steps, guidance, scheduler)
        if device.startswith("cuda"):
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        # Warm-up, one step: kernels, the adapter's first call, the decode.
        decode(generate(1, guidance, scheduler)())
        unet_s, latents = timer.time(run)
        decode_s, _ = timer.time(lambda: decode(latents))
        if lora == "none":
            plain[label] = unet_s
        rows.append({
            "row": name,
            "lora": lora,
            "steps": steps,
            "guidance": guidance,
            "scheduler": type(scheduler).__name__
            + (" trailing" if scheduler is trailing else ""),
            "denoise_s": round(unet_s, 4),
            "ms_per_step": round(1000 * unet_s / steps, 2),
            "decode_s": round(decode_s, 4),
            "total_s": round(unet_s + decode_s, 4),
            "vs_no_lora": round(unet_s / plain[label], 3) if label in plain else None,
            "peak_memory_gb": round(torch.cuda.max_memory_allocated(device) / 1024**3, 2)
            if device.startswith("cuda") else None,
        })

    draft = (draft_steps, DRAFT_GUIDANCE, trailing, "draft")
    regular = (regular_steps, REGULAR_GUIDANCE, resident, "regular")
    row(f"draft {draft_steps} steps, no LoRA", "none", *draft)
    row(f"regular {regular_steps} steps + CFG, no LoRA", "none", *regular)
    say(f"drafts ({dtype_name}): attaching a rank-{rank} LoRA")
    shape = attach_lightning_shaped_lora(unet, rank)
    active = f"rank {rank}, {shape['layers']} layers, {shape['params'] / 1e6:.1f} M params"
    unet.set_adapters([ADAPTER], weights=[1.0])
    row(f"draft {draft_steps} steps, LoRA active (unfused, as the engine runs it)",
        f"active: {active}", *draft)
    row(f"regular {regular_steps} steps + CFG, LoRA active", f"active: {active}", *regular)
    unet.disable_adapters()
    row(f"regular {regular_steps} steps + CFG, LoRA loaded but disabled", "disabled",
        *regular)
    unet.enable_adapters()
    unet.set_adapters([ADAPTER], weights=[1.0])
    unet.fuse_lora(lora_scale=1.0, adapter_names=[ADAPTER])
    row(f"draft {draft_steps} steps, LoRA fused into the weights", "fused", *draft)
    unet.unfuse_lora()
    return rows
