"""Every published tool schema is in the subset Gemini-backed hosts accept.

Hosts that hand MCP tool schemas to Gemini models (VS Code/Copilot, Gemini CLI,
OpenCode, Google ADK) reject a schema outside it, and one bad tool breaks the
whole session. Inputs: ``type`` one string, no ``anyOf``/``oneOf``/``allOf``,
``$ref``/``$defs`` or boolean schemas, an ``enum`` typed ``string`` without null,
``type: object`` at the top. Outputs: no ``type`` lists (a nullable field is an
``anyOf`` with ``{"type": "null"}``). Every array has ``items``. Each failure
names the JSON path of the offending schema.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from mcp import Client

from sdxl_mcp.entrypoints.mcp.schema import TOOLS_LIST_BUDGET, tools_list_size
from sdxl_mcp.entrypoints.mcp.server import build_server
from sdxl_mcp.service.facade import ImageService
from tests.fakes import GatedBackend
from tests.helpers_mcp import TOOLS

#: Keywords whose value is one schema, a list of schemas, or a map of name -> schema.
ONE = ("items", "additionalProperties", "not", "contains", "propertyNames",
       "if", "then", "else", "unevaluatedProperties", "unevaluatedItems")
MANY = ("anyOf", "oneOf", "allOf", "prefixItems")
NAMED = ("properties", "$defs", "definitions", "patternProperties", "dependentSchemas")


def schemas(node: Any, path: str) -> Iterator[tuple[str, Any]]:
    """``(path, schema)`` for ``node`` and every schema inside it (booleans too)."""
    yield path, node
    if not isinstance(node, dict):
        return
    for key in ONE:
        if key in node:
            yield from schemas(node[key], f"{path}.{key}")
    for key in MANY:
        for i, sub in enumerate(node.get(key) or ()):
            yield from schemas(sub, f"{path}.{key}[{i}]")
    for key in NAMED:
        for name, sub in (node.get(key) or {}).items():
            yield from schemas(sub, f"{path}.{key}.{name}")


def input_violations(schema: dict[str, Any], path: str) -> list[str]:
    found = []
    if schema.get("type") != "object":
        found.append(f"{path}: the top is not type object")
    for where, node in schemas(schema, path):
        if isinstance(node, bool):
            found.append(f"{where}: a boolean schema ({str(node).lower()})")
            continue
        if not isinstance(node, dict):
            found.append(f"{where}: not a schema ({node!r})")
            continue
        if "type" in node and not isinstance(node["type"], str):
            found.append(f"{where}: type {node['type']!r} is not one string")
        found += [f"{where}: {key}" for key in (*MANY[:3], "$ref", "$defs", "definitions")
                  if key in node]
        if "enum" in node:
            if node.get("type") != "string":
                found.append(f"{where}: an enum without type string ({node.get('type')!r})")
            if None in node["enum"]:
                found.append(f"{where}: null in an enum")
    return found


def output_violations(schema: dict[str, Any], path: str) -> list[str]:
    found = []
    for where, node in schemas(schema, path):
        if isinstance(node, dict) and isinstance(node.get("type"), list):
            found.append(f"{where}: type {node['type']!r} (a nullable is anyOf with null)")
    return found


def array_violations(schema: dict[str, Any], path: str) -> list[str]:
    found = []
    for where, node in schemas(schema, path):
        if not isinstance(node, dict):
            continue
        kinds = node["type"] if isinstance(node.get("type"), list) else [node.get("type")]
        if "array" in kinds and not isinstance(node.get("items"), dict):
            found.append(f"{where}: an array without an items schema")
    return found


@pytest.fixture
async def tools(make_settings: Callable[..., Any]) -> list[Any]:
    settings = make_settings()
    server = build_server(settings, ImageService(settings, backend=GatedBackend()))
    async with Client(server) as client:
        listed = (await client.list_tools()).tools
    assert {t.name for t in listed} >= TOOLS
    return listed


def published(tools: list[Any], key: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for tool in tools:
        schema = tool.model_dump(mode="json", by_alias=True, exclude_none=True).get(key)
        if schema is not None:
            yield f"{tool.name}.{key}", schema


def test_every_input_schema_is_portable(tools: list[Any]) -> None:
    found = [v for path, s in published(tools, "inputSchema") for v in input_violations(s, path)]
    assert not found, "\n".join(found)


def test_every_output_schema_has_no_type_lists(tools: list[Any]) -> None:
    outputs = list(published(tools, "outputSchema"))
    assert {path.split(".")[0] for path, _ in outputs} >= TOOLS
    found = [v for path, s in outputs for v in output_violations(s, path)]
    assert not found, "\n".join(found)


def test_every_array_has_items(tools: list[Any]) -> None:
    found = [v for key in ("inputSchema", "outputSchema")
             for path, s in published(tools, key) for v in array_violations(s, path)]
    assert not found, "\n".join(found)


def test_the_portable_tools_list_fits_the_budget(tools: list[Any]) -> None:
    size = tools_list_size(tools)
    assert size < TOOLS_LIST_BUDGET, f"tools/list is {size} characters of JSON"


def test_the_checks_find_what_they_look_for() -> None:
    """The walkers are not vacuous: each rule fires, with the path, on a bad schema."""
    bad_input = {"type": "object", "additionalProperties": False, "$defs": {}, "properties": {
        "a": {"type": ["string", "null"]}, "b": {"anyOf": [{"type": "string"}]},
        "c": {"enum": ["x", None]}, "d": {"$ref": "#/$defs/D"},
        "e": {"type": "array", "items": True}}}
    assert sorted(input_violations(bad_input, "t")) == sorted([
        "t: $defs", "t.additionalProperties: a boolean schema (false)",
        "t.properties.a: type ['string', 'null'] is not one string",
        "t.properties.b: anyOf", "t.properties.c: an enum without type string (None)",
        "t.properties.c: null in an enum", "t.properties.d: $ref",
        "t.properties.e.items: a boolean schema (true)"])
    assert output_violations({"properties": {"x": {"type": ["integer", "null"]}}}, "o") == [
        "o.properties.x: type ['integer', 'null'] (a nullable is anyOf with null)"]
    assert array_violations({"properties": {"l": {"type": "array"}}}, "o") == [
        "o.properties.l: an array without an items schema"]
    assert input_violations({"type": "string"}, "t") == ["t: the top is not type object"]
