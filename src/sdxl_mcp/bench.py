"""``sdxl-mcp bench``: what the server costs, measured, never assumed.

--overhead   raw diffusers vs the full stdio MCP path on the same tiny models
--startup    spawn `sdxl-mcp serve` -> initialize, tools listed, models ready (and the
             floor: python importing the MCP SDK alone)
--full-size  the real SDXL architecture (random weights) on a GPU, per dtype
--scaling    (Ray backend) throughput with 1 and 2 replicas

Each writes a JSON file into --out and prints a table. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
from tqdm import tqdm

PROMPT = "a lighthouse at dawn, oil painting"


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
    parser.add_argument("--runs", type=int, default=5, help="measured runs per path")
    parser.add_argument("--size", type=int, default=1024, help="width = height in pixels")
    parser.add_argument("--steps", type=int, default=None,
                        help="base schedule length (default 20; --full-size: 50, the guide's)")
    parser.add_argument("--out", type=Path, default=Path("bench_results"),
                        help="folder for the JSON results")
    parser.add_argument("--concurrency", type=int, default=4, help="--scaling: parallel calls")
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


def run(args: argparse.Namespace) -> int:
    args.out.mkdir(parents=True, exist_ok=True)
    if args.steps is None:
        args.steps = 50 if args.full_size else 20
    if args.overhead:
        report = anyio.run(overhead, args.runs, args.size, args.steps)
        name = "overhead"
    elif args.startup:
        report = anyio.run(startup, args.runs)
        name = "startup"
    elif args.scaling:
        report = anyio.run(scaling, args.runs, args.size, args.steps, args.concurrency)
        name = "scaling"
    elif args.hotpath:
        report = hotpath(args.size, args.runs)
        name = "hotpath"
    elif args.sweep:
        report = sweep()
        name = "sweep"
    else:
        full = full_size(args)
        if full is None:
            return 2
        report, name = full, "full_size"
    report["command"] = "sdxl-mcp bench " + " ".join(sys.argv[2:] if len(sys.argv) > 2 else [])
    report["machine"] = machine_facts()
    report["date"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = args.out / f"{name}-{stamp}.json"
    path.write_text(json.dumps(report, indent=2))
    print_table(report)
    sys.stdout.write(f"\nresults: {path}\n")
    return 0


def machine_facts() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "git_commit": _git_commit(),
    }


def _git_commit() -> str | None:
    """The checkout's commit (with "+dirty" for local changes), so a figure names its code."""
    root = Path(__file__).resolve().parents[2]
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


