"""Request and Result models shared by the MCP tools, the REST API and the CLI.

Bounds live here, in pydantic, so every transport rejects the same inputs with
the same words. Nothing is clamped or rounded: out-of-range input is an error
that names the field and the bound.
"""

from __future__ import annotations

import json
import math
import unicodedata
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

QualityPreset = Literal["high", "medium", "fast"]
RefinerMode = Literal["ensemble", "sequential"]
JobStatus = Literal["succeeded", "running", "failed", "cancelled"]

#: The source guide's quality levels. Fields set explicitly in a request win.
QUALITY_PRESETS: dict[str, dict[str, Any]] = {
    "high": {"use_refinement": True, "num_inference_steps": 50, "guidance_scale": 8.0},
    "medium": {"use_refinement": True, "num_inference_steps": 30, "guidance_scale": 7.5},
    "fast": {"use_refinement": False, "num_inference_steps": 20, "guidance_scale": 7.5},
}

SEED_MAX = 2**32 - 1

#: SDXL's training sizes (DESIGN.md "Aspect ratios"); 1.91:1 is the social card.
ASPECT_RATIOS: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024), "16:9": (1344, 768), "9:16": (768, 1344), "4:3": (1152, 896),
    "3:4": (896, 1152), "3:2": (1216, 832), "2:3": (832, 1216), "21:9": (1536, 640),
    "1.91:1": (1344, 704),
}
AspectRatio = Literal["1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3", "21:9", "1.91:1"]
_CONFLICT = "conflicts with width/height"

#: Published in the JSON Schema only (the validator below gives the clearer error).
_NO_NUL = Field(json_schema_extra={"pattern": r"^[^\x00]*$"})
Prompt = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500), _NO_NUL
]
NegativePrompt = Annotated[str, StringConstraints(strip_whitespace=True, max_length=500), _NO_NUL]


def _no_control_chars(value: str | None, field: str) -> str | None:
    if value is not None and "\x00" in value:
        raise ValueError(f"{field} must not contain NUL characters")
    return value


def _invisible(value: str) -> bool:
    """Only whitespace and format characters (zero-width space, joiners, direction marks)."""
    return all(ch.isspace() or unicodedata.category(ch) == "Cf" for ch in value)


_BOOL_FIELDS = ("use_pexels", "use_generation", "use_refinement", "high_quality", "reuse")
_NUMBER_FIELDS = (
    "num_inference_steps", "guidance_scale", "width", "height", "seed",
    "high_noise_frac", "refiner_steps", "refiner_strength",
)


# ------------------------------------------------------- null means the default
# The one rule for every transport: a JSON null for a field that has a default
# means "use the default" (the quality preset's, when one is chosen), so clients
# that send every argument can still let a preset decide. The model applies it
# when validating and publishes it in its JSON Schema, which is what the MCP
# tool's input schema and the OpenAPI document are made of.
def null_means_default(model: type[BaseModel]) -> frozenset[str]:
    """The fields of ``model`` where null means the default: every optional one."""
    return frozenset(name for name, info in model.model_fields.items() if not info.is_required())


def without_default_nulls(model: type[BaseModel], data: dict[str, Any]) -> dict[str, Any]:
    """``data`` less the nulls that mean "the default" (so the default applies)."""
    defaulted = null_means_default(model)
    return {k: v for k, v in data.items() if v is not None or k not in defaulted}


#: Fields a quality preset sets: their published default is null, so a client
#: that fills in every default does not override the preset it chose.
_PRESET_FIELDS = frozenset(key for preset in QUALITY_PRESETS.values() for key in preset)


def _publish_null_means_default(schema: dict[str, Any], model: type[Any]) -> None:
    """Mark the defaulted fields nullable in the model's JSON Schema."""
    properties = schema.get("properties", {})
    for name in null_means_default(model) & properties.keys():
        prop = properties[name]
        if not _allows_null(prop):
            outer = {k: prop.pop(k) for k in ("default", "description", "title") if k in prop}
            properties[name] = prop = {"anyOf": [prop, {"type": "null"}], **outer}
        if name in _PRESET_FIELDS and prop.get("default") is not None:
            default = prop.pop("default")
            prop["description"] = (f"{prop.get('description', '')} Default {json.dumps(default)} "
                                   "(or the quality preset's).").strip()
            prop["default"] = None


