"""Compact, portable JSON Schemas for tool definitions: what an agent pays for every time.

Pure functions on JSON Schema dicts (no MCP, no pydantic models). :func:`compact_input` keeps
every name, type, bound, enum, non-null default and description, in the subset Gemini-backed
hosts accept (one ``type`` string, no ``anyOf``/``$ref``/boolean schemas, enums typed): an
optional field is simply not required, and the server still reads null as its default;
:func:`compact_output` keeps names and types (nullable as ``anyOf`` with null), so a client
that validates ``structuredContent`` accepts it; :func:`tools_list_size` is the budget's
measure (docs/TOOLS.md "What an agent reads", docs/ARCHITECTURE.md "Guarantees").
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

#: docs/TOOLS.md: the whole tools/list answer stays under this many characters.
TOOLS_LIST_BUDGET = 20_000

_DEFS = "$defs"
_REF_PREFIX = "#/$defs/"


#: Patterns that tell a model nothing (the server rejects NUL with a clearer sentence).
_SILENT_PATTERNS = frozenset({r"^[^\x00]*$"})


def compact_input(schema: dict[str, Any]) -> dict[str, Any]:
    """An input schema without titles and null defaults, in the portable subset.

    Every ``$ref`` inlined, "X or null" as plain X (not required), one ``type``
    string per schema, an enum with its values' type and no null, no boolean schemas."""
    out = _walk(copy.deepcopy(schema), drop={"title"}, drop_null_default=True)
    return _map_schemas(_inline_defs(out, every=True), _single_type)


def compact_output(
    schema: dict[str, Any], brief: Mapping[str, Collection[str]] | None = None
) -> dict[str, Any]:
    """An output schema of names and types: no titles, descriptions or defaults.

    ``brief``: schema title -> the properties published for that model."""
    out = _trim(copy.deepcopy(schema), brief or {})
    out = _walk(out, drop={"title", "description", "default", "required"},
                drop_null_default=True)
    _drop_enum_types(out)
    return _map_schemas(_inline_defs(out, every=False), _nullable_as_any_of)


def _drop_enum_types(schema: dict[str, Any]) -> None:
    """An enum of strings says its type already (JSON Schema checks the values)."""
    for node in _objects(schema):
        if "enum" in node and node.get("type") in ("string", ["string", "null"]):
            del node["type"]


def _objects(node: Any) -> Iterable[dict[str, Any]]:
    if isinstance(node, list):
        for item in node:
            yield from _objects(item)
    elif isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _objects(value)


def tools_list_size(tools: Iterable[Any]) -> int:
    """Characters of ``json.dumps`` of the tools as sent (MCP ``Tool`` models)."""
    return len(json.dumps([t.model_dump(mode="json", by_alias=True, exclude_none=True)
                           for t in tools]))


