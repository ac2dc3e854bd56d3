"""The model of ``edit_image`` (MCP), ``POST /api/media/edit-image`` and ``sdxl-mcp edit``.

Under the same rules as the other request models: bounds live here (strength
0.05-1.0), nothing is clamped, a JSON null for a defaulted field means the
default, and a bad value is an error naming the field. docs/EDITING.md
describes it; ``image`` and ``mask`` are read only through the
resolver (``library.resolver``), by the service.
"""

from __future__ import annotations

from typing import Any

from pydantic import (
    BaseModel,
    Field,
    field_validator,
    model_validator,
)

from sdxl_mcp.schemas.fields import (
    REQUEST_CONFIG,
    SEED_MAX,
    ImageReference,
    NegativePrompt,
    Prompt,
    SamplerName,
    finite,
    json_boolean,
    json_number,
    prompt_field,
    without_default_nulls,
)
from sdxl_mcp.schemas.loras import MAX_LORAS, LoraRef, check_loras, skip_refiner_for_loras
from sdxl_mcp.schemas.models import ModelName, check_model_name

__all__ = ["MAX_STRENGTH", "MIN_STRENGTH", "EditRequest"]

MIN_STRENGTH, MAX_STRENGTH = 0.05, 1.0


class EditRequest(BaseModel):
    """Arguments of ``edit_image``: image-to-image, or inpainting with a mask."""

    model_config = REQUEST_CONFIG

    image: ImageReference = Field(
        description="image_id, image:// URI, path, http(s) URL or data: URI."
    )
    prompt: Prompt = Field(description="What the result should show.")
    mask: ImageReference | None = Field(
        None, description="Inpainting mask like image: white = repaint, black = keep.",
    )
    strength: float = Field(
        0.6, ge=MIN_STRENGTH, le=MAX_STRENGTH,
        description="0.05 barely changes, 1.0 repaints.",
    )
    negative_prompt: NegativePrompt | None = Field(
        None, description="What to avoid."
    )
    seed: int | None = Field(
        None, ge=0, le=SEED_MAX, description="Omitted or null: random (returned)."
    )
    num_inference_steps: int = Field(
        30, ge=1, le=100, description="Schedule; about strength x this many run."
    )
    guidance_scale: float = Field(7.5, ge=1.0, le=20.0, description="Prompt adherence (CFG).")
    use_refinement: bool = Field(True, description="Refine after the edit.")
    loras: tuple[LoraRef, ...] = Field(
        (), max_length=MAX_LORAS,
        description="Up to 4 list_loras names; skip the refiner unless use_refinement.",
    )
    sampler: SamplerName | None = Field(None, description="Omitted: Euler.")
    model: ModelName | None = Field(None, description="From list_models.")

    _model_name = field_validator("model")(check_model_name)

    @model_validator(mode="before")
    @classmethod
    def _nulls_are_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        given = without_default_nulls(cls, data)
        return skip_refiner_for_loras(given, given)

    @field_validator("loras")
    @classmethod
    def _loras_once(cls, value: tuple[LoraRef, ...], info: Any) -> tuple[LoraRef, ...]:
        check_loras(info.data.get("prompt") or "", value)
        return value

    _json_boolean = field_validator("use_refinement", mode="before")(json_boolean)

    _json_number = field_validator(
        "strength", "seed", "num_inference_steps", "guidance_scale", mode="before")(json_number)

    _finite = field_validator("strength", "guidance_scale")(finite)

    _prompt_text = field_validator("prompt", "negative_prompt")(prompt_field)

    @field_validator("image", "mask")
    @classmethod
    def _no_nul(cls, value: str | None, info: Any) -> str | None:
        if value is not None and "\x00" in value:
            raise ValueError(f"{info.field_name} must not contain NUL characters")
        return value