def _server_env(output_dir: Path, log_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SDXL_MCP_")}
    if "SDXL_MCP_TINY_CACHE" in os.environ:
        env["SDXL_MCP_TINY_CACHE"] = os.environ["SDXL_MCP_TINY_CACHE"]
    env.update(
        SDXL_MCP_BASE_MODEL="tiny-random",
        SDXL_MCP_REFINER_MODEL="tiny-random",
        SDXL_MCP_OUTPUT_DIR=str(output_dir),
        SDXL_MCP_LOG_DIR=str(log_dir),
        **extra,
    )
    return env


def _server_params(env: dict[str, str]) -> Any:
    from mcp import StdioServerParameters

    return StdioServerParameters(
        command=sys.executable, args=["-m", "sdxl_mcp.cli", "serve"], env=env
    )


# --------------------------------------------------------------- overhead
async def overhead(runs: int, size: int, steps: int) -> dict[str, Any]:
    """Interleaved raw vs server runs, warm; median per-image difference.

    Both paths run in a child process of their own (the server, and the raw
    worker of ``sdxl_mcp.engine.rawworker``), each on anyio worker threads, so
    process state that moves engine speed is alike on both sides.
    """
    from mcp import Client

    from sdxl_mcp.schemas import GenerationRequest

    tmp = Path(tempfile.mkdtemp(prefix="sdxl-bench-"))
    env = _server_env(tmp / "server", tmp / "logs", SDXL_MCP_MAX_WAIT_S="3600")
    arguments = {"prompt": PROMPT, "width": size, "height": size, "num_inference_steps": steps,
                 "refiner_mode": "ensemble", "high_noise_frac": 0.8, "use_refinement": True}
    # The server's default guidance, so both paths do the same work.
    guidance = GenerationRequest(prompt=PROMPT).guidance_scale
    raw_runs: list[dict[str, float]] = []
    server_times: list[float] = []
    server_timings: list[dict[str, float]] = []
    raw = await anyio.to_thread.run_sync(_RawWorker, env)
    try:
        async with Client(_server_params(env), read_timeout_seconds=3600) as client:

            async def server_run(seed: int) -> float:
                started = time.perf_counter()
                result = await client.call_tool("generate_image", {**arguments, "seed": seed})
                elapsed = time.perf_counter() - started
                if result.is_error:
                    raise RuntimeError(f"server run failed: {result.content}")
                server_timings.append(result.structured_content["timings"])  # type: ignore[index]
                return elapsed

            def raw_run(seed: int) -> dict[str, float]:
                return raw.run({"prompt": PROMPT, "size": size, "steps": steps,
                                "high_noise_frac": 0.8, "seed": seed, "guidance_scale": guidance,
                                "out_path": str(tmp / f"raw-{seed}.png")})

            # Warm both paths (model load, first-call allocations) before measuring.
            await anyio.to_thread.run_sync(raw_run, 0)
            await server_run(0)
            server_timings.clear()
            with tqdm(total=2 * runs, desc="overhead", file=sys.stderr, unit="run") as bar:
                for i in range(1, runs + 1):
                    # Interleaved so slow drift on a shared machine hits both paths alike.
                    raw_runs.append(await anyio.to_thread.run_sync(raw_run, i))
                    bar.update()
                    server_times.append(await server_run(i))
                    bar.update()
    finally:
        await anyio.to_thread.run_sync(raw.close)
    return overhead_report(size, steps, raw_runs, server_times, server_timings)


class _RawWorker:
    """The raw diffusers baseline in a child process (``sdxl_mcp.engine.rawworker``)."""

    def __init__(self, env: dict[str, str]) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "sdxl_mcp.engine.rawworker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
        )
        self._read()  # {"ready": true} once its pipelines are loaded

    def run(self, arguments: dict[str, Any]) -> dict[str, float]:
        assert self._proc.stdin is not None
        self._proc.stdin.write(json.dumps(arguments) + "\n")
        self._proc.stdin.flush()
        return dict(self._read())

    def _read(self) -> dict[str, Any]:
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError("the raw diffusers worker exited; its error is above on stderr")
        return dict(json.loads(line))

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def overhead_report(
    size: int,
    steps: int,
    raw_runs: list[dict[str, float]],
    server_times: list[float],
    server_timings: list[dict[str, float]],
) -> dict[str, Any]:
    """End-to-end medians, and the same split for both paths: engine vs outside it.

    On a busy machine the engine's run-to-run spread (seconds at 1024²) swamps a
    difference of milliseconds end to end. Each path also times its own engine
    span (base + refiner + decode), so "outside the engine" (for raw: the PNG
    write; for the server: PNG, preview, sidecar, catalog, JSON, stdio) is
    measured per run without that noise.
    """
    med = statistics.median
    raw_times = [r["total"] for r in raw_runs]
    raw_engine = [r["engine"] for r in raw_runs]
    server_engine = [t["base"] + t["refiner"] + t["decode"] for t in server_timings]
    raw_outside = [r["total"] - r["engine"] for r in raw_runs]
    server_outside = [total - engine for total, engine in zip(server_times, server_engine,
                                                              strict=True)]
    added_ms = (med(server_times) - med(raw_times)) * 1000
    added_outside_ms = (med(server_outside) - med(raw_outside)) * 1000
    phases = {k: round(med(t[k] for t in server_timings), 4)
              for k in ("queue_wait", "model_load", "base", "refiner", "decode", "save")}

    def row(path: str, values: list[float]) -> dict[str, Any]:
        return _spread_row("path", path, values)

    return {
        "benchmark": "overhead",
        "size": size,
        "steps": steps,
        "runs": len(raw_runs),
        "raw_s": raw_times,
        "server_s": server_times,
        "raw_phases_s": raw_runs,
        "raw_median_s": round(med(raw_times), 4),
        "server_median_s": round(med(server_times), 4),
        "added_ms_per_image": round(added_ms, 1),
        "ratio": round(med(server_times) / med(raw_times), 4),
        "engine_ratio": round(med(server_engine) / med(raw_engine), 4),
        "raw_outside_engine_median_ms": round(med(raw_outside) * 1000, 1),
        "server_outside_engine_median_ms": round(med(server_outside) * 1000, 1),
        "added_outside_engine_ms": round(added_outside_ms, 1),
        "server_phase_medians_s": phases,
        "target_ms": 50,
        "table": [
            row("raw diffusers, end to end", raw_times),
            row("stdio MCP server, end to end", server_times),
            {"path": "added per image, end to end", "median_s": round(added_ms / 1000, 4),
             "min_s": None, "max_s": None},
            row("raw: engine (base+refiner+decode)", raw_engine),
            row("server: engine (base+refiner+decode)", server_engine),
            row("raw: outside the engine (PNG)", raw_outside),
            row("server: outside the engine", server_outside),
            {"path": "added outside the engine", "median_s": round(added_outside_ms / 1000, 4),
             "min_s": None, "max_s": None},
        ],
    }


