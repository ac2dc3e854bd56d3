"""The models folder: SDXL checkpoints and diffusers folders by name, and their defaults.

Guarantees (tests/library/test_models.py; docs/MODELS.md):

* :func:`model_entries` lists SDXL_MCP_MODEL_DIRS: every ``.safetensors`` whose
  header is an SDXL base checkpoint (by file stem) and every diffusers pipeline
  folder (``model_index.json``, by folder name); the first folder listed wins a
  name both hold; other files are left out (a debug line says why);
* :func:`find_model` gives the entry of a name, the configured BASE_MODEL by
  its own name too, or a ``BadRequest`` listing the names there are;
* :func:`model_defaults` reads ``<name>.json`` beside a model (validated:
  a bad file is a ``BadRequest`` naming the file and the field).

Stdlib, pydantic and safetensors headers only: no torch.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import ValidationError

from sdxl_mcp.errors import BadRequest
from sdxl_mcp.library.checkpoints import (
    CHECKPOINT_SUFFIX,
    checkpoint_kind,
    model_name,
    safetensors_keys,
)
from sdxl_mcp.schemas.fields import describe_validation_error
from sdxl_mcp.schemas.models import ModelDefaults
from sdxl_mcp.settings import TINY_MODEL, Settings

log = logging.getLogger(__name__)

__all__ = ["ModelEntry", "default_model", "find_model", "model_defaults", "model_entries"]

ModelKind = Literal["checkpoint", "diffusers", "hub"]


@dataclass(frozen=True)
class ModelEntry:
    """A base model by name: what the engine loads (``ref``) and how it is stored."""

    name: str
    ref: str
    kind: ModelKind
    #: ``<name>.json`` beside it (None: no defaults file).
    defaults_file: Path | None = None
    #: The configured BASE_MODEL (what a request without ``model`` runs).
    default: bool = False


def default_model(settings: Settings) -> ModelEntry:
    """BASE_MODEL as an entry (its name as the infotext writes it)."""
    ref = settings.base_model.strip()
    path = Path(ref).expanduser()
    kind: ModelKind = ("checkpoint" if path.is_file() else
                       "diffusers" if path.is_dir() or ref == TINY_MODEL else "hub")
    defaults = path.with_suffix(".json") if kind == "checkpoint" else None
    return ModelEntry(model_name(ref), ref, kind,
                      defaults if defaults is not None and defaults.is_file() else None,
                      default=True)


def model_entries(settings: Settings) -> dict[str, ModelEntry]:
    """Every model of SDXL_MCP_MODEL_DIRS by name (see the guarantees)."""
    found: dict[str, ModelEntry] = {}
    for folder in settings.model_dirs:
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            entry = _entry(path)
            if entry is not None and entry.name not in found:
                found[entry.name] = entry
    return found


def find_model(settings: Settings, name: str) -> ModelEntry:
    """The model called ``name``; BadRequest naming the ones there are."""
    base = default_model(settings)
    if name == base.name:
        return base
    entries = model_entries(settings)
    if name in entries:
        return entries[name]
    names = ", ".join(sorted({base.name, *entries})[:20])
    folders = ", ".join(str(d) for d in settings.model_dirs) or "(none)"
    raise BadRequest(f"model: no model {name!r} here; list_models has {names} "
                     f"(SDXL checkpoints and diffusers folders in {folders}, "
                     "SDXL_MCP_MODEL_DIRS).")


def model_defaults(entry: ModelEntry) -> ModelDefaults:
    """The model's defaults file, validated (none: no defaults)."""
    if entry.defaults_file is None:
        return ModelDefaults()
    try:
        data = json.loads(entry.defaults_file.read_text(encoding="utf-8"))
        return ModelDefaults.model_validate(data)
    except (OSError, ValueError) as exc:
        why = (describe_validation_error(exc) if isinstance(exc, ValidationError)
               else f"not JSON ({exc})")
        raise BadRequest(f"model: the defaults of {entry.name} in {entry.defaults_file} "
                         f"are invalid: {why}. Fix or remove the file.") from None


def _entry(path: Path) -> ModelEntry | None:
    if path.name.startswith("."):
        return None
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            return None
        defaults = path.parent / f"{path.name}.json"
        return ModelEntry(path.name, str(path.resolve()), "diffusers",
                          defaults if defaults.is_file() else None)
    if path.suffix.lower() != CHECKPOINT_SUFFIX:
        return None
    try:
        kind = checkpoint_kind(safetensors_keys(path))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        log.debug("Models folder: %s is not a readable safetensors file (%s)", path, exc)
        return None
    if kind != "sdxl-base":
        log.debug("Models folder: %s is %s, not an SDXL base model", path, kind)
        return None
    defaults = path.with_suffix(".json")
    return ModelEntry(path.stem, str(path.resolve()), "checkpoint",
                      defaults if defaults.is_file() else None)
