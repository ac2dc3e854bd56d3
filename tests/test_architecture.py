"""The floor plan's rules (docs/ARCHITECTURE.md "Layers" and "Rules"), read from the imports.

Every ``import`` and ``from ... import`` of ``src/sdxl_mcp`` counts, at module
level, inside functions and under ``TYPE_CHECKING`` alike.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "sdxl_mcp"

#: Layer of each top-level part, highest first: an import may only point to a lower
#: layer or stay in its own part. library, stock, schemas, settings, errors and logs
#: are the floor every layer stands on.
LAYERS = {
    "__main__": 7, "bench": 7,
    "entrypoints": 6,
    "service": 5,
    "backend.factory": 4,  # builds the backend: the one module above engine/ and cluster/
    "cluster": 3,  # Ray replicas run the engine
    "engine": 2,
    "backend": 1.5,  # the port (base, batching): below the engine and the cluster
    "library": 1, "stock": 1,
    "schemas": 0, "settings": 0, "errors": 0, "logs": 0, "__init__": 0,
}
#: Within the floor, what may import what (the rest of the floor below it).
FLOOR = {
    "library": {"stock", "schemas", "settings", "errors", "logs", "__init__"},
    "stock": {"schemas", "settings", "errors", "logs", "__init__"},
    "schemas": {"errors", "settings"},
    "settings": {"errors"},
    "errors": set(),
    "logs": set(),
    "__init__": set(),
}
WORKFLOWS = {"generate", "edit", "vary", "stock", "loras", "status"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


@cache
def import_graph() -> dict[str, set[str]]:
    """Each module of the package -> the package's modules it imports (anywhere in it)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # "from pkg import mod" imports pkg.mod when that is a module.
                names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules
                         else node.module for a in node.names]
            else:
                continue
            targets |= {n for n in names if n in modules and n != name}
        graph[name] = targets
    return graph


def part(module: str) -> str:
    """The layer a module belongs to (its top-level part; the factory on its own)."""
    if module == "sdxl_mcp.backend.factory":
        return "backend.factory"
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else "__init__"


def test_only_settings_errors_and_logs_stand_at_the_top() -> None:
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert top == ["__init__.py", "__main__.py", "errors.py", "logs.py", "settings.py"]


def test_no_module_imports_itself_back_through_others() -> None:
    graph = import_graph()
    state: dict[str, int] = {}
    circles: list[list[str]] = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                circles.append([*trail[trail.index(target):], target])
            elif target not in state:
                visit(target, [*trail, target])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert circles == []


def test_imports_point_down_only() -> None:
    def allowed(mine: str, theirs: str) -> bool:
        if mine == theirs:
            return True
        if LAYERS[mine] > 1:
            return LAYERS[theirs] < LAYERS[mine]
        return theirs in FLOOR[mine]

    upward = [f"{module} -> {target}" for module, targets in import_graph().items()
              for target in targets if not allowed(part(module), part(target))]
    # `sdxl-mcp bench` is the one command that reaches the tooling (lazily).
    assert upward == ["sdxl_mcp.entrypoints.cli.main -> sdxl_mcp.bench.cli"]


def test_only_the_backend_factory_names_the_engine_or_the_cluster() -> None:
    allowed = {"sdxl_mcp.backend.factory"}
    offenders = [
        f"{module} -> {target}"
        for module, targets in import_graph().items()
        if part(module) not in ("engine", "cluster", "bench", "__main__")
        and module not in allowed
        for target in targets if part(target) in ("engine", "cluster")
    ]
    assert offenders == []


def test_the_engine_and_the_cluster_know_only_the_port_of_the_backend() -> None:
    offenders = [
        f"{module} -> {target}"
        for module, targets in import_graph().items() if part(module) in ("engine", "cluster")
        for target in targets
        if part(target) in ("backend", "backend.factory") and target not in (
            "sdxl_mcp.backend.base", "sdxl_mcp.backend.batching")
    ]
    assert offenders == []


def test_the_service_facade_imports_no_workflow() -> None:
    imported = import_graph()["sdxl_mcp.service.facade"]
    assert not {f"sdxl_mcp.service.{w}" for w in WORKFLOWS} & imported


def test_the_queue_and_the_keeper_import_no_workflow() -> None:
    graph = import_graph()
    for module in ("sdxl_mcp.service.jobs", "sdxl_mcp.service.keeping"):
        assert not {f"sdxl_mcp.service.{w}" for w in WORKFLOWS} & graph[module], module


def test_nothing_in_production_imports_the_bench_but_its_command() -> None:
    offenders = [
        f"{module} -> {target}"
        for module, targets in import_graph().items() if part(module) != "bench"
        for target in targets if part(target) == "bench"
    ]
    assert offenders == ["sdxl_mcp.entrypoints.cli.main -> sdxl_mcp.bench.cli"]


def test_the_service_speaks_neither_mcp_nor_http_nor_torch() -> None:
    foreign = ("mcp", "starlette", "uvicorn", "torch", "diffusers", "ray")
    offenders = []
    for path in (PACKAGE / "service").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in foreign]
    assert offenders == []


@pytest.mark.parametrize("module", ["sdxl_mcp.entrypoints.mcp.server",
                                    "sdxl_mcp.entrypoints.mcp.stdio",
                                    "sdxl_mcp.entrypoints.http.app"])
def test_the_start_path_leaves_torch_unimported(module: str) -> None:
    code = f"import sys, {module}; print('torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"
