"""Shared pieces of the request models: presets, aspect ratios, prompt and image
reference types, the one configuration and "null means the default" rule, and the
one-sentence wording of validation errors.

Bounds live in pydantic, so every transport rejects the same inputs with the same
words. Nothing is clamped or rounded: out-of-range input is an error that names
the field and the bound.
"""

from __future__ import annotations

import json
import math
import unicodedata
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
)

from sdxl_mcp.schemas.loras import check_loras
from sdxl_mcp.schemas.prompt_syntax import check_prompt_syntax

QualityPreset = Literal["high", "medium", "fast", "draft"]
RefinerMode = Literal["ensemble", "sequential"]
#: Samplers by A1111's names (``engine.samplers`` maps each to a diffusers scheduler).
SamplerName = Literal["Euler", "Euler a", "DPM++ 2M", "DPM++ 2M Karras", "DPM++ 2M SDE Karras",
                      "DPM++ SDE Karras", "DDIM", "UniPC", "Heun", "LMS"]
SAMPLER_NAMES: tuple[str, ...] = get_args(SamplerName)
#: The sampler a request without one runs (the scheduler SDXL ships with).
DEFAULT_SAMPLER = "Euler"
JobStatus = Literal["succeeded", "running", "failed", "cancelled"]

#: The source guide's quality levels. Fields set explicitly in a request win.
QUALITY_PRESETS: dict[str, dict[str, Any]] = {
    "high": {"use_refinement": True, "num_inference_steps": 50, "guidance_scale": 8.0},
    "medium": {"use_refinement": True, "num_inference_steps": 30, "guidance_scale": 7.5},
    "fast": {"use_refinement": False, "num_inference_steps": 20, "guidance_scale": 7.5},
    # None: the server's SDXL_MCP_DRAFT_STEPS / _GUIDANCE, filled in by the service
    # (``library.loras.resolve_draft``); the keys are here so a preset change drops them.
    "draft": {"use_refinement": False, "num_inference_steps": None, "guidance_scale": None},
}
#: The fewest steps outside quality "draft" (the seed's bound).
MIN_STEPS = 20


def infotext_sampler(name: str | None) -> tuple[str, str | None]:
    """(Sampler, Schedule type) as A1111 1.9+ writes them: Karras is a schedule there."""
    name = name or DEFAULT_SAMPLER
    if name.endswith(" Karras"):
        return name.removesuffix(" Karras"), "Karras"
    return name, None


def check_sampler(sampler: str | None, quality: Any) -> str | None:
    """Draft mode runs its own scheduler, so a sampler with it is a mistake to name."""
    if sampler is not None and quality == "draft":
        raise ValueError("sampler cannot be combined with quality \"draft\" (it runs "
                         "SDXL_MCP_DRAFT_SCHEDULER); leave sampler out or pick another quality")
    return sampler


def check_steps(steps: int | None, quality: Any) -> int | None:
    """Steps below MIN_STEPS only with quality "draft" (ValueError naming the field)."""
    if steps is not None and steps < MIN_STEPS and quality != "draft":
        raise ValueError(f"num_inference_steps must be ≥ {MIN_STEPS} (got {steps}); fewer "
                         'steps only with quality "draft"')
    return steps

SEED_MAX = 2**32 - 1

#: SDXL's training sizes (docs/LIBRARY.md); 1.91:1 is the social card.
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


def prompt_text(value: str | None, field: str) -> str | None:
    """A prompt field checked: no NUL; a prompt of only invisible characters is empty
    (an error); a blank negative prompt means none; A1111 syntax well-formed
    (``sdxl_mcp.schemas.prompt_syntax``: balanced brackets, weights 0-2); a prompt's
    ``<lora:name:weight>`` tags well-formed (``schemas.loras.check_loras``)."""
    value = _no_control_chars(value, field)
    if value is not None and value and _invisible(value):
        if field == "prompt":
            raise ValueError("prompt must not be empty (it has only invisible characters)")
        value = ""
    if field == "negative_prompt" and value == "":
        return None  # a blank negative prompt means none
    check_prompt_syntax(value, field)  # A1111 emphasis and BREAK, read by the engine
    if field == "prompt" and value:
        check_loras(value, [], "prompt")  # its <lora:name:weight> tags
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
        # Only a model with a quality preset has a preset to defer to.
        if (name in _PRESET_FIELDS and "quality" in model.model_fields
                and prop.get("default") is not None):
            default = prop.pop("default")
            prop["description"] = (f"{prop.get('description', '')} Default {json.dumps(default)} "
                                   "(or quality's).").strip()
            prop["default"] = None


