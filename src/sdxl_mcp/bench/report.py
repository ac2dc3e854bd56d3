"""A benchmark's report: machine facts, the JSON file, the printed tables.

Every report written names its command, the machine, the date (UTC) and the
checkout's commit (``+dirty`` for local changes under ``src/``; ``None`` from an
installed package), so a figure can be traced to the code that produced it;
``sdxl-mcp bench`` adds the load average it started under (1, 5 and 15 minutes),
so "a quiet machine" can be checked.
Stdlib only.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any


def write_report(report: dict[str, Any], name: str, out: Path, *, command: str) -> Path:
    """Stamp ``report`` (command, machine, date), write ``out/NAME-STAMP.json``, print it."""
    report["command"] = command
    report["machine"] = machine_facts()
    report["date"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = out / f"{name}-{stamp}.json"
    path.write_text(json.dumps(report, indent=2))
    print_table(report)
    return path


def machine_facts() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "git_commit": _git_commit(),
    }


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages, or None where the OS has none (Windows)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _git_commit() -> str | None:
    """The checkout's commit (with "+dirty" for local changes), so a figure names its code."""
    root = Path(__file__).resolve().parents[3]  # src/sdxl_mcp/bench/report.py -> checkout
    if not (root / "pyproject.toml").is_file():
        return None  # an installed package, not a checkout
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"],
                                capture_output=True, text=True, timeout=10, check=True)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "src"],
                               capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def spread_row(label_key: str, label: str, values: list[float]) -> dict[str, Any]:
    """One table row: median, min and max seconds of a series of runs."""
    return {label_key: label, "median_s": round(statistics.median(values), 4),
            "min_s": round(min(values), 4), "max_s": round(max(values), 4)}


def print_table(report: dict[str, Any]) -> None:
    _print_rows(report.get("table", []))
    for title, rows in report.get("tables", {}).items():
        sys.stdout.write(f"\n{title}\n")
        _print_rows(rows)


def _print_rows(rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    keys = list(rows[0])
    widths = {k: max(len(k), *(len(_fmt(r.get(k))) for r in rows)) for k in keys}
    line = " | ".join(k.ljust(widths[k]) for k in keys)
    sys.stdout.write(line + "\n" + "-+-".join("-" * widths[k] for k in keys) + "\n")
    for row in rows:
        sys.stdout.write(" | ".join(_fmt(row.get(k)).ljust(widths[k]) for k in keys) + "\n")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)
