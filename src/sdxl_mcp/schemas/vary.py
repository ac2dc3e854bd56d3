"""The models of ``vary_image`` (MCP) and ``POST /api/media/vary-image``.

A variation re-runs the catalogued request of a generated image with new seeds
and any overrides. The overrides are the Request's own fields, optional here
(null or absent: the source's value); a field that is not one of them is an
error naming it (``extra="forbid"``). Their bounds mirror the Request's, and
the merged request is validated again as a ``GenerationRequest``
(``service.vary``), so the aspect_ratio/width rule and every bound apply to it.
docs/EDITING.md is the contract.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, field_validator, model_validator

from sdxl_mcp.schemas.fields import (
    REQUEST_CONFIG,
    SEED_MAX,
    AspectRatio,
    ImageReference,
    JobStatus,
    NegativePrompt,
    Prompt,
    QualityPreset,
    RefinerMode,
    _invisible,
    _no_control_chars,
    check_steps,
    finite,
    json_boolean,
    json_number,
    multiple_of_8,
    without_default_nulls,
)
from sdxl_mcp.schemas.generation import GenerationResult
from sdxl_mcp.schemas.loras import MAX_LORAS, LoraRef
from sdxl_mcp.schemas.prompt_syntax import check_prompt_syntax

__all__ = ["MAX_VARIATIONS", "OVERRIDES", "VariationsResult", "VaryRequest"]

MAX_VARIATIONS = 4
_KEEP = "omitted or null keeps the source's."


class VaryRequest(BaseModel):
    """Arguments of ``vary_image``: ``count`` new seeds of a generated image's request."""

    model_config = REQUEST_CONFIG

    image: ImageReference = Field(
        description="A generated image: image_id, image:// URI or path."
    )
    count: int = Field(1, ge=1, le=MAX_VARIATIONS, description="How many images.")
    seed: int | None = Field(
        None, ge=0, le=SEED_MAX,
        description="First seed (then seed+1, ...); omitted or null: random.",
    )
    # The overrides: the Request's fields, optional (the source's value when null).
    # Their meaning is generate_image's; the tool description says so once.
    prompt: Prompt | None = Field(None, description=f"A new prompt; {_KEEP}")
    negative_prompt: NegativePrompt | None = None
    use_refinement: bool | None = None
    high_quality: bool | None = None
    quality: QualityPreset | None = Field(None, description="A preset; fields given here win.")
    num_inference_steps: int | None = Field(None, ge=1, le=100, description="Below 20: draft.")
    guidance_scale: float | None = Field(None, ge=1.0, le=20.0)
    width: int | None = Field(None, ge=256, le=2048, json_schema_extra={"multipleOf": 8})
    height: int | None = Field(None, ge=256, le=2048, json_schema_extra={"multipleOf": 8})
    aspect_ratio: AspectRatio | None = Field(None, description="Not with width/height.")
    refiner_mode: RefinerMode | None = None
    high_noise_frac: float | None = Field(None, ge=0.5, le=0.95)
    refiner_steps: int | None = Field(None, ge=1, le=100)
    refiner_strength: float | None = Field(None, ge=0.05, le=1.0)
    loras: tuple[LoraRef, ...] | None = Field(
        None, max_length=MAX_LORAS, description="list_loras names; []: none.")
    # sampler and model are not overrides: a variation runs its source's (tool space).

    def overrides(self) -> dict[str, Any]:
        """The Request fields given (not null), as JSON values."""
        return {name: value for name, value in self.model_dump(mode="json").items()
                if name in OVERRIDES and value is not None}

    def seeds(self) -> list[int | None]:
        """One seed per variation: ``seed``, ``seed+1``, ... (wrapping past SEED_MAX to 0);
        None: picked at random."""
        if self.seed is None:
            return [None] * self.count
        return [(self.seed + i) % (SEED_MAX + 1) for i in range(self.count)]

    @model_validator(mode="before")
    @classmethod
    def _nulls_are_defaults(cls, data: Any) -> Any:
        return without_default_nulls(cls, data) if isinstance(data, dict) else data

    @model_validator(mode="after")
    def _consistent(self) -> VaryRequest:
        if self.aspect_ratio is not None and (self.width is not None or self.height is not None):
            raise ValueError(
                "aspect_ratio cannot be combined with width or height: give one or the other")
        return self

    _json_boolean = field_validator("use_refinement", "high_quality", mode="before")(json_boolean)

    _json_number = field_validator(
        "count", "seed", "num_inference_steps", "guidance_scale", "width", "height",
        "high_noise_frac", "refiner_steps", "refiner_strength", mode="before")(json_number)

    @field_validator("num_inference_steps")
    @classmethod
    def _draft_steps(cls, value: int | None, info: Any) -> int | None:
        # A draft source keeps few steps: the merged request decides without a preset.
        quality = info.data.get("quality")
        return value if quality is None else check_steps(value, quality)

    _finite = field_validator("guidance_scale", "high_noise_frac", "refiner_strength")(finite)

    _multiple_of_8 = field_validator("width", "height")(multiple_of_8)

    @field_validator("prompt", "negative_prompt")
    @classmethod
    def _prompt_text(cls, value: str | None, info: Any) -> str | None:
        value = _no_control_chars(value, info.field_name)
        if value is not None and value and _invisible(value):
            if info.field_name == "prompt":
                raise ValueError("prompt must not be empty (it has only invisible characters)")
            value = ""
        check_prompt_syntax(value, info.field_name)
        return value


#: The Request fields a variation may override (every optional field above).
OVERRIDES = frozenset(VaryRequest.model_fields) - {"image", "count", "seed"}


class VariationsResult(BaseModel):
    """What ``vary_image`` returns: one job, every variation's Result.

    ``status`` is the job's: ``running`` past MAX_WAIT_S (follow ``job_id`` with
    get_generation, which returns the first variation's Result once done);
    ``cancelled``/``failed`` keep the Results of the variations already saved.
    """

    success: bool
    status: JobStatus
    message: str
    job_id: str | None = None
    source_image_id: str | None = Field(None, description="The image the variations re-run.")
    results: list[GenerationResult] = Field(
        default_factory=list, description="One Result per finished variation, in seed order.")
    error_code: str | None = None
    retryable: bool | None = None
