"""Models by name: the ``model`` request field, a model's defaults file, ``list_models``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sdxl_mcp.schemas.fields import NegativePrompt, SamplerName
from sdxl_mcp.schemas.loras import LoraInfo

__all__ = ["ModelDefaults", "ModelInfo", "ModelList", "ModelName", "StyleInfo",
           "check_model_name"]

_BAD_NAME_CHARS = frozenset('<>:"/\\|?*\x00')


def check_model_name(name: str | None) -> str | None:
    """A model is named by a file stem or folder name: no folders, no wildcards."""
    if name is None:
        return None
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise ValueError("model is a name from list_models (1-200 characters)")
    bad = sorted(set(name) & _BAD_NAME_CHARS)
    if bad:
        raise ValueError(f"model is a name from list_models, not a path ({name[:60]!r} has "
                         f"{' '.join(repr(c) for c in bad)})")
    return name


#: Checked by :func:`check_model_name` (the length too: a bound in every tool
#: definition would cost more than it tells).
ModelName = str


class ModelDefaults(BaseModel):
    """``<name>.json`` beside a model: what its card recommends (the request's own win)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    num_inference_steps: int | None = Field(None, ge=20, le=100)
    guidance_scale: float | None = Field(None, ge=1.0, le=20.0)
    sampler: SamplerName | None = None
    negative_prompt: NegativePrompt | None = None
    use_refinement: bool | None = None

    @field_validator("num_inference_steps", "guidance_scale", "use_refinement", mode="before")
    @classmethod
    def _json_types(cls, value: Any, info: Any) -> Any:
        if info.field_name == "use_refinement":
            if value is not None and not isinstance(value, bool):
                raise ValueError("use_refinement must be true or false")
        elif isinstance(value, bool | str):
            raise ValueError(f"{info.field_name} must be a number")
        return value


# What list_models returns (no docstrings: output schemas keep types and names).
class ModelInfo(BaseModel):
    name: str
    kind: Literal["checkpoint", "diffusers", "hub"]
    #: A1111's AutoV2 hash of a checkpoint once it has been loaded (null before, and for
    #: folders and hub ids).
    hash: str | None = None
    size_bytes: int | None = None
    loaded: bool | None = None
    default: bool = False
    defaults: dict[str, Any] | None = None


class StyleInfo(BaseModel):
    name: str
    description: str
    source: Literal["builtin", "user"]


class ModelList(BaseModel):
    models: list[ModelInfo]
    loras: list[LoraInfo]
    styles: list[StyleInfo]
    model_dirs: list[str]
    lora_dirs: list[str]
