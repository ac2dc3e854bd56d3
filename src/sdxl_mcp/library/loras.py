"""The LoRA files of ``SDXL_MCP_LORA_DIRS``: names, paths, A1111 hashes, the draft LoRA.

A LoRA's name is its file name without ``.safetensors`` (A1111's rule; the first of two files
with one name wins); unknown names are one ``BadRequest`` listing the available ones; hashes
and infotext follow A1111's "Lora hashes"; :func:`draft_source` reads ``SDXL_MCP_DRAFT_LORA``
(details: docs/ARCHITECTURE.md "Guarantees"). No torch: the service checks names before
admission, the engine resolves them again on the replica that loads them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import struct
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sdxl_mcp.errors import BadRequest
from sdxl_mcp.library.infotext import InfotextParams
from sdxl_mcp.schemas.loras import prompt_loras, requested_loras
from sdxl_mcp.settings import Settings

if TYPE_CHECKING:
    from sdxl_mcp.schemas import GenerationRequest

log = logging.getLogger(__name__)

SUFFIX = ".safetensors"
_HASHES: dict[tuple[str, int, int], str] = {}
#: How many available names an "unknown LoRA" error lists.
_LISTED = 20


def lora_files(dirs: Iterable[Path]) -> dict[str, Path]:
    """name -> path for every LoRA file under ``dirs`` (missing folders: none)."""
    found: dict[str, Path] = {}
    for folder in dirs:
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob(f"*{SUFFIX}")):
            if path.is_file():
                found.setdefault(path.name[: -len(SUFFIX)], path)
    return found


def resolve_loras(settings: Settings, names: Sequence[str]) -> dict[str, Path]:
    """name -> path for ``names``; unknown names: a BadRequest listing the available ones."""
    if not names:
        return {}
    files = lora_files(settings.lora_dirs)
    unknown = [name for name in names if name not in files]
    if unknown:
        available = sorted(files)
        listed = ", ".join(available[:_LISTED]) + (" ..." if len(available) > _LISTED else "")
        where = ", ".join(str(d) for d in settings.lora_dirs) or "(none)"
        raise BadRequest(
            f"loras: unknown LoRA {', '.join(repr(n) for n in unknown)}; "
            + (f"available: {listed}" if available else f"no LoRA files in {where}")
            + " (SDXL_MCP_LORA_DIRS; see list_loras)."
        )
    return {name: files[name] for name in names}


def lora_hash(path: Path) -> str | None:
    """A1111's short hash of a LoRA file (12 hex digits), None if it cannot be read."""
    try:
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        if key not in _HASHES:
            _HASHES[key] = _addnet_hash(path)[:12]
        return _HASHES[key]
    except (OSError, ValueError, struct.error):
        return None


def _addnet_hash(path: Path) -> str:
    """sha256 of a safetensors file's tensor bytes (everything after the header)."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        (header_len,) = struct.unpack("<Q", file.read(8))
        file.seek(8 + header_len)
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def draft_source(value: str) -> tuple[str, str | None]:
    """``SDXL_MCP_DRAFT_LORA`` as (path or hub repo, weight file or None)."""
    local = Path(value).expanduser()
    if local.is_file():
        return str(local.parent), local.name
    if local.exists() or value.startswith(("/", ".", "~")):
        return str(local), None
    parts = value.strip("/").split("/")
    if len(parts) > 2 and parts[-1].endswith(SUFFIX):
        return "/".join(parts[:2]), "/".join(parts[2:])
    return value, None


#: A1111's sampler and schedule names for each draft scheduler.
DRAFT_SAMPLERS: dict[str, tuple[str, str | None]] = {
    "euler-trailing": ("Euler", "SGM Uniform"), "lcm": ("LCM", None), "tcd": ("TCD", None)}


def with_loras(params: InfotextParams, settings: Settings, request: Any) -> InfotextParams:
    """``params`` with the request's LoRAs written the A1111 way (see the guarantees)."""
    if getattr(request, "quality", None) == "draft":
        sampler, schedule = DRAFT_SAMPLERS[settings.draft_scheduler]
        params = dataclasses.replace(params, sampler=sampler, schedule_type=schedule)
    refs = requested_loras(request.prompt, request.loras)
    if not refs:
        return params
    tagged = {ref.name for ref in prompt_loras(request.prompt)}
    prompt = params.prompt + "".join(f"<lora:{r.name}:{r.weight:g}>"
                                     for r in request.loras if r.name not in tagged)
    files = lora_files(settings.lora_dirs)
    hashes = [f"{r.name.replace(':', '').replace(',', '')}: {digest}" for r in refs
              if r.name in files and (digest := lora_hash(files[r.name]))]
    return dataclasses.replace(params, prompt=prompt, lora_hashes=", ".join(hashes) or None)


DRAFT_WITHOUT_LORA = (
    'quality: "draft" needs SDXL_MCP_DRAFT_LORA, a distilled SDXL LoRA (SDXL-Lightning, '
    'Hyper-SD or LCM; a file or a hub id), which is not set; set it, or use quality "fast".'
)


def resolve_draft(settings: Settings, request: GenerationRequest) -> GenerationRequest:
    """A draft request with the server's steps and guidance where the caller gave none."""
    if request.quality != "draft":
        return request
    if not settings.draft_lora:
        raise BadRequest(DRAFT_WITHOUT_LORA)
    given = request.model_fields_set
    update: dict[str, Any] = {}
    if "num_inference_steps" not in given:
        update["num_inference_steps"] = settings.draft_steps
    if "guidance_scale" not in given:
        update["guidance_scale"] = settings.draft_guidance
    return request.model_copy(update=update) if update else request


def warn_missing_dirs(settings: Settings) -> None:
    """Start-up: a configured LORA_DIRS folder that does not exist is a warning."""
    explicit = "lora_dirs" in settings.model_fields_set
    for folder in settings.lora_dirs:
        if not folder.is_dir():
            if explicit:
                log.warning("SDXL_MCP_LORA_DIRS: %s does not exist (no LoRAs from it)", folder)
            else:
                log.info("No LoRA folder at %s (SDXL_MCP_LORA_DIRS)", folder)
