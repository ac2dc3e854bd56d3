"""The REST API's OpenAPI 3.1 document, generated from the route table.

Guarantees: every route of ``sdxl_mcp.entrypoints.http.rest.rest_routes`` is described, and
nothing else; bodies, parameters and replies come from the models the routes
validate and answer with (bounds, defaults and "null means the default"
included), so the document cannot drift from what the server accepts. The
answers of the middleware in front of every route (Host/Origin checks, and
the bearer token when one is set) are listed on every operation.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from sdxl_mcp import __version__
from sdxl_mcp.entrypoints.http.rest import ErrorBody, Reply, RestRoute, rest_routes
from sdxl_mcp.settings import Settings

_REF = "#/components/schemas/{model}"

_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "schema": {"type": "integer", "minimum": 1},
    }
}
_FOLLOW_JOB = {
    "getJob": {
        "operationId": "getJob",
        "parameters": {"job_id": "$response.body#/job_id"},
        "description": "Follow (or re-read) the job this Result belongs to.",
    }
}


def openapi_document(
    settings: Settings, routes: list[RestRoute] | None = None
) -> dict[str, Any]:
    """The document for ``routes`` (by default the server's, for these settings)."""
    routes = rest_routes(settings) if routes is None else routes
    guarded = [
        Reply("403", "The Origin header names a foreign site (DNS-rebinding protection).",
              {"type": "string"}, media=("text/plain",)),
        Reply("421", "The Host header names a foreign host (DNS-rebinding protection).",
              {"type": "string"}, media=("text/plain",)),
    ]
    if settings.http_token is not None:
        guarded.append(Reply("401", "Missing or wrong bearer token.", ErrorBody))
    refs, schemas = _schemas(routes, guarded)
    paths: dict[str, Any] = {}
    for route in routes:
        operation: dict[str, Any] = {"operationId": route.operation_id, "summary": route.summary}
        if route.description:
            operation["description"] = route.description
        if route.params is not None:
            operation["parameters"] = _parameters(route.params, route.path)
        if route.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": refs[route.body]}},
            }
        operation["responses"] = {
            reply.status: _response(reply, refs) for reply in (*route.replies, *guarded)
        }
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "sdxl-mcp REST API",
            "version": __version__,
            "description": "The source guide's REST API. MCP (streamable HTTP) is served at "
            "/mcp on the same port and is not described here.",
        },
        "paths": paths,
        "components": {"schemas": schemas},
    }
    if settings.http_token is not None:
        document["components"]["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer", "description": "SDXL_MCP_HTTP_TOKEN"}
        }
        document["security"] = [{"bearer": []}]
    return document


def _schemas(
    routes: list[RestRoute], guarded: list[Reply]
) -> tuple[dict[type[BaseModel], dict[str, Any]], dict[str, Any]]:
    """The ``$ref`` of every body and reply model, and the components they point into."""
    wanted: dict[type[BaseModel], JsonSchemaMode] = {}
    for route in routes:
        if route.body is not None:
            wanted[route.body] = "validation"
        for reply in (*route.replies, *guarded):
            if isinstance(reply.body, type):
                wanted.setdefault(reply.body, "serialization")
    refs, defs = models_json_schema(list(wanted.items()), ref_template=_REF)
    return {model: refs[(model, mode)] for model, mode in wanted.items()}, defs["$defs"]


def _parameters(model: type[BaseModel], path: str) -> list[dict[str, Any]]:
    """One parameter per field of ``model``: in the path if ``path`` names it, else the query."""
    properties = model.model_json_schema()["properties"]
    parameters = []
    for name, info in model.model_fields.items():
        in_path = f"{{{name}}}" in path
        schema = {k: v for k, v in properties[name].items() if k not in ("title", "description")}
        parameters.append({
            "name": name,
            "in": "path" if in_path else "query",
            "required": in_path or info.is_required(),
            "description": info.description,
            "schema": schema,
        })
    return parameters


def _response(reply: Reply, refs: dict[type[BaseModel], dict[str, Any]]) -> dict[str, Any]:
    schema = refs[reply.body] if isinstance(reply.body, type) else reply.body
    response: dict[str, Any] = {
        "description": reply.description,
        "content": {media: {"schema": schema} for media in reply.media},
    }
    if reply.retry_after:
        response["headers"] = _RETRY_AFTER
    if reply.follows_job:
        response["links"] = _FOLLOW_JOB
    return response
