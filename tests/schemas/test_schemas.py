"""Specification tests for sdxl_mcp.schemas (docs/TOOLS.md and "Result").

Pure pydantic: no GPU, no network, no files.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from pydantic import ValidationError

from sdxl_mcp.schemas import (
    QUALITY_PRESETS,
    SEED_MAX,
    GenerationRequest,
    GenerationResult,
    ImageInfo,
    RestGenerationRequest,
    StepCounts,
    Timings,
    describe_validation_error,
)

REQUEST_MODELS = [
    pytest.param(GenerationRequest, id="mcp"),
    pytest.param(RestGenerationRequest, id="rest"),
]


def _reject(model: type[GenerationRequest], fields: dict[str, Any]) -> str:
    """Build ``model`` from ``fields``, expect a ValidationError, return its description."""
    with pytest.raises(ValidationError) as info:
        model(**fields)
    return describe_validation_error(info.value)


# --------------------------------------------------------------------------- defaults

# docs/TOOLS.md table, MCP column.
MCP_DEFAULTS: dict[str, Any] = {
    "negative_prompt": None,
    "use_pexels": False,
    "use_generation": True,
    "use_refinement": True,
    "high_quality": True,
    "quality": None,
    "num_inference_steps": 50,
    "guidance_scale": 8.0,
    "width": 1024,
    "height": 1024,
    "seed": None,
    "refiner_mode": "ensemble",
    "high_noise_frac": 0.8,
    "refiner_steps": 30,
    "refiner_strength": 0.3,
}

# The source guide's REST body flips exactly these two.
REST_DEFAULTS: dict[str, Any] = {**MCP_DEFAULTS, "use_pexels": True, "use_generation": False}


@pytest.mark.parametrize(("field", "expected"), list(MCP_DEFAULTS.items()))
def test_mcp_request_default_matches_design_table(field: str, expected: Any) -> None:
    assert getattr(GenerationRequest(prompt="a cat"), field) == expected


@pytest.mark.parametrize(("field", "expected"), list(REST_DEFAULTS.items()))
def test_rest_request_default_matches_source_guide(field: str, expected: Any) -> None:
    assert getattr(RestGenerationRequest(prompt="a cat"), field) == expected


def test_rest_request_differs_from_mcp_only_in_source_switches() -> None:
    mcp = GenerationRequest(prompt="a cat").model_dump()
    rest = RestGenerationRequest(prompt="a cat").model_dump()
    differing = {k for k in mcp if mcp[k] != rest[k]}
    assert differing == {"use_pexels", "use_generation"}


def test_prompt_is_required() -> None:
    message = _reject(GenerationRequest, {})
    assert "prompt" in message


# --------------------------------------------------------------------------- bounds

_NAN = float("nan")
_INF = float("inf")

# (fields, field named in the message, bound named in the message or None)
REJECTED: list[Any] = [
    pytest.param({"prompt": ""}, "prompt", None, id="prompt-empty"),
    pytest.param({"prompt": "   "}, "prompt", None, id="prompt-blank"),
    pytest.param({"prompt": " \t\n "}, "prompt", None, id="prompt-whitespace-only"),
    pytest.param({"prompt": "a" * 501}, "prompt", "500", id="prompt-501"),
    pytest.param({"negative_prompt": "a" * 501}, "negative_prompt", "500", id="negative-501"),
    pytest.param({"num_inference_steps": 19}, "num_inference_steps", "20", id="steps-19"),
    pytest.param({"num_inference_steps": 101}, "num_inference_steps", "100", id="steps-101"),
    pytest.param({"guidance_scale": 0.99}, "guidance_scale", "1.0", id="cfg-0.99"),
    pytest.param({"guidance_scale": 20.01}, "guidance_scale", "20.0", id="cfg-20.01"),
    pytest.param({"width": 248}, "width", "256", id="width-248"),
    pytest.param({"width": 2056}, "width", "2048", id="width-2056"),
    pytest.param({"width": 1001}, "width", "8", id="width-not-multiple-of-8"),
    pytest.param({"height": 248}, "height", "256", id="height-248"),
    pytest.param({"height": 2056}, "height", "2048", id="height-2056"),
    pytest.param({"height": 1001}, "height", "8", id="height-not-multiple-of-8"),
    pytest.param({"seed": -1}, "seed", "0", id="seed-negative"),
    pytest.param({"seed": 2**32}, "seed", str(SEED_MAX), id="seed-2**32"),
    pytest.param({"high_noise_frac": 0.49}, "high_noise_frac", "0.5", id="frac-0.49"),
    pytest.param({"high_noise_frac": 0.96}, "high_noise_frac", "0.95", id="frac-0.96"),
    pytest.param({"refiner_steps": 0}, "refiner_steps", "1", id="refiner-steps-0"),
    pytest.param({"refiner_steps": 101}, "refiner_steps", "100", id="refiner-steps-101"),
    pytest.param({"refiner_strength": 0.04}, "refiner_strength", "0.05", id="strength-0.04"),
    pytest.param({"refiner_strength": 1.01}, "refiner_strength", "1.0", id="strength-1.01"),
    pytest.param({"refiner_mode": "foo"}, "refiner_mode", None, id="refiner-mode-foo"),
    pytest.param({"quality": "ultra"}, "quality", None, id="quality-ultra"),
    pytest.param({"bogus_field": 1}, "bogus_field", None, id="unknown-field"),
    pytest.param({"guidance_scale": _NAN}, "guidance_scale", None, id="cfg-nan"),
    pytest.param({"guidance_scale": _INF}, "guidance_scale", None, id="cfg-inf"),
    pytest.param({"guidance_scale": -_INF}, "guidance_scale", None, id="cfg-minus-inf"),
    pytest.param({"high_noise_frac": _NAN}, "high_noise_frac", None, id="frac-nan"),
    pytest.param({"refiner_strength": _INF}, "refiner_strength", None, id="strength-inf"),
    pytest.param({"prompt": "a\x00cat"}, "prompt", None, id="prompt-nul"),
    pytest.param({"negative_prompt": "blur\x00"}, "negative_prompt", None, id="negative-nul"),
    pytest.param({"prompt": 3}, "prompt", None, id="prompt-int"),
    pytest.param({"width": "big"}, "width", None, id="width-str"),
    pytest.param({"num_inference_steps": 30.5}, "num_inference_steps", None, id="steps-fraction"),
    pytest.param({"use_pexels": "maybe"}, "use_pexels", None, id="use-pexels-not-bool"),
]


@pytest.mark.parametrize("model", REQUEST_MODELS)
@pytest.mark.parametrize(("fields", "field", "bound"), REJECTED)
def test_out_of_bounds_input_is_rejected_naming_field_and_bound(
    model: type[GenerationRequest], fields: dict[str, Any], field: str, bound: str | None
) -> None:
    message = _reject(model, {"prompt": "a cat", **fields})
    assert field in message
    if bound is not None:
        assert bound in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param('{"prompt": "a cat", "guidance_scale": NaN}', id="NaN"),
        pytest.param('{"prompt": "a cat", "guidance_scale": Infinity}', id="Infinity"),
        pytest.param('{"prompt": "a cat", "guidance_scale": -Infinity}', id="-Infinity"),
    ],
)
def test_non_finite_json_float_is_rejected(payload: str) -> None:
    with pytest.raises(ValidationError) as info:
        GenerationRequest.model_validate_json(payload)
    assert "guidance_scale" in describe_validation_error(info.value)


def test_every_problem_is_described_when_several_fields_are_wrong() -> None:
    message = _reject(
        GenerationRequest, {"prompt": "a cat", "num_inference_steps": 19, "width": 2056}
    )
    assert "num_inference_steps" in message
    assert "width" in message


# (field, value): both ends of every range, which must come back unchanged.
ACCEPTED_EDGES: list[Any] = [
    ("prompt", "a"),
    ("prompt", "a" * 500),
    ("negative_prompt", "a"),
    ("negative_prompt", "a" * 500),
    ("num_inference_steps", 20),
    ("num_inference_steps", 100),
    ("guidance_scale", 1.0),
    ("guidance_scale", 20.0),
    ("width", 256),
    ("width", 2048),
    ("width", 1000),
    ("height", 256),
    ("height", 2048),
    ("height", 1000),
    ("seed", 0),
    ("seed", SEED_MAX),
    ("high_noise_frac", 0.5),
    ("high_noise_frac", 0.95),
    ("refiner_steps", 1),
    ("refiner_steps", 100),
    ("refiner_strength", 0.05),
    ("refiner_strength", 1.0),
    ("refiner_mode", "ensemble"),
    ("refiner_mode", "sequential"),
]


@pytest.mark.parametrize("model", REQUEST_MODELS)
@pytest.mark.parametrize(("field", "value"), ACCEPTED_EDGES)
def test_edge_value_is_accepted_unchanged(
    model: type[GenerationRequest], field: str, value: Any
) -> None:
    request = model(**{"prompt": "a cat", field: value})
    assert getattr(request, field) == value


def test_seed_max_is_two_to_the_32_minus_one() -> None:
    assert SEED_MAX == 2**32 - 1


# --------------------------------------------------------------------------- presets

# docs/TOOLS.md: high = refine, 50, 8.0; medium = refine, 30, 7.5; fast = no refine, 20, 7.5.
PRESET_TABLE: list[Any] = [
    pytest.param("fast", False, 20, 7.5, id="fast"),
    pytest.param("medium", True, 30, 7.5, id="medium"),
    pytest.param("high", True, 50, 8.0, id="high"),
]


@pytest.mark.parametrize(("quality", "refine", "steps", "cfg"), PRESET_TABLE)
def test_quality_preset_sets_refinement_steps_and_guidance(
    quality: str, refine: bool, steps: int, cfg: float
) -> None:
    request = GenerationRequest(prompt="a cat", quality=quality)
    assert request.quality == quality
    assert request.use_refinement is refine
    assert request.num_inference_steps == steps
    assert request.guidance_scale == cfg


@pytest.mark.parametrize(("quality", "refine", "steps", "cfg"), PRESET_TABLE)
def test_preset_table_in_code_matches_design(
    quality: str, refine: bool, steps: int, cfg: float
) -> None:
    assert QUALITY_PRESETS[quality] == {
        "use_refinement": refine,
        "num_inference_steps": steps,
        "guidance_scale": cfg,
    }


@pytest.mark.parametrize(
    ("quality", "field", "value"),
    [
        ("fast", "num_inference_steps", 40),
        ("fast", "use_refinement", True),
        ("fast", "guidance_scale", 12.0),
        ("high", "num_inference_steps", 25),
        ("high", "use_refinement", False),
        ("medium", "guidance_scale", 3.0),
    ],
)
def test_explicit_field_overrides_preset(quality: str, field: str, value: Any) -> None:
    request = GenerationRequest(**{"prompt": "a cat", "quality": quality, field: value})
    assert getattr(request, field) == value


def test_explicit_override_keeps_the_other_preset_fields() -> None:
    request = GenerationRequest(prompt="a cat", quality="fast", num_inference_steps=40)
    assert request.use_refinement is False
    assert request.guidance_scale == 7.5


@pytest.mark.parametrize(
    ("quality", "field", "expected"),
    [
        ("medium", "num_inference_steps", 30),
        ("fast", "use_refinement", False),
        ("high", "guidance_scale", 8.0),
        ("fast", "guidance_scale", 7.5),
    ],
)
def test_explicit_null_for_preset_field_uses_the_preset(
    quality: str, field: str, expected: Any
) -> None:
    request = GenerationRequest(**{"prompt": "a cat", "quality": quality, field: None})
    assert getattr(request, field) == expected


@pytest.mark.parametrize(
    "field",
    ["num_inference_steps", "guidance_scale", "use_refinement", "width", "refiner_mode"],
)
def test_explicit_null_without_preset_uses_the_default(field: str) -> None:
    request = GenerationRequest(**{"prompt": "a cat", field: None})
    assert getattr(request, field) == MCP_DEFAULTS[field]


def test_explicit_null_is_kept_for_nullable_fields() -> None:
    request = GenerationRequest(prompt="a cat", negative_prompt=None, quality=None, seed=None)
    assert (request.negative_prompt, request.quality, request.seed) == (None, None, None)


def test_preset_applies_to_rest_request_too() -> None:
    request = RestGenerationRequest(prompt="a cat", quality="fast")
    assert (request.use_refinement, request.num_inference_steps) == (False, 20)
    assert (request.use_pexels, request.use_generation) == (True, False)


def test_bounds_are_checked_when_a_preset_is_chosen() -> None:
    message = _reject(GenerationRequest, {"prompt": "a cat", "quality": "high", "width": 100})
    assert "width" in message


# --------------------------------------------------------------------------- prompt text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  a cat  ", "a cat"),
        ("\n\ta cat on a roof\n", "a cat on a roof"),
        ("a  cat", "a  cat"),
    ],
)
def test_prompt_surrounding_whitespace_is_stripped(raw: str, expected: str) -> None:
    assert GenerationRequest(prompt=raw).prompt == expected


def test_negative_prompt_surrounding_whitespace_is_stripped() -> None:
    assert GenerationRequest(prompt="a cat", negative_prompt=" blur ").negative_prompt == "blur"


def test_prompt_length_limit_applies_after_strip() -> None:
    padded = "   " + "a" * 500 + "   "
    assert GenerationRequest(prompt=padded).prompt == "a" * 500


@pytest.mark.parametrize(
    "prompt",
    [
        pytest.param("a cat 🐱 on a roof 🌙", id="emoji"),
        pytest.param("富士山と桜、夕焼け", id="cjk"),
        pytest.param("قطة على السطح", id="rtl-arabic"),
        pytest.param("חתול על הגג", id="rtl-hebrew"),
        pytest.param("Ünïcödé çafé", id="latin-diacritics"),
    ],
)
def test_unicode_prompt_is_accepted_as_given(prompt: str) -> None:
    assert GenerationRequest(prompt=prompt).prompt == prompt


def test_request_is_immutable() -> None:
    request = GenerationRequest(prompt="a cat")
    with pytest.raises(ValidationError):
        request.width = 512  # type: ignore[misc]


# --------------------------------------------------------------------------- result

SEED_RESULT_FIELDS = {
    "success",
    "image_url",
    "image",
    "message",
    "generation_time",
}
ADDED_RESULT_FIELDS = {
    "status",
    "job_id",
    "path",
    "metadata_path",
    "seed",
    "precision",
    "device",
    "refined",
    "refiner_error",
    "steps",
    "timings",
}
IMAGE_FIELDS = {"url", "source", "photographer", "photographer_url", "width", "height"}
STEP_FIELDS = {"base", "refiner"}
TIMING_FIELDS = {"queue_wait", "model_load", "base", "refiner", "decode", "save", "total"}


def _full_result() -> GenerationResult:
    return GenerationResult(
        success=True,
        status="succeeded",
        message="Image generated",
        job_id="job-1",
        image_url="/tmp/out/generated_image_1.png",
        image=ImageInfo(
            url="/tmp/out/generated_image_1.png", source="sdxl", width=1024, height=1024
        ),
        generation_time=12.5,
        path="/tmp/out/generated_image_1.png",
        metadata_path="/tmp/out/generated_image_1.json",
        seed=42,
        precision="fp16",
        device="cuda:0",
        refined=True,
        steps=StepCounts(base=40, refiner=10),
        timings=Timings(base=9.0, refiner=2.0, decode=0.5, save=0.1, total=12.5),
    )


def _result_json(result: GenerationResult) -> dict[str, Any]:
    return json.loads(result.model_dump_json())


@pytest.mark.parametrize("field", sorted(SEED_RESULT_FIELDS | ADDED_RESULT_FIELDS))
def test_result_json_has_field(field: str) -> None:
    assert field in _result_json(_full_result())


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        pytest.param("image", IMAGE_FIELDS, id="image"),
        pytest.param("steps", STEP_FIELDS, id="steps"),
        pytest.param("timings", TIMING_FIELDS, id="timings"),
    ],
)
def test_result_json_nested_object_has_fields(key: str, expected: set[str]) -> None:
    assert set(_result_json(_full_result())[key]) >= expected


def test_minimal_result_json_still_has_steps_and_timings() -> None:
    data = _result_json(GenerationResult(success=False, status="failed", message="boom"))
    assert data["steps"] == dict.fromkeys(STEP_FIELDS, 0)
    assert set(data["timings"]) == TIMING_FIELDS
    assert all(value == 0 for value in data["timings"].values())


def test_result_json_round_trips() -> None:
    result = _full_result()
    assert GenerationResult.model_validate_json(result.model_dump_json()) == result


def test_result_json_values_are_finite_numbers() -> None:
    data = _result_json(_full_result())
    assert math.isfinite(data["generation_time"])
    assert all(math.isfinite(v) for v in data["timings"].values())


@pytest.mark.parametrize("source", ["sdxl", "pexels"])
def test_image_source_accepts_design_values(source: str) -> None:
    assert ImageInfo(url="u", source=source, width=1, height=1).source == source


def test_image_source_rejects_unknown_value() -> None:
    with pytest.raises(ValidationError):
        ImageInfo(url="u", source="dalle", width=1, height=1)  # type: ignore[arg-type]


@pytest.mark.parametrize("status", ["succeeded", "running", "failed", "cancelled"])
def test_result_status_accepts_design_values(status: str) -> None:
    assert GenerationResult(success=False, status=status, message="m").status == status


def test_result_status_rejects_unknown_value() -> None:
    with pytest.raises(ValidationError):
        GenerationResult(success=False, status="done", message="m")  # type: ignore[arg-type]
