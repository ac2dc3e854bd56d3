"""The generation Request (MCP defaults; REST's guide defaults) and the Result."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    Field,
    field_validator,
    model_validator,
)

from sdxl_mcp.schemas.fields import (
    _BOOL_FIELDS,
    _CONFLICT,
    _NUMBER_FIELDS,
    ASPECT_RATIOS,
    QUALITY_PRESETS,
    REQUEST_CONFIG,
    SEED_MAX,
    AspectRatio,
    JobStatus,
    NegativePrompt,
    Prompt,
    QualityPreset,
    RefinerMode,
    SamplerName,
    check_sampler,
    check_steps,
    finite,
    json_boolean,
    json_number,
    multiple_of_8,
    prompt_field,
    without_default_nulls,
)
from sdxl_mcp.schemas.loras import MAX_LORAS, LoraRef, check_loras, skip_refiner_for_loras
from sdxl_mcp.schemas.models import ModelName, check_model_name


class GenerationRequest(BaseModel):
    """One image request (docs/TOOLS.md); MCP defaults."""

    model_config = REQUEST_CONFIG

    prompt: Prompt = Field(
        description="Subject first, then style and lighting; read whole. A1111 (word:1.3), "
        "[word], BREAK; \\( for a literal bracket."
    )
    negative_prompt: NegativePrompt | None = Field(
        None, description="What to avoid, e.g. 'blurry, text, watermark'."
    )
    use_pexels: bool = Field(False, description="Try a Pexels stock photo first.")
    use_generation: bool = Field(True, description="Generate if no stock photo was used.")
    use_refinement: bool = Field(True, description="Run the refiner stage.")
    high_quality: bool = Field(True, description="Decode in fp32 (false: faster fp16).")
    quality: QualityPreset | None = Field(
        None,
        description="high: 50 steps, cfg 8; medium: 30, 7.5; fast: 20, 7.5, no refiner; "
        "draft: 4-step preview (distilled LoRA). Given fields win.",
    )
    num_inference_steps: int = Field(
        50, ge=1, le=100, description="20-100; below 20 only in draft."
    )
    guidance_scale: float = Field(8.0, ge=1.0, le=20.0, description="Prompt adherence (CFG).")
    width: int = Field(
        1024, ge=256, le=2048, json_schema_extra={"multipleOf": 8}, description="Pixels."
    )
    height: int = Field(
        1024, ge=256, le=2048, json_schema_extra={"multipleOf": 8}, description="Pixels."
    )
    seed: int | None = Field(
        None, ge=0, le=SEED_MAX,
        description="Null: random (returned); same seed, same image.",
    )
    refiner_mode: RefinerMode = Field(
        "ensemble", description="ensemble: refiner ends base's schedule; sequential: img2img."
    )
    high_noise_frac: float = Field(
        0.8, ge=0.5, le=0.95, description="Ensemble: base's share of the steps."
    )
    refiner_steps: int = Field(30, ge=1, le=100, description="Sequential: refiner steps.")
    refiner_strength: float = Field(
        0.3, ge=0.05, le=1.0, description="Sequential: refiner strength."
    )
    aspect_ratio: AspectRatio | None = Field(
        None,
        description="An SDXL size instead of width/height; 1.91:1 is a social card.",
    )
    reuse: bool = Field(
        True, description="With a seed: the earlier identical image; false regenerates."
    )
    loras: tuple[LoraRef, ...] = Field(
        (), max_length=MAX_LORAS,
        description="Up to 4 list_loras names; skip the refiner unless use_refinement.",
    )
    sampler: SamplerName | None = Field(None, description="Omitted: Euler.")
    model: ModelName | None = Field(None, description="From list_models.")

    _model_name = field_validator("model")(check_model_name)

    @field_validator("sampler")
    @classmethod
    def _sampler_not_in_draft(cls, value: str | None, info: Any) -> str | None:
        return check_sampler(value, info.data.get("quality"))

    @field_validator("aspect_ratio", mode="before")
    @classmethod
    def _aspect_alone(cls, value: Any) -> Any:
        if isinstance(value, tuple) and value[:1] == (_CONFLICT,):
            raise ValueError(
                "aspect_ratio cannot be combined with width or height: give one or the other"
            )
        return value

    _json_boolean = field_validator(*_BOOL_FIELDS, mode="before")(json_boolean)

    _json_number = field_validator(*_NUMBER_FIELDS, mode="before")(json_number)

    _prompt_text = field_validator("prompt", "negative_prompt")(prompt_field)

    @field_validator("num_inference_steps")
    @classmethod
    def _draft_steps(cls, value: int, info: Any) -> int:
        check_steps(value, info.data.get("quality"))
        return value

    @field_validator("loras")
    @classmethod
    def _loras_once(cls, value: tuple[LoraRef, ...], info: Any) -> tuple[LoraRef, ...]:
        check_loras(info.data.get("prompt") or "", value)
        return value

    _multiple_of_8 = field_validator("width", "height")(multiple_of_8)

    _finite = field_validator("guidance_scale", "high_noise_frac", "refiner_strength")(finite)

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        """Fill preset values for the fields the caller did not give (null = not given)."""
        if not isinstance(data, dict):
            return data
        given = without_default_nulls(cls, data)
        ratio = given.get("aspect_ratio")
        if ratio is not None and ("width" in given or "height" in given):
            given["aspect_ratio"] = (_CONFLICT, ratio)  # reported by _aspect_alone
        elif isinstance(ratio, str) and ratio in ASPECT_RATIOS:
            given["width"], given["height"] = ASPECT_RATIOS[ratio]
        preset = given.get("quality")
        data = given
        if isinstance(preset, str) and preset in QUALITY_PRESETS:
            values = {k: v for k, v in QUALITY_PRESETS[preset].items() if v is not None}
            data = {**values, **given}
        return skip_refiner_for_loras(data, given)


class RestGenerationRequest(GenerationRequest):
    """The source guide's REST body: stock first, generation opt-in."""

    use_pexels: bool = Field(True, description="Try a Pexels stock photo first.")
    use_generation: bool = Field(False, description="Generate if no stock photo was used.")


