"""The load plan: which model folders, which device, how many parameters, which precision.

One function, :func:`plan_load`, decides it; the engine loads what it says and
``gpu_status`` / ``sdxl-mcp gpu`` report it (``status(plan=True)``) without
loading anything. Planning reads only safetensors headers (or builds the real
SDXL architecture on the meta device for hub ids not cached here), so it is
cheap; torch is imported by the device probe.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from sdxl_mcp.engine import footprint
from sdxl_mcp.engine.gpu import probe_hardware, resolve_device
from sdxl_mcp.engine.memory import MemoryPlan, plan_memory
from sdxl_mcp.engine.precision import HardwareFacts, PrecisionDecision, decide_precision
from sdxl_mcp.errors import ModelUnavailable
from sdxl_mcp.library.checkpoints import check_checkpoint, looks_like_path
from sdxl_mcp.settings import TINY_MODEL, Settings

#: Models below this size may run on CPU without ALLOW_CPU (the tiny test models).
TINY_PARAM_LIMIT = 100_000_000


@dataclass(frozen=True)
class LoadPlan:
    base_path: str
    refiner_path: str | None
    hardware: HardwareFacts
    parameters: int
    decision: PrecisionDecision
    #: How much stays on the card (engine.memory).
    memory: MemoryPlan | None = None
    #: Why loading would be refused (full-size SDXL on a CPU without ALLOW_CPU).
    refusal: str | None = None


def plan_load(settings: Settings) -> LoadPlan:
    """Resolve the models and decide device and precision; raises ModelUnavailable."""
    s = settings
    base_path = resolve_model(s.base_model, "base", "SDXL_MCP_BASE_MODEL")
    refiner_path = (
        resolve_model(s.refiner_model, "refiner", "SDXL_MCP_REFINER_MODEL")
        if s.refiner_enabled
        else None
    )
    try:
        hardware = probe_hardware(resolve_device(s.device))
    except RuntimeError as exc:
        raise ModelUnavailable(str(exc)) from None
    base_counts = _param_counts(base_path, "base")
    refiner_counts = _param_counts(refiner_path, "refiner") if refiner_path else None
    params = footprint.total_param_count(base_counts, refiner_counts)
    refusal = None
    if hardware.kind == "cpu" and params >= TINY_PARAM_LIMIT and not s.allow_cpu:
        refusal = (
            f"No GPU found and full-size SDXL ({params / 1e9:.1f} B parameters) on CPU "
            "takes minutes per image, so it is refused. Use a machine with a GPU, set "
            "SDXL_MCP_ALLOW_CPU=true to accept the wait, or use stock photos (use_pexels)."
        )
    decision = decide_precision(hardware, params, s.precision, s.fp32_min_vram_gb)
    memory = plan_memory(s.memory, hardware, decision.dtype, base_counts, refiner_counts)
    return LoadPlan(base_path, refiner_path, hardware, params, decision, memory, refusal)


def resolve_model(ref: str, kind: str, setting: str) -> str:
    """Map a setting value to what ``from_pretrained`` takes, checking local folders."""
    ref = ref.strip()
    if ref == TINY_MODEL:
        from sdxl_mcp.engine.tiny import ensure_tiny_models

        base, refiner = ensure_tiny_models()
        if kind == "vae":
            return str(base / "vae")
        return str(base if kind == "base" else refiner)
    path = Path(ref).expanduser()
    if path.is_dir():
        _check_components(path, setting, ref)
        return str(path.resolve())
    if path.is_file() and kind in ("base", "refiner"):
        # A single-file checkpoint: refused here (by its header) unless it is SDXL.
        check_checkpoint(path, "sdxl-base" if kind == "base" else "sdxl-refiner", setting)
        return str(path.resolve())
    if looks_like_path(ref) or path.exists():
        raise ModelUnavailable(
            f"{setting}={ref!r} is not a folder or a .safetensors checkpoint that exists. "
            f"Point {setting} at a local diffusers folder, an SDXL .safetensors checkpoint, "
            "a Hugging Face model id, or 'tiny-random' for the built-in test model."
        )
    return ref  # a hub id: from_pretrained fetches or finds it in the local cache


def _check_components(path: Path, setting: str, ref: str) -> None:
    index = path / "model_index.json"
    if not index.exists():
        if (path / "config.json").exists():  # a bare component, e.g. a VAE folder
            return
        raise ModelUnavailable(
            f"{setting}={ref!r} has no model_index.json, so it is not a diffusers pipeline "
            "folder. Point it at the folder that holds model_index.json."
        )


    components = json.loads(index.read_text())
    # The refiner gets text_encoder_2 and vae from the base, so their folders are optional.
    optional = {"text_encoder_2", "vae"} if setting == "SDXL_MCP_REFINER_MODEL" else set()
    for name, spec in components.items():
        if name.startswith("_") or not isinstance(spec, list) or spec[0] is None:
            continue
        if name not in optional and name != "scheduler" and not (path / name).is_dir():
            raise ModelUnavailable(
                f"{setting}={ref!r} lacks its '{name}/' folder (listed in model_index.json). "
                "Re-download the model or save it again with save_pretrained."
            )


def _param_counts(ref: str, kind: str) -> dict[str, int]:
    path = Path(ref)
    if path.is_dir():
        return footprint.local_param_counts(path)
    if path.is_file():
        return footprint.single_file_param_counts(path, "refiner" if kind == "refiner" else "base")
    cached = _hub_cache_path(ref)
    if cached is not None:
        return footprint.local_param_counts(cached)
    # Not local yet: assume the real SDXL architecture (fine-tunes share it).
    return footprint.reference_param_counts("refiner" if kind == "refiner" else "base")


def _hub_cache_path(repo_id: str) -> Path | None:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:
        return None