#: Every request model's configuration: unknown fields and NaN are errors, a
#: request never changes once validated, and defaulted fields are published as
#: nullable (a JSON null means the default).
REQUEST_CONFIG = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False,
                            json_schema_extra=_publish_null_means_default)
#: A data URI carries at most this many bytes once decoded (docs/LIBRARY.md).
MAX_UPLOAD_BYTES = 4 * 1024 * 1024
#: The longest data URI that can hold MAX_UPLOAD_BYTES (base64 plus its header).
MAX_DATA_URI_CHARS = (MAX_UPLOAD_BYTES + 2) // 3 * 4 + 64
#: Any other image reference (an id, a path, a URL) is at most this long.
MAX_REFERENCE_CHARS = 4096


def _reference_length(value: Any) -> Any:
    """Say which limit a long reference breaks (a data URI's is 4 MB of image)."""
    if not isinstance(value, str):
        return value
    if value.lstrip()[:5].lower() == "data:":
        if len(value.strip()) > MAX_DATA_URI_CHARS:
            raise ValueError(f"a data URI holds at most {MAX_UPLOAD_BYTES // 2**20} MB of image; "
                             "pass a URL or a smaller image")
    elif len(value.strip()) > MAX_REFERENCE_CHARS:
        raise ValueError(f"an image_id, path or URL is at most {MAX_REFERENCE_CHARS} characters")
    return value


#: An image argument: an image_id, an ``image://`` URI or an allowed absolute path
#: (``library.resolver``), an http(s) URL or a data URI (``library.outside_images``).
#: The lengths are checked first, so the error names the limit that applies.
ImageReference = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1),
    # maxLength is checked (_reference_length) but not published: the number would only
    # cost tool-definition space.
    Field(json_schema_extra={"pattern": r"^[^\x00]*$"}),
    BeforeValidator(_reference_length),
]


# ----------------------------------------------------------- shared validators
# Each request model applies them with ``field_validator(...)(json_number)``.
def json_boolean(value: Any, info: ValidationInfo) -> Any:
    """JSON Schema "boolean": true or false, not "true", "off" or 1 (null: the default)."""
    if value is not None and not isinstance(value, bool):
        raise ValueError(f"{info.field_name} must be true or false "
                         f"(got {type(value).__name__} {_short(value)})")
    return value


def json_number(value: Any, info: ValidationInfo) -> Any:
    """JSON Schema "number"/"integer": never a boolean or a string of digits."""
    if isinstance(value, bool | str | bytes):
        raise ValueError(f"{info.field_name} must be a number "
                         f"(got {type(value).__name__} {_short(value)})")
    return value


def finite(value: float | None) -> float | None:
    if value is not None and not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


def multiple_of_8(value: int | None, info: ValidationInfo) -> int | None:
    if value is not None and value % 8:
        raise ValueError(f"{info.field_name} must be a multiple of 8 (got {value})")
    return value


def prompt_field(value: str | None, info: ValidationInfo) -> str | None:
    return prompt_text(value, info.field_name or "prompt")


def _allows_null(prop: dict[str, Any]) -> bool:
    return prop.get("type") == "null" or any(_allows_null(p) for p in prop.get("anyOf", ()))



_BOUND_WORDS = {
    "greater_than_equal": "≥",
    "less_than_equal": "≤",
    "greater_than": ">",
    "less_than": "<",
}


#: The sentence for each other kind of error pydantic reports.
_MESSAGES = {
    "string_too_long": "{loc} must be at most {max_length} characters",
    "too_long": "{loc} must have at most {max_length} items",
    "string_too_short": "{loc} must not be empty",
    "json_invalid": "the body is not valid JSON ({error})",
    "model_type": "{loc} must be a JSON object",
    "missing": "{loc} is required",
    "extra_forbidden": "{loc} is not a known field",
    "literal_error": "{loc} must be one of {expected}{got}",
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
        template = _MESSAGES.get(kind)
        if kind in _BOUND_WORDS:
            bound = next(iter(ctx.values()), "?")
            parts.append(f"{loc} must be {_BOUND_WORDS[kind]} {bound}{got_text}")
        elif template is not None:
            parts.append(template.format(loc=loc, got=got_text, max_length=ctx.get("max_length"),
                                         expected=ctx.get("expected"),
                                         error=ctx.get("error", "parse error")))
        else:
            msg = str(err.get("msg", "is invalid")).removeprefix("Value error, ")
            parts.append(msg if msg.startswith(loc) else f"{loc}: {msg}{got_text}")
    return "Invalid request: " + "; ".join(parts) + "."


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _loc_part(part: Any) -> str:
    """A field name as is; anything else a client sent as a key, quoted and cut short."""
    if isinstance(part, int) or (isinstance(part, str) and part.isidentifier() and len(part) <= 40):
        return str(part)
    return _short(part)
