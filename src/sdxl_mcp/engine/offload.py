"""Carrying out a memory tier with diffusers' and accelerate's own offload mechanisms.

Guarantees (tests/engine/test_memory.py; docs/MEMORY.md "Tiers"):

* :func:`place` puts a loaded base (and refiner) where its tier says, through
  :class:`OffloadOps`, the one seam to diffusers/accelerate (tests pass a
  recording fake): ``full`` moves every component to the device;
  ``balanced`` moves them too, then lets accelerate's offload hooks swap the
  two UNets (one on the card at a time, the other in CPU RAM); ``low`` gives
  the refiner its own copies of the shared text encoder and VAE (two pipelines
  cannot share one hook chain) and calls ``enable_model_cpu_offload`` on each;
  ``minimal`` does the same with layer-by-layer offload of the UNet and VAE
  (accelerate's ``cpu_offload``, as ``enable_sequential_cpu_offload`` does) and
  whole-model hooks for the text encoders (the last one used stays on the card);
* ``low`` and ``minimal`` also tile the VAE decode;
* off CUDA nothing is offloaded: every tier is ``full`` placement there.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from sdxl_mcp.engine.footprint import COMPONENTS, SHARED_WITH_REFINER
from sdxl_mcp.engine.memory import Tier

log = logging.getLogger(__name__)

__all__ = ["DiffusersOffload", "OffloadOps", "park_base", "place", "place_base"]


class OffloadOps:
    """The mechanisms a tier engages (the seam tests fake)."""

    def to_device(self, pipe: Any, device: str) -> None:
        pipe.to(device)

    def swap_unets(self, base: Any, refiner: Any, device: str) -> None:
        """One UNet on the card at a time (accelerate's offload hooks, chained both ways)."""
        raise NotImplementedError

    def model_offload(self, pipe: Any, device: str) -> None:
        raise NotImplementedError

    def sequential_offload(self, pipe: Any, device: str) -> None:
        raise NotImplementedError

    def tile_vae(self, pipe: Any) -> None:
        pipe.vae.enable_tiling()

    def remove_hooks(self, pipe: Any) -> None:
        raise NotImplementedError


class DiffusersOffload(OffloadOps):
    """The real mechanisms: diffusers' pipeline methods and accelerate's hooks."""

    def swap_unets(self, base: Any, refiner: Any, device: str) -> None:
        from accelerate import cpu_offload_with_hook

        base.unet.to("cpu")
        refiner.unet.to("cpu")
        _, base_hook = cpu_offload_with_hook(base.unet, device)
        _, refiner_hook = cpu_offload_with_hook(refiner.unet, device, prev_module_hook=base_hook)
        # The chain both ways: whichever UNet runs sends the other back to CPU RAM.
        base_hook.hook.prev_module_hook = refiner_hook

    def model_offload(self, pipe: Any, device: str) -> None:
        pipe.enable_model_cpu_offload(device=device)

    def sequential_offload(self, pipe: Any, device: str) -> None:
        """diffusers' sequential offload (accelerate's ``cpu_offload``: layer by layer)
        for the UNet and the VAE; the text encoders get whole-model hooks instead,
        since transformers' CLIP does not survive layer-by-layer offload with this
        accelerate (a buffer cannot be re-created; tests/engine/test_memory.py)."""
        from accelerate import cpu_offload, cpu_offload_with_hook

        previous = None
        for name in ("text_encoder", "text_encoder_2"):
            model = getattr(pipe, name, None)
            if model is not None:
                _, previous = cpu_offload_with_hook(model, device, prev_module_hook=previous)
        for name in ("unet", "vae"):
            model = getattr(pipe, name, None)
            if model is not None:
                cpu_offload(model, device, offload_buffers=len(model._parameters) > 0)

    def remove_hooks(self, pipe: Any) -> None:
        from accelerate.hooks import remove_hook_from_module

        if hasattr(pipe, "remove_all_hooks"):
            pipe.remove_all_hooks()
        unet = getattr(pipe, "unet", None)
        if unet is not None:
            remove_hook_from_module(unet, recurse=True)


def place(tier: Tier, base: Any, refiner: Any | None, device: str,
          ops: OffloadOps | None = None, *, offload_off_cuda: bool = False) -> Any | None:
    """Put ``base`` and ``refiner`` where ``tier`` says; returns the refiner to use (it
    may hold its own copies of the shared parts). ``offload_off_cuda``: engage the
    tier's mechanisms on another device too (tests run them with the CPU as the
    execution device, which is how they are checked without a GPU)."""
    ops = ops or DiffusersOffload()
    if (not device.startswith("cuda") and not offload_off_cuda) or tier == "full":
        for pipe in (base, refiner):
            if pipe is not None:
                ops.to_device(pipe, device)
        return refiner
    if tier == "balanced":
        ops.to_device(base, device)
        if refiner is not None:
            ops.to_device(refiner, device)
            ops.swap_unets(base, refiner, device)
        return refiner
    if refiner is not None:
        refiner = _unshared(refiner)
    offload = ops.model_offload if tier == "low" else ops.sequential_offload
    for pipe in (base, refiner):
        if pipe is not None:
            offload(pipe, device)
            ops.tile_vae(pipe)
    log.info("Memory tier %s: %s", tier, "model CPU offload" if tier == "low"
             else "sequential CPU offload")
    return refiner


def place_base(tier: Tier, pipe: Any, refiner: Any | None, device: str,
               ops: OffloadOps | None = None) -> None:
    """Another base model (``model``) taking the device, placed as ``tier`` says."""
    ops = ops or DiffusersOffload()
    if not device.startswith("cuda") or tier == "full":
        ops.to_device(pipe, device)
    elif tier == "balanced":
        ops.to_device(pipe, device)
        if refiner is not None:
            ops.remove_hooks(refiner)  # its UNet now takes turns with this base's
            ops.swap_unets(pipe, refiner, device)
    else:
        (ops.model_offload if tier == "low" else ops.sequential_offload)(pipe, device)
        ops.tile_vae(pipe)


def park_base(tier: Tier, pipe: Any, shared_with_refiner: bool,
              ops: OffloadOps | None = None) -> None:
    """A base leaving the device: its hooks removed, its weights to CPU RAM (the parts a
    resident refiner shares stay where they are)."""
    ops = ops or DiffusersOffload()
    if tier != "full":
        ops.remove_hooks(pipe)
    keep = SHARED_WITH_REFINER if shared_with_refiner and tier in ("full", "balanced") else ()
    for part in COMPONENTS:
        model = getattr(pipe, part, None)
        if model is not None and part not in keep:
            model.to("cpu")


def _unshared(refiner: Any) -> Any:
    """The refiner with its own text encoder and VAE: an offload hook chain belongs to one
    pipeline, and the stock refiner borrows the base's (CPU RAM pays, the card does not)."""
    refiner.text_encoder_2 = copy.deepcopy(refiner.text_encoder_2)
    refiner.vae = copy.deepcopy(refiner.vae)
    refiner.register_modules(text_encoder_2=refiner.text_encoder_2, vae=refiner.vae)
    return refiner
