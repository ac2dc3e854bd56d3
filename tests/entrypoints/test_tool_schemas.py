"""Compact tool definitions: what `tools/list` costs an agent, and that it still validates."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import jsonschema
import pytest
from mcp import Client
from pydantic import BaseModel, Field

from sdxl_mcp.entrypoints.mcp.schema import (
    TOOLS_LIST_BUDGET,
    compact_input,
    compact_output,
    tools_list_size,
)
from sdxl_mcp.entrypoints.mcp.server import build_server
from sdxl_mcp.schemas import GenerationRequest, GenerationResult, GpuStatus, VariationsResult
from sdxl_mcp.service.facade import ImageService
from tests.fakes import GatedBackend, RecordingBackend
from tests.helpers_mcp import TOOLS


class Inner(BaseModel):
    """Developer prose."""

    size: int = Field(0, description="Pixels.")


class Outer(BaseModel):
    title: str = Field(description="A field called title is a name, not a keyword.")
    kind: str | None = Field(None, description="Optional.")
    mode: str = "a"
    one: Inner
    twice_a: Inner | None = None
    twice_b: list[Inner] = []


def walk(node: Any) -> list[dict[str, Any]]:
    """Every schema object in ``node``."""
    if isinstance(node, list):
        return [found for item in node for found in walk(item)]
    if not isinstance(node, dict):
        return []
    return [node] + [found for value in node.values() for found in walk(value)]


# ------------------------------------------------------------------ inputs
def test_input_schema_drops_titles_and_nulls_and_keeps_one_type() -> None:
    schema = compact_input({
        "title": "M", "type": "object", "additionalProperties": False, "properties": {
            "title": {"title": "Title", "type": "string"},
            "steps": {"anyOf": [{"type": "integer", "minimum": 20}, {"type": "null"}],
                      "default": None, "description": "Steps.", "title": "Steps"},
            "mode": {"anyOf": [{"enum": ["a", "b"], "type": "string"}, {"type": "null"}],
                     "default": "a", "title": "Mode"},
        }})
    # Optional is "not required" (null still means the default to the server); no
    # boolean schema, not even additionalProperties: false (the model refuses extras).
    assert schema == {"type": "object", "properties": {
        "title": {"type": "string"},
        "steps": {"description": "Steps.", "type": "integer", "minimum": 20},
        "mode": {"default": "a", "enum": ["a", "b"], "type": "string"},
    }}


def test_input_schema_drops_a_null_enum_member_and_types_the_enum() -> None:
    props = compact_input({"properties": {
        "q": {"anyOf": [{"enum": ["high", "fast"], "type": "string"}, {"type": "null"}],
              "default": None},
        "n": {"enum": [1, 2, None], "type": ["integer", "null"]},
        "s": {"enum": ["x", "y", None]},
    }})["properties"]
    assert props == {"q": {"enum": ["high", "fast"], "type": "string"},
                     "n": {"enum": [1, 2], "type": "integer"},
                     "s": {"enum": ["x", "y"], "type": "string"}}


def test_input_schema_inlines_every_shape_even_one_used_twice() -> None:
    schema = compact_input(Outer.model_json_schema())
    assert "$defs" not in schema and "$ref" not in json.dumps(schema)
    inner = {"description": "Developer prose.", "type": "object",
             "properties": {"size": {"default": 0, "description": "Pixels.",
                                     "type": "integer"}}}
    assert schema["properties"]["one"] == inner
    assert schema["properties"]["twice_a"] == inner
    assert schema["properties"]["twice_b"] == {"default": [], "items": inner, "type": "array"}


def test_compact_input_accepts_what_the_model_accepts_but_explicit_nulls() -> None:
    full = GenerationRequest.model_json_schema()
    compact = compact_input(full)
    for args in ({"prompt": "a cat"}, {"prompt": "a cat", "seed": 3, "quality": "fast"},
                 {"prompt": "a cat", "width": 512}, {"prompt": "a cat", "aspect_ratio": "16:9"}):
        jsonschema.validate(args, full)
        jsonschema.validate(args, compact)
    for bad in ({"prompt": ""}, {"prompt": "x", "width": 100}, {"prompt": "x", "width": 260},
                {"prompt": "x", "quality": "best"}, {"prompt": "x", "seed": -1}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, compact)
    # Published: an optional field is left out, never null. The model (what the server
    # validates with) still reads null as the default: the next test.
    for nulls in ({"prompt": "a cat", "seed": None}, {"prompt": "a cat", "quality": None}):
        jsonschema.validate(nulls, full)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(nulls, compact)


async def test_server_still_reads_an_explicit_null_as_the_default(
    make_settings: Callable[..., Any],
) -> None:
    settings = make_settings()
    backend = RecordingBackend()
    server = build_server(settings, ImageService(settings, backend=backend))  # type: ignore[arg-type]
    async with Client(server) as client:
        result = await client.call_tool("generate_image", {
            "prompt": "a lighthouse", "width": 256, "height": 256, "num_inference_steps": 20,
            "seed": None, "quality": None, "negative_prompt": None, "aspect_ratio": None,
            "use_refinement": None, "guidance_scale": None})
        assert not result.is_error, result.content
        assert result.structured_content and result.structured_content["status"] == "succeeded"
        assert isinstance(result.structured_content["seed"], int)  # null: a random seed
        (request, _seed), = backend.requests
        defaults = GenerationRequest(prompt="a lighthouse")
        assert request.guidance_scale == defaults.guidance_scale
        assert request.quality is None and request.aspect_ratio is None
        # The compact schema no longer says additionalProperties: false; the model
        # still refuses a name it does not know, in one sentence naming it.
        refused = await client.call_tool("generate_image", {"prompt": "x", "nope": 1})
    assert refused.is_error and "nope" in refused.content[0].text  # type: ignore[union-attr]


# ------------------------------------------------------------------ outputs
def test_output_schema_keeps_names_and_types_only() -> None:
    schema = compact_output(Outer.model_json_schema())
    keywords = {key for node in walk(schema) for key in node}
    assert not keywords & {"description", "default", "required"}
    assert set(schema["properties"]) == {"title", "kind", "mode", "one", "twice_a", "twice_b"}
    assert schema["properties"]["kind"] == {"anyOf": [{"type": "string"}, {"type": "null"}]}
    assert schema["properties"]["title"] == {"type": "string"}


def test_output_schema_inlines_a_shape_used_once_and_refers_to_one_used_more() -> None:
    class Once(BaseModel):
        inner: Inner

    once = compact_output(Once.model_json_schema())
    assert "$defs" not in once
    assert once["properties"]["inner"] == {"properties": {"size": {"type": "integer"}},
                                           "type": "object"}
    many = compact_output(Outer.model_json_schema())
    assert set(many["$defs"]) == {"Inner"}
    assert many["properties"]["twice_b"] == {"items": {"$ref": "#/$defs/Inner"},
                                             "type": "array"}


def test_output_schema_writes_a_nullable_shape_as_any_of_with_its_keywords_inside() -> None:
    class Maybe(BaseModel):
        inner: Inner | None = None
        size: int | None = Field(None, ge=0)

    schema = compact_output(Maybe.model_json_schema())
    assert schema["properties"] == {
        "inner": {"anyOf": [{"properties": {"size": {"type": "integer"}}, "type": "object"},
                            {"type": "null"}]},
        "size": {"anyOf": [{"minimum": 0, "type": "integer"}, {"type": "null"}]},
    }
    jsonschema.validate({"inner": None, "size": None}, schema)
    jsonschema.validate({"inner": {"size": 2}, "size": 1}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"inner": {"size": "2"}}, schema)


def test_a_brief_lists_some_fields_and_still_accepts_the_whole_object() -> None:
    result = GenerationResult(success=True, status="succeeded", message="ok", seed=3,
                              path="/x.png", image_id="x")
    answer = VariationsResult(success=True, status="succeeded", message="ok",
                              results=[result])
    brief = {"GenerationResult": ("status", "path")}
    schema = compact_output(VariationsResult.model_json_schema(), brief)
    item = schema["properties"]["results"]["items"]
    assert set(item["properties"]) == {"status", "path"}
    jsonschema.validate(answer.model_dump(mode="json"), schema)
    status = compact_output(GpuStatus.model_json_schema(), {"EngineStatus": ("state",)})
    engine = status["properties"]["engine"]
    assert "additionalProperties" not in engine  # the fields left out still come
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**answer.model_dump(mode="json"), "status": "done"}, schema)


def test_full_result_validates_against_its_compact_schema() -> None:
    schema = compact_output(GenerationResult.model_json_schema())
    running = GenerationResult(success=False, status="running", message="...", job_id="j",
                               eta_s=4.5)
    jsonschema.validate(running.model_dump(mode="json"), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**running.model_dump(mode="json"), "eta_s": "soon"}, schema)


# ------------------------------------------------------------------ the budget
async def test_tools_list_fits_the_budget_with_every_tool(
    make_settings: Callable[..., Any],
) -> None:
    settings = make_settings()
    server = build_server(settings, ImageService(settings, backend=GatedBackend()))
    async with Client(server) as client:
        tools = (await client.list_tools()).tools
    assert {t.name for t in tools} >= TOOLS
    size = tools_list_size(tools)
    assert size < TOOLS_LIST_BUDGET, f"tools/list is {size} characters of JSON"
    for tool in tools:
        assert tool.description and len(tool.description) <= 400, tool.name
        output = json.dumps(tool.output_schema)
        assert '"description"' not in output and '"title"' not in output, tool.name
