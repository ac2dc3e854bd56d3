"""The command line in real subprocesses: stdout carries results only."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from sdxl_mcp.library import ImageStore, parse_infotext
from sdxl_mcp.schemas import GenerationRequest
from sdxl_mcp.service.generate import generation_entry
from sdxl_mcp.service.keeping import save_output
from sdxl_mcp.settings import Settings
from tests.fakes import engine_output
from tests.helpers_cli import run_cli


def test_generate_prints_the_path_and_timings_and_embeds_the_seed(
    tiny_models: tuple, tmp_path: Path
) -> None:
    proc = run_cli("generate", "a lighthouse at dawn", "--seed", "7", "--width", "256",
                   "--height", "256", "--steps", "20", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    path = Path(lines[0])
    assert path.is_absolute() and path.exists() and path.suffix == ".png"
    assert "seed 7" in lines[1]
    assert "timings (s):" in lines[2] and "total" in lines[2]
    params = parse_infotext(Image.open(path).info["parameters"])
    assert params["prompt"] == "a lighthouse at dawn"
    assert params["Seed"] == "7"
    assert params["Size"] == "256x256"
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["seed"] == 7 and sidecar["path"] == str(path)
    # The log file got the seed's start-up lines; stdout got none of them.
    log_text = (tmp_path / "logs" / "sdxl_mcp.log").read_text()
    assert "Refinement: ENABLED" in log_text
    assert "Refinement" not in proc.stdout


def test_generate_json_prints_the_result(tiny_models: tuple, tmp_path: Path) -> None:
    proc = run_cli("generate", "a red cube", "--seed", "3", "--width", "256", "--height", "256",
                   "--quality", "fast", "--json", "--no-progress", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["success"] is True and result["status"] == "succeeded"
    assert result["steps"] == {"base": 20, "refiner": 0}
    assert result["refined"] is False
    assert result["image"]["source"] == "sdxl"


def test_generate_rejects_a_bad_request_with_one_line(tmp_path: Path) -> None:
    proc = run_cli("generate", "x", "--steps", "5", tmp_path=tmp_path)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "num_inference_steps must be ≥ 20" in lines[0]


def test_generate_with_a_missing_model_fails_with_one_clear_line(tmp_path: Path) -> None:
    proc = run_cli("generate", "x", "--no-progress", tmp_path=tmp_path,
                   SDXL_MCP_BASE_MODEL=str(tmp_path / "nope"))
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.splitlines()[-1].startswith("sdxl-mcp: error: ")
    assert "SDXL_MCP_BASE_MODEL" in proc.stderr.splitlines()[-1]


def test_make_tiny_models_writes_loadable_folders(tmp_path: Path) -> None:
    target = tmp_path / "tiny"
    proc = run_cli("make-tiny-models", str(target), tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(target / "base"), str(target / "refiner")]
    # The folders work as BASE_MODEL / REFINER_MODEL through from_pretrained.
    proc = run_cli("generate", "x", "--width", "256", "--height", "256", "--quality", "fast",
                   "--no-progress", tmp_path=tmp_path,
                   SDXL_MCP_BASE_MODEL=str(target / "base"),
                   SDXL_MCP_REFINER_MODEL=str(target / "refiner"))
    assert proc.returncode == 0, proc.stderr


def test_gpu_reports_the_precision_decision(tiny_models: tuple, tmp_path: Path) -> None:
    proc = run_cli("gpu", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)  # what the gpu_status tool returns
    assert report["precision"]["dtype"] == "fp32"
    assert report["precision"]["device"] == "cpu"
    assert "CPU" in report["precision"]["reason"]
    assert report["engine"]["state"] == "not_loaded"  # planned, not loaded


# ------------------------------------------------------------------- vary
def test_vary_flags_map_to_the_vary_request_fields() -> None:
    from sdxl_mcp.entrypoints.cli.args import VARY_FIELDS, build_parser

    args = build_parser().parse_args([
        "vary", "img_abc", "--count", "3", "--seed", "5", "--prompt", "at dusk",
        "--negative-prompt", "blurry", "--steps", "25", "--guidance", "6", "--aspect", "16:9",
        "--no-refine", "--refiner-mode", "sequential", "--json"])
    assert (args.command, args.image, args.count, args.seed) == ("vary", "img_abc", 3, 5)
    assert (args.prompt, args.negative_prompt, args.num_inference_steps) == (
        "at dusk", "blurry", 25)
    assert (args.guidance_scale, args.aspect_ratio, args.use_refinement) == (6.0, "16:9", False)
    assert args.refiner_mode == "sequential" and args.json
    # Flags not given stay None: the source's values are kept.
    plain = build_parser().parse_args(["vary", "img_abc"])
    assert all(getattr(plain, name) is None for name in VARY_FIELDS)
    assert build_parser().parse_args(["vary", "img_abc", "--refine"]).use_refinement is True


def test_flags_left_out_leave_the_requests_own_defaults() -> None:
    from sdxl_mcp.entrypoints.cli.args import (
        EDIT_FIELDS,
        GENERATE_FIELDS,
        build_parser,
        request_fields,
    )
    from sdxl_mcp.schemas import EditRequest

    generate = build_parser().parse_args(["generate", "a red fox"])
    assert request_fields(generate, GENERATE_FIELDS) == {}
    assert GenerationRequest(prompt="a red fox", **request_fields(
        generate, GENERATE_FIELDS)) == GenerationRequest(prompt="a red fox")
    edit = build_parser().parse_args(["edit", "img_abc", "at dusk", "--strength", "0.4"])
    assert request_fields(edit, EDIT_FIELDS) == {"strength": 0.4}
    assert EditRequest(image="img_abc", prompt="at dusk", **request_fields(
        edit, EDIT_FIELDS)).strength == 0.4


def test_every_quality_preset_is_a_choice_for_generate_and_vary() -> None:
    from typing import get_args

    from sdxl_mcp.entrypoints.cli.args import build_parser
    from sdxl_mcp.schemas.fields import QualityPreset

    for preset in get_args(QualityPreset):
        assert build_parser().parse_args(["generate", "x", "--quality", preset]).quality == preset
        assert build_parser().parse_args(["vary", "img_a", "--quality", preset]).quality == preset
    assert "draft" in get_args(QualityPreset)


def test_lora_flags_fill_the_loras_field_in_order() -> None:
    from sdxl_mcp.entrypoints.cli.args import GENERATE_FIELDS, build_parser, request_fields

    args = build_parser().parse_args(
        ["generate", "a red fox", "--lora", "watercolor:0.6", "--lora", "film-grain"])
    request = GenerationRequest(prompt="a red fox", **request_fields(args, GENERATE_FIELDS))
    assert [(ref.name, ref.weight) for ref in request.loras] == [
        ("watercolor", 0.6), ("film-grain", 1.0)]
    edit = build_parser().parse_args(["edit", "img_a", "x", "--lora", "watercolor"])
    vary = build_parser().parse_args(["vary", "img_a", "--lora", "watercolor:2"])
    assert edit.loras == [{"name": "watercolor"}]
    assert vary.loras == [{"name": "watercolor", "weight": 2.0}]


def test_a_lora_weight_that_is_not_a_number_is_one_usage_line(tmp_path: Path) -> None:
    bad = run_cli("generate", "x", "--lora", "watercolor:heavy", tmp_path=tmp_path)
    assert bad.returncode == 2 and bad.stdout == ""
    assert "--lora is NAME or NAME:WEIGHT with a number for the weight, got " \
        "'watercolor:heavy'" in bad.stderr.splitlines()[-1]


def test_a_lora_weight_out_of_range_is_the_requests_own_error(tmp_path: Path) -> None:
    bad = run_cli("generate", "x", "--lora", "watercolor:3", tmp_path=tmp_path)
    assert bad.returncode == 2 and bad.stdout == ""
    (line,) = [line for line in bad.stderr.splitlines() if "sdxl-mcp: error" in line]
    assert "loras" in line and "weight" in line


def test_the_cli_modules_import_nothing_from_the_engine() -> None:
    import ast

    import sdxl_mcp.entrypoints.cli.args
    import sdxl_mcp.entrypoints.cli.main

    for module in (sdxl_mcp.entrypoints.cli.main, sdxl_mcp.entrypoints.cli.args):
        tree = ast.parse(Path(module.__file__ or "").read_text())
        imported = {node.module for node in ast.walk(tree)
                    if isinstance(node, ast.ImportFrom) and node.module}
        imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                     for alias in node.names}
        assert not {name for name in imported if name.startswith("sdxl_mcp.engine")}, module


def _catalogued_source(tmp_path: Path) -> Path:
    """A generated image in the CLI's library, catalogued in-process (one subprocess less)."""
    settings = Settings(_env_file=None, output_dir=tmp_path / "images",  # type: ignore[call-arg]
                        log_dir=tmp_path / "logs", preload=False)
    request = GenerationRequest(prompt="a red fox", seed=1, width=256, height=256,
                                num_inference_steps=20, use_refinement=False)
    pixels = np.random.default_rng(1).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    output = engine_output(Image.fromarray(pixels), base_model="tiny-random")
    with ImageStore(settings.output_dir) as store:
        entry = generation_entry(settings, request, output)
        result = save_output(store, settings, "job-source", output, entry, 0.0)
    assert result.path is not None
    return Path(result.path)