# ---------------------------------------------------------------- startup
async def startup(runs: int) -> dict[str, Any]:
    """Spawn `sdxl-mcp serve`: seconds to initialize, tools listed and models ready.

    Each run also times the floor no MCP server in Python can beat on this
    machine: a fresh interpreter importing the MCP SDK's server and exiting.
    """
    from mcp import Client

    tmp = Path(tempfile.mkdtemp(prefix="sdxl-bench-"))
    init_times: list[float] = []
    listed_times: list[float] = []
    ready_times: list[float] = []
    floor_times: list[float] = []
    env = _server_env(tmp / "out", tmp / "logs", SDXL_MCP_PRELOAD="true")
    with tqdm(total=runs, desc="startup", file=sys.stderr, unit="run") as bar:
        for _ in range(runs):
            floor_times.append(await anyio.to_thread.run_sync(_sdk_import_floor))
            started = time.perf_counter()
            async with Client(_server_params(env), read_timeout_seconds=600) as client:
                init_times.append(time.perf_counter() - started)
                await client.list_tools()
                listed_times.append(time.perf_counter() - started)
                while True:
                    status = await client.call_tool("gpu_status", {})
                    state = (status.structured_content or {}).get("engine", {}).get("state")
                    if state in ("ready", "failed"):
                        break
                    await anyio.sleep(0.02)
                ready_times.append(time.perf_counter() - started)
            bar.update()

    def row(milestone: str, values: list[float]) -> dict[str, Any]:
        return _spread_row("milestone", milestone, values)

    return {
        "benchmark": "startup",
        "runs": runs,
        "initialize_s": [round(t, 4) for t in init_times],
        "tools_listed_s": [round(t, 4) for t in listed_times],
        "ready_s": [round(t, 4) for t in ready_times],
        "sdk_import_floor_s": [round(t, 4) for t in floor_times],
        "initialize_median_s": round(statistics.median(init_times), 4),
        "tools_listed_median_s": round(statistics.median(listed_times), 4),
        "ready_median_s": round(statistics.median(ready_times), 4),
        "sdk_import_floor_median_s": round(statistics.median(floor_times), 4),
        "target_initialize_s": 1.0,
        "table": [
            row("floor: python + MCP SDK import", floor_times),
            row("initialize answered", init_times),
            row("tools listed", listed_times),
            row("models ready (PRELOAD)", ready_times),
        ],
    }


def _spread_row(label_key: str, label: str, values: list[float]) -> dict[str, Any]:
    """One table row: median, min and max seconds of a series of runs."""
    return {label_key: label, "median_s": round(statistics.median(values), 4),
            "min_s": round(min(values), 4), "max_s": round(max(values), 4)}


