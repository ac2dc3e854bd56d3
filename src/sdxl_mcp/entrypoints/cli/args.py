"""The ``sdxl-mcp`` command line's arguments: one parser, and its flags as request fields.

``generate``, ``edit`` and ``vary`` share their request flags (declared once
here, named as the request fields are); a flag not given stays None and
:func:`request_fields` leaves it out, so the request's own default (or, for
``vary``, the source image's value) applies. ``--quality`` offers every preset
the schema has; ``--lora NAME[:WEIGHT]`` (repeatable) fills ``loras``.
Only argparse and the schemas' literals: no engine, no service.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, get_args

from sdxl_mcp import __version__
from sdxl_mcp.schemas.fields import ASPECT_RATIOS, SAMPLER_NAMES, QualityPreset, RefinerMode
from sdxl_mcp.schemas.stock import Orientation, PhotoSize

__all__ = ["EDIT_FIELDS", "GENERATE_FIELDS", "VARY_FIELDS", "build_parser", "request_fields"]

_ASPECTS = ", ".join(ASPECT_RATIOS)
# What each command's flags set, by request field name.
_COMMON = ("negative_prompt", "seed", "num_inference_steps", "guidance_scale",
           "use_refinement", "loras", "model", "sampler")
_GENERATION = ("quality", "width", "height", "aspect_ratio", "high_quality", "refiner_mode",
               "high_noise_frac", "refiner_steps", "refiner_strength")
GENERATE_FIELDS = (*_COMMON, *_GENERATION, "reuse")
EDIT_FIELDS = (*_COMMON, "mask", "strength")
VARY_FIELDS = (*_COMMON, *_GENERATION, "count", "prompt")


def request_fields(args: argparse.Namespace, names: tuple[str, ...]) -> dict[str, Any]:
    """The request fields the command line gave: flags left out are not sent."""
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def _lora(value: str) -> dict[str, Any]:
    """``NAME`` or ``NAME:WEIGHT``; the request's own validation checks both."""
    name, colon, weight = value.rpartition(":")
    if not colon:
        return {"name": value}
    try:
        return {"name": name, "weight": float(weight)}
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--lora is NAME or NAME:WEIGHT with a number for the weight, got {value!r}"
        ) from None


def _add_common_flags(command: argparse.ArgumentParser, *, tristate_refine: bool,
                      seed_help: str | None = None) -> None:
    command.add_argument("--negative-prompt", dest="negative_prompt")
    command.add_argument("--seed", type=int, help=seed_help)
    command.add_argument("--steps", dest="num_inference_steps", type=int)
    command.add_argument("--guidance", dest="guidance_scale", type=float)
    if tristate_refine:
        command.add_argument("--refine", dest="use_refinement", default=None,
                             action=argparse.BooleanOptionalAction,
                             help="run the refiner or not (default: as the source)")
    else:
        command.add_argument("--no-refine", dest="use_refinement", action="store_false",
                             default=None)
    command.add_argument("--lora", dest="loras", type=_lora, action="append", default=None,
                         metavar="NAME[:WEIGHT]",
                         help="a LoRA from SDXL_MCP_LORA_DIRS (weight 0-2, default 1); "
                         "up to 4 (see `sdxl-mcp models`)")
    command.add_argument("--model", help="a model by name from `sdxl-mcp models` "
                         "(default: SDXL_MCP_BASE_MODEL)")
    command.add_argument("--sampler", choices=SAMPLER_NAMES, metavar="NAME",
                         help="an A1111 sampler: " + ", ".join(SAMPLER_NAMES))
    command.add_argument("--json", action="store_true", help="print the full answer as JSON")
    command.add_argument("--no-progress", action="store_true", help="no progress bar")


def _add_generation_flags(command: argparse.ArgumentParser) -> None:
    command.add_argument("--quality", choices=get_args(QualityPreset),
                         help="a preset; flags given here win (draft: SDXL_MCP_DRAFT_LORA)")
    command.add_argument("--width", type=int)
    command.add_argument("--height", type=int)
    command.add_argument("--aspect", dest="aspect_ratio", metavar="RATIO",
                         help=f"an SDXL size instead of --width/--height: {_ASPECTS}")
    command.add_argument("--fast-decode", dest="high_quality", action="store_false",
                         default=None, help="let a fp16-safe VAE decode in the engine precision")
    command.add_argument("--refiner-mode", choices=get_args(RefinerMode))
    command.add_argument("--high-noise-frac", type=float)
    command.add_argument("--refiner-steps", type=int)
    command.add_argument("--refiner-strength", type=float)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sdxl-mcp",
        description="Images for LLM agents: Pexels stock photos or local SDXL base + refiner.",
    )
    parser.add_argument("--version", action="version", version=f"sdxl-mcp {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="generate one image and print its path and timings")
    gen.add_argument("prompt")
    _add_common_flags(gen, tristate_refine=False)
    _add_generation_flags(gen)
    gen.add_argument("--no-reuse", dest="reuse", action="store_false", default=None,
                     help="generate even if an identical request (same seed) is catalogued")

    edit = sub.add_parser("edit", help="edit an image (img2img; inpainting with --mask)")
    edit.add_argument("image", help="an image_id, image:// URI or an allowed absolute path")
    edit.add_argument("prompt")
    edit.add_argument("--mask", help="white = repaint, black = keep (same reference forms)")
    edit.add_argument("--strength", type=float)
    _add_common_flags(edit, tristate_refine=False)

    vary = sub.add_parser("vary", help="re-run a generated image's request with new seeds")
    vary.add_argument("image", help="a generated image: image_id, image:// URI or its path")
    vary.add_argument("--count", type=int, help="how many variations (1-4, default 1)")
    vary.add_argument("--prompt", help="a new prompt (default: the source's)")
    _add_common_flags(vary, tristate_refine=True,
                      seed_help="first seed (then seed+1, ...); default random")
    _add_generation_flags(vary)

    sub.add_parser("gpu", help="print device facts and the precision decision")
    models = sub.add_parser("models", help="list the models, LoRAs and styles by name")
    models.add_argument("--json", action="store_true", help="print the full answer as JSON")

    stock = sub.add_parser("stock", help="search Pexels for free stock photos")
    stock.add_argument("query")
    stock.add_argument("--orientation", choices=get_args(Orientation))
    stock.add_argument("--size", choices=get_args(PhotoSize))
    stock.add_argument("--color")
    stock.add_argument("--per-page", dest="per_page", type=int, default=5)
    stock.add_argument("--page", type=int, default=1)
    stock.add_argument("--no-download", dest="download", action="store_false")
    stock.add_argument("--json", action="store_true", help="print the full result as JSON")

    serve = sub.add_parser("serve", help="run the MCP server (stdio, or --http)")
    serve.add_argument("--http", action="store_true",
                       help="streamable HTTP at /mcp plus the REST API, instead of stdio")
    serve.add_argument("--host", help="HTTP bind address (default SDXL_MCP_HTTP_HOST)")
    serve.add_argument("--port", type=int, help="HTTP port (default SDXL_MCP_HTTP_PORT)")

    # The bench parses its own arguments: `serve` never imports the harness.
    bench = sub.add_parser("bench", add_help=False,
                           help="measure overhead, start-up, GPU speed (see bench --help)")
    bench.add_argument("bench_args", nargs=argparse.REMAINDER)

    tiny = sub.add_parser("make-tiny-models", help="write tiny random-weight SDXL models")
    tiny.add_argument("directory", type=Path)
    return parser