def _allows_null(prop: dict[str, Any]) -> bool:
    return prop.get("type") == "null" or any(_allows_null(p) for p in prop.get("anyOf", ()))


class GenerationRequest(BaseModel):
    """One image request (DESIGN.md "Request"); MCP defaults."""

    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        frozen=True,
        json_schema_extra=_publish_null_means_default,
    )

    prompt: Prompt = Field(description="What the image should show (1-500 characters).")
    negative_prompt: NegativePrompt | None = Field(
        None, description="What the image should avoid (up to 500 characters)."
    )
    use_pexels: bool = Field(False, description="Try a free Pexels stock photo first.")
    use_generation: bool = Field(
        True, description="Generate with SDXL when no stock photo was used."
    )
    use_refinement: bool = Field(True, description="Run the SDXL refiner stage.")
    high_quality: bool = Field(
        True,
        description="Decode in fp32 (VAE upcast); false lets a fp16-safe VAE decode "
        "in the engine's precision.",
    )
    quality: QualityPreset | None = Field(
        None,
        description="Preset: high = refine, 50 steps, cfg 8.0; medium = refine, 30, 7.5; "
        "fast = no refiner, 20, 7.5. Fields given explicitly override the preset.",
    )
    num_inference_steps: int = Field(50, ge=20, le=100, description="Base schedule length.")
    guidance_scale: float = Field(8.0, ge=1.0, le=20.0, description="Prompt adherence (CFG).")
    width: int = Field(
        1024, ge=256, le=2048, json_schema_extra={"multipleOf": 8},
        description="Width in pixels, multiple of 8.",
    )
    height: int = Field(
        1024, ge=256, le=2048, json_schema_extra={"multipleOf": 8},
        description="Height in pixels, multiple of 8.",
    )
    seed: int | None = Field(
        None, ge=0, le=SEED_MAX, description="Random seed; null picks one (it is returned)."
    )
    refiner_mode: RefinerMode = Field(
        "ensemble",
        description="ensemble: base stops at high_noise_frac and the refiner finishes the "
        "schedule; sequential: base runs fully, then refiner img2img.",
    )
    high_noise_frac: float = Field(
        0.8, ge=0.5, le=0.95, description="Ensemble mode: fraction of the schedule run by base."
    )
    refiner_steps: int = Field(
        30, ge=1, le=100, description="Sequential mode: refiner steps actually run."
    )
    refiner_strength: float = Field(
        0.3, ge=0.05, le=1.0, description="Sequential mode: img2img strength of the refiner."
    )
    aspect_ratio: AspectRatio | None = Field(
        None,
        description="An SDXL size instead of width/height: 1:1 1024x1024, 16:9 1344x768, "
        "9:16 768x1344, 4:3 1152x896, 3:4 896x1152, 3:2 1216x832, 2:3 832x1216, "
        "21:9 1536x640, 1.91:1 1344x704 (social cards).",
    )
    reuse: bool = Field(
        True,
        description="With an explicit seed, return the catalogued image of an identical "
        "request at once (reused=true); false always generates.",
    )

    @field_validator("aspect_ratio", mode="before")
    @classmethod
    def _aspect_alone(cls, value: Any) -> Any:
        if isinstance(value, tuple) and value[:1] == (_CONFLICT,):
            raise ValueError(
                "aspect_ratio cannot be combined with width or height: give one or the other"
            )
        return value

    @field_validator(*_BOOL_FIELDS, mode="before")
    @classmethod
    def _json_boolean(cls, value: Any, info: Any) -> Any:
        # JSON Schema "boolean": true or false, not "true", "off" or 1.
        if value is not None and not isinstance(value, bool):
            raise ValueError(
                f"{info.field_name} must be true or false (got {type(value).__name__} "
                f"{_short(value)})"
            )
        return value

    @field_validator(*_NUMBER_FIELDS, mode="before")
    @classmethod
    def _json_number(cls, value: Any, info: Any) -> Any:
        # JSON Schema "number"/"integer": never a boolean or a string of digits.
        if isinstance(value, bool | str | bytes):
            raise ValueError(
                f"{info.field_name} must be a number (got {type(value).__name__} "
                f"{_short(value)})"
            )
        return value

    @field_validator("prompt", "negative_prompt")
    @classmethod
    def _reject_nul(cls, value: str | None, info: Any) -> str | None:
        value = _no_control_chars(value, info.field_name)
        if value is not None and value and _invisible(value):
            if info.field_name == "prompt":
                raise ValueError("prompt must not be empty (it has only invisible characters)")
            value = ""
        if info.field_name == "negative_prompt" and value == "":
            return None  # a blank negative prompt means none
        return value

    @field_validator("width", "height")
    @classmethod
    def _multiple_of_8(cls, value: int, info: Any) -> int:
        if value % 8:
            raise ValueError(f"{info.field_name} must be a multiple of 8 (got {value})")
        return value

    @field_validator("guidance_scale", "high_noise_frac", "refiner_strength")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

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
        if isinstance(preset, str) and preset in QUALITY_PRESETS:
            return {**QUALITY_PRESETS[preset], **given}
        return given