def _sdk_import_floor() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import mcp.server.mcpserver"], check=True)
    return time.perf_counter() - started


# ---------------------------------------------------------------- scaling
async def scaling(runs: int, size: int, steps: int, concurrency: int) -> dict[str, Any]:
    """Images per second through ImageService on Ray Serve, 1 vs 2 CPU replicas.

    One torch thread per replica, so two replicas on two cores can show the gain.
    """
    from sdxl_mcp.settings import Settings

    tmp = Path(tempfile.mkdtemp(prefix="sdxl-bench-"))
    rows = []
    total = max(concurrency, runs * concurrency // 2 * 2)
    for replicas in (1, 2):
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None, backend="ray", replicas=replicas, ray_torch_threads=1,
            ray_num_cpus=1, base_model="tiny-random", refiner_model="tiny-random",
            preload=False, output_dir=tmp / f"r{replicas}", log_dir=tmp / "logs",
            max_queue=total, max_wait_s=3600,
        )
        elapsed = await _throughput(settings, total, concurrency, size, steps)
        rows.append({"replicas": replicas, "images": total, "concurrency": concurrency,
                     "seconds": round(elapsed, 3),
                     "images_per_s": round(total / elapsed, 4)})
    ratio = rows[1]["images_per_s"] / rows[0]["images_per_s"]
    return {"benchmark": "scaling", "size": size, "steps": steps,
            "throughput_ratio_2_vs_1": round(ratio, 3), "table": rows}


async def _throughput(
    settings: Any, total: int, concurrency: int, size: int, steps: int
) -> float:
    """Seconds for ``total`` generations at ``concurrency`` through the service."""
    from sdxl_mcp.cluster.ray_backend import RayBackend
    from sdxl_mcp.schemas import GenerationRequest
    from sdxl_mcp.service import ImageService

    def request(i: int) -> GenerationRequest:
        return GenerationRequest(prompt=PROMPT, width=size, height=size,
                                 num_inference_steps=steps, seed=i)

    backend = RayBackend(settings)
    await anyio.to_thread.run_sync(backend.load)
    try:
        async with ImageService(settings, backend=backend) as service:
            # Warm every replica before timing.
            async with anyio.create_task_group() as tg:
                for i in range(settings.replicas):
                    tg.start_soon(service.generate, request(i), None, 3600.0)
            limiter = anyio.Semaphore(concurrency)
            with tqdm(total=total, desc=f"{settings.replicas} replica(s)",
                      file=sys.stderr) as bar:

                async def one(i: int) -> None:
                    async with limiter:
                        await service.generate(request(100 + i), None, 3600.0)
                        bar.update()

                started = time.perf_counter()
                async with anyio.create_task_group() as tg:
                    for i in range(total):
                        tg.start_soon(one, i)
                return time.perf_counter() - started
    finally:
        await anyio.to_thread.run_sync(backend.shutdown)


# ---------------------------------------------------------------- hot path
def hotpath(size: int, runs: int) -> dict[str, Any]:
    """Median ms of each step the server adds after the engine returns an image.

    The image is noise (like the tiny model's output): the worst case for PNG.
    """
    import numpy as np
    from PIL import Image

    from sdxl_mcp.preview import preview_jpeg, preview_jpeg_image
    from sdxl_mcp.schemas import GenerationResult, ImageInfo
    from sdxl_mcp.storage import CatalogRecord, ImageStore

    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    tmp = Path(tempfile.mkdtemp(prefix="sdxl-bench-"))
    store = ImageStore(tmp)
    timings: dict[str, list[float]] = {}

    def timed(name: str, fn: Any) -> Any:
        started = time.perf_counter()
        out = fn()
        timings.setdefault(name, []).append((time.perf_counter() - started) * 1000)
        return out

    def once(i: int) -> None:
        for level in (0, 1, 6):
            saved = timed(f"png save, compress_level={level}",
                          lambda level=level: store.save_image(  # type: ignore[misc]
                              image, seed=i, infotext="x", compress_level=level))
        timed("preview JPEG ≤512 px, from the file", lambda: preview_jpeg(saved.path))
        timed("preview JPEG ≤512 px, from memory", lambda: preview_jpeg_image(image))
        result = timed("result model + JSON", lambda: GenerationResult(
            success=True, status="succeeded", message="ok", path=str(saved.path),
            image=ImageInfo(url=str(saved.path), source="sdxl", width=size, height=size),
        ).model_dump_json())
        timed("sidecar JSON write (atomic)",
              lambda: store.write_sidecar(saved.path, json.loads(result)))
        timed("catalog insert (SQLite WAL)", lambda: store.catalog.add(
            CatalogRecord.from_saved(saved, prompt="x", seed=i, result_json=result)))

    for i in range(max(3, runs)):
        once(i)
    store.close()
    rows = [{"step": name, "median_ms": round(statistics.median(v), 2),
             "min_ms": round(min(v), 2)} for name, v in timings.items()]
    return {"benchmark": "hotpath", "size": size, "runs": max(3, runs), "table": rows}