class ImageInfo(BaseModel):
    url: str
    source: Literal["sdxl", "pexels"]
    photographer: str | None = None
    photographer_url: str | None = None
    width: int
    height: int


class StepCounts(BaseModel):
    base: int = 0
    refiner: int = 0


class Timings(BaseModel):
    """Seconds spent in each phase of one request."""

    queue_wait: float = Field(0.0, description="Waiting for a free generation slot.")
    model_load: float = Field(
        0.0,
        description="Waiting for the engine: importing torch/diffusers and loading the "
        "models (0 once they are resident).",
    )
    base: float = 0.0
    refiner: float = 0.0
    decode: float = 0.0
    save: float = 0.0
    total: float = 0.0


class GenerationResult(BaseModel):
    """The Result (docs/TOOLS.md): the seed's fields plus what an agent needs."""

    success: bool
    status: JobStatus
    message: str
    job_id: str | None = None
    #: A running job: seconds of denoising left, estimated once a few steps ran (``service.eta``).
    eta_s: float | None = None
    image_url: str | None = None
    image: ImageInfo | None = None
    generation_time: float = 0.0
    path: str | None = None
    metadata_path: str | None = None
    seed: int | None = None
    precision: str | None = None
    device: str | None = None
    refined: bool | None = None
    refiner_error: str | None = None
    steps: StepCounts = Field(default_factory=StepCounts)
    timings: Timings = Field(default_factory=Timings)
    image_id: str | None = Field(None, description="The library id (image://{image_id}).")
    reused: bool = Field(
        False, description="True when the catalogued image of an identical request was returned."
    )
    cached: bool = Field(False, description="True when a stock photo was already downloaded.")
    prompt_tokens: int | None = Field(
        None, description="CLIP tokens in the prompt as encoded (without BOS/EOS); prompts "
        "over 75 are encoded in 75-token chunks, nothing is dropped.")
    negative_prompt_tokens: int | None = Field(
        None, description="CLIP tokens in the negative prompt as encoded (0 for none).")
    error_code: str | None = None
    retryable: bool | None = None
    # Pexels fields (stock results)
    pexels_photo_id: int | None = None
    pexels_page_url: str | None = None
    attribution: str | None = None
    # Edits (edit_image): the source and the mask this image was made from.
    source_image_id: str | None = None
    mask_image_id: str | None = None
    # What made the pixels: the base model's name and A1111 hash (a single-file
    # checkpoint's), and the sampler.
    model: str | None = None
    model_hash: str | None = None
    sampler: str | None = None
