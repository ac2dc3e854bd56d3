"""``sdxl-mcp bench``: what the server costs, measured, never assumed.

One module per benchmark (``overhead``, ``startup``, ``scaling``, ``hotpath``,
``sweep``, ``fullsize``); ``cli`` parses the arguments and dispatches, ``report``
writes the JSON and prints the tables. Each benchmark writes a JSON file into
``--out`` and prints a table; progress goes to stderr.

Guarantees: importing this package (or ``sdxl_mcp.bench.cli``) imports neither
torch nor the MCP SDK; a benchmark's heavy imports happen when it runs. torch is
imported only by ``fullsize`` and ``pipelines``, the bench's one exception to
"torch lives in ``sdxl_mcp.engine``"; the speed settings, the refiner schedule and
the dtype table it times are the engine's own (``sdxl_mcp.engine``), so the
bench measures exactly what production runs.
"""

from __future__ import annotations

from sdxl_mcp.bench.cli import add_arguments, build_parser, main, run

__all__ = ["add_arguments", "build_parser", "main", "run"]