# ------------------------------------------------------------------ sweep
def sweep() -> dict[str, Any]:
    """Engine-only seconds per image on the tiny models by resolution and steps."""
    from sdxl_mcp.backend import CancelToken
    from sdxl_mcp.engine.sdxl import SDXLEngine
    from sdxl_mcp.schemas import GenerationRequest
    from sdxl_mcp.settings import Settings

    engine = SDXLEngine(Settings(_env_file=None, base_model="tiny-random",  # type: ignore[call-arg]
                                 refiner_model="tiny-random", preload=False))
    engine.load()
    engine.generate(GenerationRequest(prompt=PROMPT, width=256, height=256,
                                      num_inference_steps=20), seed=0)
    rows = []
    grid = [(s, n) for s in (256, 512, 1024) for n in (20, 50)]
    for size, steps in tqdm(grid, desc="sweep", file=sys.stderr):
        request = GenerationRequest(prompt=PROMPT, width=size, height=size,
                                    num_inference_steps=steps)
        started = time.perf_counter()
        out = engine.generate(request, seed=1, cancel=CancelToken())
        rows.append({"size": f"{size}x{size}", "steps": f"{out.steps_base}+{out.steps_refiner}",
                     "total_s": round(time.perf_counter() - started, 3),
                     "base_s": out.timings["base"], "refiner_s": out.timings["refiner"],
                     "decode_s": out.timings["decode"]})
    return {"benchmark": "sweep", "models": "tiny-random", "table": rows}


# -------------------------------------------------------------- full size
def full_size(args: argparse.Namespace) -> dict[str, Any] | None:
    from sdxl_mcp.engine.benchwork import (
        UNET_SETTINGS,
        cuda_available,
        full_size_run,
        unet_settings_run,
        vae_decode_run,
    )

    device = args.device
    if device.startswith("cuda") and not cuda_available():
        if not args.force:
            sys.stderr.write(
                "sdxl-mcp: error: --full-size needs a CUDA GPU (full-size SDXL on a CPU takes "
                "minutes per step); pass --force --device cpu to run it anyway\n"
            )
            return None
        device = "cpu"
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]

    def say(message: str) -> None:
        sys.stderr.write(f"[full-size] {message}\n")

    rows = full_size_run(device=device, dtypes=dtypes, size=args.size, steps=args.steps,
                         kind=args.models, progress=say)
    settings = None if not args.skip_compile else tuple(
        name for name, _ in UNET_SETTINGS if name != "compile")
    speed = unet_settings_run(device=device, dtype_name=args.settings_dtype, size=args.size,
                              steps=args.settings_steps, kind=args.models, settings=settings,
                              progress=say)
    vae = vae_decode_run(device=device, size=args.size, kind=args.models, dtypes=tuple(dtypes),
                         progress=say)
    return {
        "benchmark": "full_size",
        "models": args.models,
        "table": rows,
        "tables": {
            f"speed settings: base UNet, one CFG step at {args.size}²": speed,
            f"VAE decode at {args.size}² (random weights: 'finite' shows the path, "
            "not the real VAE's fp16 behaviour)": vae,
        },
    }
