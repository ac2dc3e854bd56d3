"""Pipelines from disk: a diffusers folder, a hub id or a single-file checkpoint.

Guarantees (tests/engine/test_engine.py, tests/engine/test_checkpoints.py):
:func:`load_pipeline` picks ``from_single_file`` for a file (``engine.checkpoints``)
and ``from_pretrained`` otherwise; a failure is ``OutOfMemory`` or
``ModelUnavailable`` naming the setting and what to set it to, never diffusers'
traceback; :func:`model_hash_of` is A1111's "Model hash" of a checkpoint file.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from diffusers import StableDiffusionXLImg2ImgPipeline

from sdxl_mcp.engine.checkpoints import load_single_file
from sdxl_mcp.engine.devices import is_out_of_memory
from sdxl_mcp.errors import ModelUnavailable, OutOfMemory, SdxlMcpError, first_line
from sdxl_mcp.library.checkpoints import model_hash

log = logging.getLogger(__name__)

__all__ = ["load_pipeline", "model_hash_of"]

def model_hash_of(ref: str) -> str | None:
    """A1111's "Model hash" of a single-file checkpoint (one read of the whole file, then
    cached); None for a folder or hub id."""
    path = Path(ref)
    if not path.is_file():
        return None
    started = time.perf_counter()
    value = model_hash(path)
    log.info("Model hash of %s: %s (%.1f s)", path.name, value, time.perf_counter() - started)
    return value


def load_pipeline(cls: Any, path: str, setting: str, ref: str,
                     configs: list[Path] | None = None, **kwargs: Any) -> Any:
    """``cls`` from a diffusers folder or hub id, or from a single-file checkpoint."""
    try:
        if Path(path).is_file():
            return load_single_file(
                cls, Path(path), "refiner" if cls is StableDiffusionXLImg2ImgPipeline else "base",
                setting, configs or [], **kwargs)
        return cls.from_pretrained(path, **kwargs)
    except SdxlMcpError:
        raise
    except Exception as exc:
        if is_out_of_memory(exc):
            raise OutOfMemory(
                f"Out of memory while loading {setting}={ref!r}. Use SDXL_MCP_PRECISION=fp16, "
                "an empty SDXL_MCP_REFINER_MODEL, or a larger GPU."
            ) from None
        log.error("Loading %s=%r failed: %s", setting, ref, exc)
        raise ModelUnavailable(
            f"Could not load {setting}={ref!r}: {first_line(exc)} Set {setting} to a local "
            "diffusers folder or a Hugging Face id this machine can download "
            "('tiny-random' is the built-in test model)."
        ) from None
