"""The MCP tools, one module per family (the same name as its workflow in
``service/``); :func:`tool_specs` lists them.

Guarantees: every tool of the contract is in :func:`tool_specs`, in the order
they are listed, each with its annotations; the whole ``tools/list`` answer
stays under ``TOOLS_LIST_BUDGET`` (a shape listed in full by one tool is listed
briefly by the others: ``toolspec``'s briefs). How a spec becomes a tool,
validates its arguments and turns errors into results: ``toolspec``; how a
job's answer becomes content: ``content``. Handlers reach the service only
through the lifespan context. A new family is a module with ``specs(settings)``
and a row in :data:`FAMILIES` (docs/ARCHITECTURE.md "Adding a workflow").
"""

from __future__ import annotations

from sdxl_mcp.entrypoints.mcp.tools import (
    edit,
    export,
    jobs,
    library,
    models,
    status,
    stock,
    vary,
)
from sdxl_mcp.entrypoints.mcp.toolspec import ToolSpec
from sdxl_mcp.settings import Settings

__all__ = ["FAMILIES", "tool_specs"]

#: The tool families, in the order their tools are listed.
FAMILIES = (jobs, stock, status, library, export, edit, vary, models)


def tool_specs(settings: Settings) -> list[ToolSpec]:
    """Every tool, in the order they are listed."""
    return [spec for family in FAMILIES for spec in family.specs(settings)]
