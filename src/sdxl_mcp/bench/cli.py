"""The ``sdxl-mcp bench`` command line: arguments, dispatch, the written report.

``main(argv)`` parses its own arguments (prog ``sdxl-mcp bench``) and runs;
``add_arguments`` and ``run`` let another parser host the command as a
sub-command. Only argparse and the stdlib load here: a benchmark's module (and
with it anyio, the MCP SDK or torch) is imported when that benchmark runs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PROG = "sdxl-mcp bench"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="measure overhead, start-up, GPU speed")
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--overhead", action="store_true", help="server path vs raw diffusers")
    mode.add_argument("--startup", action="store_true", help="time to initialize and ready")
    mode.add_argument("--full-size", action="store_true", help="real SDXL configs on a GPU")
    mode.add_argument("--scaling", action="store_true",
                      help="Ray backend: throughput with 1 and 2 CPU replicas")
    mode.add_argument("--hotpath", action="store_true",
                      help="cost of each post-generation step (PNG, preview, sidecar, catalog)")
    mode.add_argument("--sweep", action="store_true",
                      help="tiny-model cost by resolution and steps (engine only)")
    mode.add_argument("--exit", action="store_true",
                      help="seconds to exit after stdin closes, SIGTERM or SIGINT, per phase")
    parser.add_argument("--runs", type=int, default=5, help="measured runs per path")
    parser.add_argument("--size", type=int, default=1024, help="width = height in pixels")
    parser.add_argument("--steps", type=int, default=None,
                        help="base schedule length (default 20; --full-size: 50, the guide's)")
    parser.add_argument("--out", type=Path, default=Path("bench_results"),
                        help="folder for the JSON results")
    parser.add_argument("--concurrency", type=int, default=4, help="--scaling: parallel calls")
    parser.add_argument("--image", dest="images", type=Path, action="append", default=[],
                        metavar="PATH", help="--hotpath: also time this picture, resized to "
                        "--size² (repeatable)")
    parser.add_argument("--dtypes", default="fp32,fp16,bf16", help="--full-size dtypes")
    parser.add_argument("--device", default="cuda", help="--full-size device")
    parser.add_argument("--force", action="store_true",
                        help="--full-size on a CPU (minutes per step at 1024²)")
    parser.add_argument("--models", choices=["sdxl", "tiny"], default="sdxl",
                        help="--full-size architecture: real SDXL configs or the tiny ones")
    parser.add_argument("--settings-dtype", default="fp16",
                        help="--full-size: dtype of the speed-settings table")
    parser.add_argument("--settings-steps", type=int, default=10,
                        help="--full-size: UNet steps timed per speed setting")
    parser.add_argument("--skip-compile", action="store_true",
                        help="--full-size: leave torch.compile out of the speed-settings table")


def main(argv: Sequence[str]) -> int:
    """Parse ``argv`` (the arguments after ``bench``) and run the chosen benchmark."""
    return run(build_parser().parse_args(list(argv)), argv)


def run(args: argparse.Namespace, argv: Sequence[str] | None = None) -> int:
    """Run the benchmark ``args`` picks, write its JSON and print its table.

    ``argv`` is recorded as the report's command; without it, the arguments
    after ``sdxl-mcp bench`` on this process's command line.
    """
    import anyio

    from sdxl_mcp.bench.report import load_average, write_report

    # Taken before the benchmark loads the machine itself: a shared VM's
    # figures mean little without it.
    load_at_start = load_average()
    if args.images and not args.hotpath:
        sys.stderr.write("sdxl-mcp: error: --image is for --hotpath only\n")
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    if args.steps is None:
        args.steps = 50 if args.full_size else 20
    report: dict[str, Any]
    if args.overhead:
        from sdxl_mcp.bench.overhead import overhead

        report = anyio.run(overhead, args.runs, args.size, args.steps)
        name = "overhead"
    elif args.startup:
        from sdxl_mcp.bench.startup import startup

        report = anyio.run(startup, args.runs)
        name = "startup"
    elif args.scaling:
        from sdxl_mcp.bench.scaling import scaling

        report = anyio.run(scaling, args.runs, args.size, args.steps, args.concurrency)
        name = "scaling"
    elif args.hotpath:
        from sdxl_mcp.bench.hotpath import hotpath

        try:
            report = hotpath(args.size, args.runs, args.images)
        except ValueError as exc:  # an --image Pillow cannot read
            sys.stderr.write(f"sdxl-mcp: error: {exc}\n")
            return 2
        name = "hotpath"
    elif args.exit:
        from sdxl_mcp.bench.exits import exits

        report = exits(args.runs)
        name = "exit"
    elif args.sweep:
        from sdxl_mcp.bench.sweep import sweep

        report = sweep()
        name = "sweep"
    else:
        from sdxl_mcp.bench.fullsize import full_size

        full = full_size(args)
        if full is None:
            return 2
        report, name = full, "full_size"
    command = list(argv) if argv is not None else sys.argv[2:]
    report["load_average_at_start"] = load_at_start
    path = write_report(report, name, args.out, command=" ".join([PROG, *command]))
    sys.stdout.write(f"\nresults: {path}\n")
    return 0