class RestGenerationRequest(GenerationRequest):
    """The source guide's REST body: stock first, generation opt-in."""

    use_pexels: bool = Field(True, description="Try a free Pexels stock photo first.")
    use_generation: bool = Field(
        False, description="Generate with SDXL when no stock photo was used."
    )


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
    """The Result (DESIGN.md): the seed's fields plus what an agent needs."""

    success: bool
    status: JobStatus
    message: str
    job_id: str | None = None
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
    error_code: str | None = None
    retryable: bool | None = None
    # Pexels fields (stock results)
    pexels_photo_id: int | None = None
    pexels_page_url: str | None = None
    attribution: str | None = None


_BOUND_WORDS = {
    "greater_than_equal": "≥",
    "less_than_equal": "≤",
    "greater_than": ">",
    "less_than": "<",
}


def describe_validation_error(exc: ValidationError) -> str:
    """One sentence per problem, each naming the field and the bound."""
    parts: list[str] = []
    for err in exc.errors():
        loc = ".".join(_loc_part(p) for p in err.get("loc", ())) or "request"
        kind = err.get("type", "")
        ctx = err.get("ctx") or {}
        got = err.get("input")
        got_text = "" if isinstance(got, dict) else f" (got {_short(got)})"
        if kind in _BOUND_WORDS:
            bound = next(iter(ctx.values()), "?")
            parts.append(f"{loc} must be {_BOUND_WORDS[kind]} {bound}{got_text}")
        elif kind == "string_too_long":
            parts.append(f"{loc} must be at most {ctx.get('max_length')} characters")
        elif kind == "string_too_short":
            parts.append(f"{loc} must not be empty")
        elif kind == "json_invalid":
            parts.append(f"the body is not valid JSON ({ctx.get('error', 'parse error')})")
        elif kind == "model_type":
            parts.append(f"{loc} must be a JSON object")
        elif kind == "missing":
            parts.append(f"{loc} is required")
        elif kind == "extra_forbidden":
            parts.append(f"{loc} is not a known field")
        elif kind == "literal_error":
            parts.append(f"{loc} must be one of {ctx.get('expected')}{got_text}")
        else:
            msg = str(err.get("msg", "is invalid")).removeprefix("Value error, ")
            if msg.startswith(loc):
                parts.append(msg)
            else:
                parts.append(f"{loc}: {msg}{got_text}")
    return "Invalid request: " + "; ".join(parts) + "."


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _loc_part(part: Any) -> str:
    """A field name as is; anything else a client sent as a key, quoted and cut short."""
    if isinstance(part, int) or (isinstance(part, str) and part.isidentifier() and len(part) <= 40):
        return str(part)
    return _short(part)


# ------------------------------------------------------------------ stock photos
Orientation = Literal["landscape", "portrait", "square"]
PhotoSize = Literal["large", "medium", "small"]