def test_vary_prints_each_path_and_its_timings(tiny_models: tuple, tmp_path: Path) -> None:
    source = _catalogued_source(tmp_path)
    proc = run_cli("vary", str(source), "--count", "2", "--seed", "5",
                   "--no-progress", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 6  # path, seed line, timings line: per image
    paths = [Path(lines[0]), Path(lines[3])]
    assert all(p.is_file() and p.suffix == ".png" for p in paths) and paths[0] != paths[1]
    assert "seed 5," in lines[1] and "seed 6," in lines[4]
    assert "timings (s):" in lines[2] and "total" in lines[5]
    assert parse_infotext(Image.open(paths[1]).info["parameters"])["prompt"] == "a red fox"


def test_vary_errors_are_one_line_on_stderr(tmp_path: Path) -> None:
    bad = run_cli("vary", "img_abc", "--count", "9", tmp_path=tmp_path)
    assert bad.returncode == 2 and bad.stdout == ""
    (line,) = [line for line in bad.stderr.splitlines() if "sdxl-mcp: error" in line]
    assert line.startswith("sdxl-mcp: error: ") and "count must be ≤ 4" in line
    unknown = run_cli("vary", "img_nosuchimage", "--no-progress", tmp_path=tmp_path)
    assert unknown.returncode == 1 and unknown.stdout == ""
    (line,) = [line for line in unknown.stderr.splitlines() if "sdxl-mcp: error" in line]
    assert line == unknown.stderr.splitlines()[-1]  # after the start-up log lines
    assert line.startswith("sdxl-mcp: error: image") and "img_nosuchimage" in line
