"""`sdxl-mcp bench` runs end to end on tiny settings (figures are not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from sdxl_mcp.bench.overhead import overhead, overhead_report
from sdxl_mcp.bench.startup import startup
from sdxl_mcp.engine.footprint import reference_param_counts
from sdxl_mcp.engine.memory import plan_memory
from sdxl_mcp.engine.precision import GIB, HardwareFacts
from sdxl_mcp.schemas import SAMPLER_NAMES


def test_overhead_reports_both_paths_and_the_difference(tiny_models: tuple) -> None:
    report = anyio.run(overhead, 1, 256, 20)
    assert len(report["raw_s"]) == len(report["server_s"]) == 1
    assert report["added_ms_per_image"] == pytest.approx(
        (report["server_median_s"] - report["raw_median_s"]) * 1000, abs=0.2)
    assert set(report["server_phase_medians_s"]) >= {"base", "refiner", "decode", "save"}
    assert report["raw_outside_engine_median_ms"] > 0
    assert report["server_outside_engine_median_ms"] > 0


def test_overhead_report_splits_engine_time_from_what_each_path_adds() -> None:
    raw_runs = [{"total": 10.2, "base": 8.0, "engine": 10.0, "save": 0.2},
                {"total": 12.3, "base": 9.0, "engine": 12.0, "save": 0.3}]
    server_times = [11.0, 10.5]
    server_timings = [
        {"queue_wait": 0.0, "model_load": 0.0, "base": 8.5, "refiner": 2.0, "decode": 0.25,
         "save": 0.2},
        {"queue_wait": 0.0, "model_load": 0.0, "base": 8.0, "refiner": 1.8, "decode": 0.3,
         "save": 0.2},
    ]
    report = overhead_report(1024, 20, raw_runs, server_times, server_timings)
    # End to end: medians 10.75 vs 11.25 s.
    assert report["added_ms_per_image"] == pytest.approx(-500.0)
    # Outside the engine: raw 0.2 / 0.3 s (median 0.25), server 0.25 / 0.4 s (median 0.325).
    assert report["raw_outside_engine_median_ms"] == pytest.approx(250.0)
    assert report["server_outside_engine_median_ms"] == pytest.approx(325.0)
    assert report["added_outside_engine_ms"] == pytest.approx(75.0)
    assert report["engine_ratio"] == pytest.approx(10.425 / 11.0, abs=1e-4)


def test_startup_reports_initialize_and_ready(tiny_models: tuple) -> None:
    report = anyio.run(startup, 1)
    assert 0 < report["initialize_median_s"] <= report["tools_listed_median_s"]
    assert report["tools_listed_median_s"] <= report["ready_median_s"]
    assert report["sdk_import_floor_median_s"] > 0
    assert 0 < report["tools_list_chars"] < report["tools_list_budget_chars"]


def test_full_size_code_path_runs_on_the_tiny_configs(tiny_models: tuple) -> None:
    from sdxl_mcp.bench.fullsize import full_size_run

    rows = full_size_run(device="cpu", dtypes=["fp32"], size=256, steps=4, refiner_steps=2,
                         kind="tiny")
    row = rows[0]
    assert row["dtype"] == "fp32" and row["base_it_s"] > 0 and row["refiner_it_s"] > 0
    assert row["ensemble_s"] > 0 and row["vae_decode_s"] > 0


def test_speed_settings_table_adds_one_setting_per_row(tiny_models: tuple) -> None:
    from sdxl_mcp.bench.fullsize import unet_settings_run

    rows = unet_settings_run(device="cpu", dtype_name="fp32", size=128, steps=1, kind="tiny",
                             settings=("classic attention", "sdpa", "channels_last", "fuse_qkv"))
    assert [r["setting"] for r in rows] == [
        "classic attention", "+ sdpa", "+ channels_last", "+ fuse_qkv"]
    assert all(r["ms_per_step"] > 0 and r["it_s"] > 0 for r in rows)
    assert rows[0]["vs_sdpa"] is None and rows[1]["vs_sdpa"] == 1.0
    assert rows[3]["how"] == "SDXL_MCP_FUSE_QKV=true"


def test_vae_decode_table_has_a_row_per_dtype(tiny_models: tuple) -> None:
    from sdxl_mcp.bench.fullsize import vae_decode_run

    rows = vae_decode_run(device="cpu", size=128, kind="tiny", dtypes=("fp32", "bf16"))
    assert [r["dtype"] for r in rows] == ["fp32", "bf16"]
    assert all(r["decode_s"] > 0 and r["finite"] for r in rows)


def test_edit_table_times_one_img2img_edit(tiny_models: tuple) -> None:
    from sdxl_mcp.bench.edits import edit_run

    (row,) = edit_run(device="cpu", dtype_name="fp32", size=128, steps=10, kind="tiny")
    assert (row["what"], row["strength"], row["steps_run"]) == ("img2img edit", 0.6, 6)
    assert row["edit_s"] > 0 and row["it_s_incl_decode"] > 0


def test_variations_table_has_one_by_one_and_batched_rows(tiny_models: tuple) -> None:
    from sdxl_mcp.bench.edits import variations_run

    rows = variations_run(device="cpu", dtype_name="fp32", size=128, steps=2, count=2,
                          kind="tiny")
    assert [r["mode"] for r in rows] == ["one by one", "batched"]
    assert all(r["total_s"] > 0 and r["count"] == 2 for r in rows)
    assert rows[0]["speedup"] == 1.0
    # On a CPU the engine runs variations one by one (engine.batch.batches).
    assert [r["engine_default"] for r in rows] == [True, False]


def test_full_size_refuses_a_cpu_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sdxl_mcp.bench.cli import main

    assert main(["--full-size", "--out", str(tmp_path)]) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().err
    assert list(tmp_path.glob("*.json")) == []


def test_bench_writes_json_with_the_command(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "sdxl_mcp", "bench", "--hotpath", "--runs", "1",
         "--size", "64", "--out", str(tmp_path)],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    (result,) = tmp_path.glob("hotpath-*.json")
    data = json.loads(result.read_text())
    assert data["command"].startswith("sdxl-mcp bench --hotpath")
    assert data["machine"]["cpus"] and data["date"]
    assert "git_commit" in data["machine"]
    one, five, fifteen = data["load_average_at_start"]  # Linux has one
    assert all(isinstance(v, float) for v in (one, five, fifteen))
    assert "catalog insert" in proc.stdout


def test_full_size_report_has_the_speed_settings_and_vae_tables(
    tmp_path: Path, tiny_models: tuple
) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "sdxl_mcp", "bench", "--full-size", "--force", "--device",
         "cpu", "--models", "tiny", "--size", "128", "--steps", "4", "--dtypes", "fp32",
         "--settings-dtype", "fp32", "--settings-steps", "1", "--skip-compile",
         "--out", str(tmp_path)],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    (result,) = tmp_path.glob("full_size-*.json")
    tables = json.loads(result.read_text())["tables"]
    speed = next(rows for title, rows in tables.items() if title.startswith("speed settings"))
    assert "+ compile" not in [r["setting"] for r in speed]  # --skip-compile
    assert "+ channels_last" in [r["setting"] for r in speed]
    assert "speed settings: base UNet" in proc.stdout and "VAE decode" in proc.stdout
    variations = next(rows for title, rows in tables.items() if title.startswith("variations"))
    assert [r["mode"] for r in variations] == ["one by one", "batched"]
    assert any(title.startswith("edit: img2img") for title in tables)
    assert any(title.startswith("drafts and LoRA") for title in tables)  # bench.draft
    samplers = next(rows for title, rows in tables.items() if title.startswith("samplers"))
    assert [r["sampler"] for r in samplers] == list(SAMPLER_NAMES)  # bench.models
    switch = next(rows for title, rows in tables.items() if title.startswith("model switch"))
    assert [r["switch to"] for r in switch] == ["second", "first", "second"]
    assert all(r["seconds"] > 0 for r in switch)
    tiers = next(rows for title, rows in tables.items() if title.startswith("memory tiers"))
    for cap in (8, 12, 16):  # bench.memory: the auto tier and the next faster one per card
        rows = [r for r in tiers if r["card_gb"] == cap]
        picked = plan_memory("auto", HardwareFacts("cuda", "cuda:0", total_memory_bytes=cap * GIB),
                             "fp32", reference_param_counts("base"),
                             reference_param_counts("refiner")).tier
        assert rows[-1]["tier"] == picked and rows[-1]["auto"] and len(rows) <= 2
    assert all(r["seconds"] > 0 and not r["capped"] for r in tiers)


def test_the_bench_package_and_its_parser_load_neither_torch_nor_the_mcp_sdk() -> None:
    code = (
        "import sys; from sdxl_mcp.bench import build_parser; build_parser(); "
        "print('torch' in sys.modules, 'mcp' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "False"]


# ------------------------------------------------- drafts and LoRA (bench.draft)
def test_draft_and_lora_rows_run_on_the_tiny_configs(tiny_models: tuple) -> None:
    from sdxl_mcp.bench.draft import draft_run

    rows = draft_run(device="cpu", dtype_name="fp32", size=64, kind="tiny", draft_steps=2,
                     regular_steps=1, rank=4)
    by_name = {r["row"]: r for r in rows}
    assert list(by_name) == [
        "draft 2 steps, no LoRA", "regular 1 steps + CFG, no LoRA",
        "draft 2 steps, LoRA active (unfused, as the engine runs it)",
        "regular 1 steps + CFG, LoRA active", "regular 1 steps + CFG, LoRA loaded but disabled",
        "draft 2 steps, LoRA fused into the weights"]
    draft = by_name["draft 2 steps, LoRA active (unfused, as the engine runs it)"]
    assert draft["scheduler"] == "EulerDiscreteScheduler trailing" and draft["guidance"] == 1.0
    assert draft["lora"].startswith("active: rank 4,")
    assert by_name["regular 1 steps + CFG, no LoRA"]["scheduler"] == "EulerDiscreteScheduler"
    assert all(r["denoise_s"] > 0 and r["decode_s"] > 0 and r["vs_no_lora"] for r in rows)


def test_the_bench_lora_has_sdxl_lightnings_shape_on_the_real_unet() -> None:
    import torch
    from diffusers import UNet2DConditionModel

    from sdxl_mcp.bench.draft import attach_lightning_shaped_lora
    from sdxl_mcp.bench.pipelines import model_config

    with torch.device("meta"):  # the real architecture, no memory
        unet = UNet2DConditionModel.from_config(model_config("base_unet", "sdxl"))
    shape = attach_lightning_shaped_lora(unet)
    # sdxl_lightning_4step_lora.safetensors: 788 layers at rank 64, 394 MB in fp16.
    assert shape == {"layers": 788, "params": 196_751_360}


def test_the_bench_lora_changes_the_unets_output_when_active(tiny_models: tuple) -> None:
    import torch

    from sdxl_mcp.bench.draft import ADAPTER, attach_lightning_shaped_lora
    from sdxl_mcp.bench.fullsize import _unet_inputs
    from sdxl_mcp.bench.pipelines import build_base_unet

    unet = build_base_unet("tiny", "cpu", torch.float32)
    inputs = _unet_inputs(unet, 64, "cpu", torch.float32)
    with torch.inference_mode():
        plain = unet(**inputs)[0]
    attach_lightning_shaped_lora(unet, rank=4)
    unet.set_adapters([ADAPTER], weights=[1.0])
    with torch.inference_mode():
        active = unet(**inputs)[0]
        unet.disable_adapters()
        disabled = unet(**inputs)[0]
    assert not torch.allclose(active, plain)
    assert torch.equal(disabled, plain)


def test_hotpath_times_a_given_picture_like_the_photo_like_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    from PIL import Image

    from sdxl_mcp.bench.hotpath import hotpath

    picture = tmp_path / "holiday.jpg"
    Image.new("RGB", (90, 40), (200, 120, 40)).save(picture)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    report = hotpath(48, 1, [picture])
    rows = {row["step"]: row for row in report["table"]}
    saved = rows["png save holiday.jpg, level 1 (libpng + zlib-ng)"]
    assert saved["bytes"] > 0 and saved["median_ms"] > 0
    assert "after the engine, all of it: holiday.jpg (save_generation ‖ preview)" in rows
    assert list(scratch.iterdir()) == []  # its PNGs are gone with it


def test_hotpath_refuses_an_image_it_cannot_read_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sdxl_mcp.bench.cli import main

    bad = tmp_path / "notes.png"
    bad.write_text("not a picture")
    out = tmp_path / "out"
    assert main(["--hotpath", "--size", "32", "--image", str(bad), "--out", str(out)]) == 2
    assert capsys.readouterr().err.splitlines()[-1].startswith(
        f"sdxl-mcp: error: --image {bad}: not a picture")
    assert not list(out.glob("*.json"))