class StockSearchRequest(BaseModel):
    """Arguments of ``search_stock_image`` (Pexels /v1/search)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    query: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)
    ] = Field(description="What to search for, e.g. 'team meeting in a bright office'.")
    orientation: Orientation | None = Field(None, description="landscape, portrait or square.")
    size: PhotoSize | None = Field(
        None, description="Minimum photo size: large (24 MP), medium (12 MP) or small (4 MP)."
    )
    color: Annotated[str, StringConstraints(pattern=r"^(#?[0-9a-fA-F]{6}|[a-z]{3,10})$")] | None = (
        Field(None, description="A color name (red, blue, ...) or a hex code like #ffffff.")
    )
    per_page: int = Field(5, ge=1, le=80, description="Results per page (1-80).")
    page: int = Field(1, ge=1, le=1000, description="Page number (from 1).")
    download: bool = Field(True, description="Save the best match locally and return its path.")

    @field_validator("query")
    @classmethod
    def _reject_nul(cls, value: str) -> str:
        return _no_control_chars(value, "query") or value


class PexelsPhoto(BaseModel):
    id: int
    url: str = Field(description="The photo's page on pexels.com.")
    photographer: str
    photographer_url: str
    alt: str = ""
    width: int
    height: int
    avg_color: str | None = None
    src: dict[str, str] = Field(default_factory=dict)


class DownloadedPhoto(BaseModel):
    photo_id: int
    image_id: str | None = None
    path: str
    source_url: str
    attribution: str
    cached: bool = False
    width: int | None = Field(None, description="Width in pixels of the saved file.")
    height: int | None = Field(None, description="Height in pixels of the saved file.")


class StockSearchResult(BaseModel):
    query: str
    page: int
    per_page: int
    total_results: int
    photos: list[PexelsPhoto]
    downloaded: DownloadedPhoto | None = None
    rate_limit_remaining: int | None = None
    cached: bool = False


# ------------------------------------------------------------------ the library
class FindImagesRequest(BaseModel):
    """Arguments of ``find_images``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    query: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] | None = (
        Field(None, description="Words to search prompts, alt text and photographers for; "
              "null lists the newest first.")
    )
    source: Literal["sdxl", "pexels"] | None = Field(None, description="Only this source.")
    limit: int = Field(10, ge=1, le=50, description="Images per page (1-50).")
    offset: int = Field(0, ge=0, le=100_000, description="Images to skip (paging).")

    @field_validator("limit", "offset", mode="before")
    @classmethod
    def _json_integer(cls, value: Any, info: Any) -> Any:
        if isinstance(value, bool | str | bytes):
            raise ValueError(f"{info.field_name} must be a number (got {_short(value)})")
        return value


class LibraryImage(BaseModel):
    image_id: str
    uri: str
    path: str
    source: Literal["sdxl", "pexels"]
    prompt: str
    alt: str | None = None
    width: int
    height: int
    seed: int | None = None
    created: str


class FindImagesResult(BaseModel):
    total: int
    images: list[LibraryImage]


# ------------------------------------------------------------------ status
EngineStateName = Literal["not_loaded", "loading", "ready", "failed"]


class EngineStatus(BaseModel):
    """Engine state for ``gpu_status``; backends fill what they know.

    ``state`` is always set; the precision fields are the load plan's decision
    (known once the models load, or when a status is asked for ``plan=True``).
    """

    model_config = ConfigDict(extra="forbid")

    state: EngineStateName
    error: str | None = None
    backend: Literal["local", "ray"] = "local"
    base_model: str | None = None
    refiner_model: str | None = None
    refinement: Literal["ENABLED", "DISABLED"] | None = None
    device: str | None = None
    dtype: str | None = None
    precision_reason: str | None = None
    precision_warning: str | None = None
    parameters: int | None = None
    weights_gb: float | None = None
    load_time_s: float | None = None
    cuda_available: bool | None = None
    # The Ray backend's view of its replicas.
    ray_address: str | None = None
    replicas_wanted: int | None = None
    replica_states: dict[str, Any] | None = None
    replicas: list[dict[str, Any]] | None = None


class GpuStatus(BaseModel):
    """What ``gpu_status`` reports; works with no GPU and no NVML."""

    cuda_available: bool | None = None
    devices: list[dict[str, Any]] = Field(default_factory=list)
    precision: dict[str, Any] = Field(default_factory=dict)
    engine: EngineStatus
    queue: dict[str, Any] = Field(default_factory=dict)
    last_generation_time: float | None = None
    pexels: dict[str, Any] = Field(default_factory=dict)