# ------------------------------------------------------------------ internals
def _walk(node: Any, *, drop: set[str], drop_null_default: bool) -> Any:
    if isinstance(node, list):
        return [_walk(item, drop=drop, drop_null_default=drop_null_default) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("properties", _DEFS) and isinstance(value, dict):
            # Keys here are names, not keywords: never drop a field called "title".
            out[key] = {name: _walk(sub, drop=drop, drop_null_default=drop_null_default)
                        for name, sub in value.items()}
        elif (key in drop or (key == "default" and value is None and drop_null_default)
              or (key == "pattern" and value in _SILENT_PATTERNS)):
            continue
        else:
            out[key] = _walk(value, drop=drop, drop_null_default=drop_null_default)
    if out.get("additionalProperties") is True:
        del out["additionalProperties"]  # the JSON Schema default
    return _merge_nullable(out)


_SUB_SCHEMA = frozenset({"items", "additionalProperties", "not", "contains", "propertyNames"})
_SUB_SCHEMAS = frozenset({"anyOf", "oneOf", "allOf", "prefixItems"})
_NAMED_SCHEMAS = frozenset({"properties", _DEFS, "patternProperties"})
_JSON_TYPES = ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"))


def _map_schemas(node: Any, fn: Callable[[dict[str, Any]], dict[str, Any]]) -> Any:
    """``fn`` applied to every (sub)schema, innermost first; property names stay names."""
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _NAMED_SCHEMAS and isinstance(value, dict):
            out[key] = {name: _map_schemas(sub, fn) for name, sub in value.items()}
        elif key in _SUB_SCHEMAS and isinstance(value, list):
            out[key] = [_map_schemas(sub, fn) for sub in value]
        elif key in _SUB_SCHEMA:
            out[key] = _map_schemas(value, fn)
        else:
            out[key] = value
    return fn(out)


def _single_type(node: dict[str, Any]) -> dict[str, Any]:
    """The portable input form of one schema: null is expressed by not requiring the field."""
    options = node.get("anyOf")
    if isinstance(options, list) and {"type": "null"} in options:
        rest = [o for o in options if o != {"type": "null"}]
        node = {k: v for k, v in node.items() if k != "anyOf"}
        if len(rest) == 1 and isinstance(rest[0], dict):
            node = {**rest[0], **node}  # the field's own words win over the option's
        else:
            node["anyOf"] = rest
    kind = node.get("type")
    if isinstance(kind, list):
        rest_types = [k for k in kind if k != "null"]
        node["type"] = rest_types[0] if len(rest_types) == 1 else rest_types
    if "enum" in node:
        node["enum"] = [v for v in node["enum"] if v is not None]
        if "type" not in node:
            types = {next((name for cls, name in _JSON_TYPES if isinstance(v, cls)), None)
                     for v in node["enum"]}
            if len(types) == 1 and None not in types:
                node["type"] = types.pop()
    if isinstance(node.get("additionalProperties"), bool):
        del node["additionalProperties"]  # the arguments model still refuses unknown names
    return node


def _nullable_as_any_of(node: dict[str, Any]) -> dict[str, Any]:
    """``type: [X, "null"]`` -> ``anyOf: [{type: X, ...its keywords}, {type: null}]``."""
    kind = node.get("type")
    if not isinstance(kind, list):
        return node
    rest = {k: v for k, v in node.items() if k != "type"}
    types = [k for k in kind if k != "null"]
    options: list[dict[str, Any]] = (
        [{**rest, "type": types[0]}] if len(types) == 1 else [{"type": t} for t in types])
    if "null" in kind:
        options.append({"type": "null"})
    return {"anyOf": options} if len(types) == 1 else {**rest, "anyOf": options}


def _trim(node: Any, brief: Mapping[str, Collection[str]]) -> Any:
    if isinstance(node, list):
        return [_trim(item, brief) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: _trim(v, brief) for k, v in node.items()}
    keep = brief.get(out.get("title", "")) if isinstance(out.get("title"), str) else None
    if keep is not None and isinstance(out.get("properties"), dict):
        out["properties"] = {k: v for k, v in out["properties"].items() if k in keep}
        if "required" in out:
            out["required"] = [k for k in out["required"] if k in keep]
        out.pop("additionalProperties", None)  # the fields left out may still come
    return out


def _merge_nullable(node: dict[str, Any]) -> dict[str, Any]:
    """``{"anyOf": [X, {"type": "null"}], ...}`` -> X with ``null`` allowed, when X is plain."""
    options = node.get("anyOf")
    if not isinstance(options, list) or len(options) != 2 or {"type": "null"} not in options:
        return node
    other = options[0] if options[1] == {"type": "null"} else options[1]
    kind = other.get("type")
    if not isinstance(kind, str) or kind == "null" or "$ref" in other or "anyOf" in other:
        return node
    if set(other) & set(node) - {"anyOf"}:
        return node  # a keyword on both levels: keep the two apart
    merged = {k: v for k, v in node.items() if k != "anyOf"}
    merged.update(other)
    merged["type"] = [kind, "null"]
    if "enum" in merged and None not in merged["enum"]:
        merged["enum"] = [*merged["enum"], None]
    if "const" in merged:
        return node
    return merged


def _inline_defs(schema: dict[str, Any], *, every: bool) -> dict[str, Any]:
    """``$ref`` replaced by its ``$defs`` entry: every one, or those used once."""
    defs = schema.get(_DEFS)
    if not isinstance(defs, dict):
        return schema
    counts: dict[str, int] = {}
    _count_refs(schema, counts)
    single = {name for name in defs if every or counts.get(name, 0) == 1}
    kept = {name: body for name, body in defs.items()
            if name not in single and counts.get(name, 0) > 1}  # unused ones go

    def inline(node: Any, seen: frozenset[str] = frozenset()) -> Any:
        if isinstance(node, list):
            return [inline(item, seen) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(_REF_PREFIX):
            name = ref.removeprefix(_REF_PREFIX)
            if name in single and name not in seen:  # a recursive shape keeps its $ref
                siblings = {k: inline(v, seen) for k, v in node.items() if k != "$ref"}
                return {**inline(defs[name], seen | {name}), **siblings}
        return {k: inline(v, seen) for k, v in node.items() if k != _DEFS}

    out = inline(schema)
    if kept:
        out[_DEFS] = {name: inline(body) for name, body in kept.items()}
    return _walk_nullable_refs(out)


def _walk_nullable_refs(node: Any) -> Any:
    """After inlining, an ``anyOf`` of an inlined object and null becomes one nullable object."""
    if isinstance(node, list):
        return [_walk_nullable_refs(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: (_walk_nullable_refs(v) if k != "properties" else
               {n: _walk_nullable_refs(s) for n, s in v.items()}) for k, v in node.items()}
    return _merge_nullable(out)


def _count_refs(node: Any, counts: dict[str, int]) -> None:
    if isinstance(node, list):
        for item in node:
            _count_refs(item, counts)
    elif isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(_REF_PREFIX):
            name = ref.removeprefix(_REF_PREFIX)
            counts[name] = counts.get(name, 0) + 1
        for value in node.values():
            _count_refs(value, counts)
