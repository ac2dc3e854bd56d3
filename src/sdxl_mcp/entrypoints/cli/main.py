"""Command line: reads Settings once, then runs one command (arguments: ``args``).

stdout carries only results (paths, timings, JSON); logs and progress bars
go to stderr. Failures exit non-zero with one clear line on stderr.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from sdxl_mcp.entrypoints.cli.args import (
    EDIT_FIELDS,
    GENERATE_FIELDS,
    VARY_FIELDS,
    build_parser,
    request_fields,
)
from sdxl_mcp.errors import SdxlMcpError
from sdxl_mcp.logs import setup_logging
from sdxl_mcp.schemas import (
    EditRequest,
    GenerationRequest,
    GenerationResult,
    VaryRequest,
    describe_validation_error,
)
from sdxl_mcp.settings import Settings, load_settings

log = logging.getLogger("sdxl_mcp")
T = TypeVar("T")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        from sdxl_mcp.bench.cli import main as bench_main

        return bench_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        setup_logging(
            settings.log_dir,
            level=logging.DEBUG if args.verbose else logging.INFO,
            secrets=_secrets(settings),
        )
        if args.command == "generate":
            return _generate(settings, args)
        if args.command == "edit":
            return _edit(settings, args)
        if args.command == "vary":
            return _vary(settings, args)
        if args.command == "gpu":
            return _gpu(settings)
        if args.command == "models":
            return _models(settings, as_json=args.json)
        if args.command == "serve":
            return _serve(settings, args)
        if args.command == "stock":
            return _stock(settings, args)
        if args.command == "make-tiny-models":
            return _make_tiny(args.directory)
    except SdxlMcpError as exc:
        return _fail(exc.message)
    except KeyboardInterrupt:
        return _fail("interrupted", code=130)
    return _fail(f"unknown command {args.command!r}")


def _fail(message: str, code: int = 1) -> int:
    sys.stderr.write(f"sdxl-mcp: error: {message}\n")
    return code


def _secrets(settings: Settings) -> list[str]:
    return [s.get_secret_value() for s in (settings.pexels_api_key, settings.http_token) if s]


def _generate(settings: Settings, args: argparse.Namespace) -> int:
    try:
        request = GenerationRequest(prompt=args.prompt,
                                    **request_fields(args, GENERATE_FIELDS))
    except ValidationError as exc:
        return _fail(describe_validation_error(exc), code=2)
    return _run_job(settings, args, request)


def _edit(settings: Settings, args: argparse.Namespace) -> int:
    try:
        request = EditRequest(image=args.image, prompt=args.prompt,
                              **request_fields(args, EDIT_FIELDS))
    except ValidationError as exc:
        return _fail(describe_validation_error(exc), code=2)
    return _run_job(settings, args, request)


def _vary(settings: Settings, args: argparse.Namespace) -> int:
    """``count`` variations as one job; each path and its timings (or the JSON answer)."""
    try:
        request = VaryRequest(image=args.image, **request_fields(args, VARY_FIELDS))
    except ValidationError as exc:
        return _fail(describe_validation_error(exc), code=2)
    from sdxl_mcp.service.vary import vary

    answer = _with_service(settings, args, lambda service, on_progress: vary(
        service, request, on_progress=on_progress, wait_s=float("inf")))
    if isinstance(answer, SdxlMcpError) or not answer.success:
        return _fail(answer.message)
    if args.json:
        sys.stdout.write(answer.model_dump_json(indent=2) + "\n")
        return 0
    for result in answer.results:
        sys.stdout.write(_summary(result))
    return 0


def _run_job(settings: Settings, args: argparse.Namespace,
             request: GenerationRequest | EditRequest) -> int:
    """Run one generation or edit to the end, with a progress bar on stderr."""

    def start(service: Any, on_progress: Any) -> Any:
        from sdxl_mcp.service.edit import edit
        from sdxl_mcp.service.generate import generate

        if isinstance(request, EditRequest):
            return edit(service, request, on_progress=on_progress, wait_s=float("inf"))
        return generate(service, request, on_progress=on_progress, wait_s=float("inf"))

    result = _with_service(settings, args, start)
    if isinstance(result, SdxlMcpError):
        return _fail(result.message)
    if result.status != "succeeded":
        return _fail(result.message)
    if args.json:
        sys.stdout.write(result.model_dump_json(indent=2) + "\n")
        return 0
    mode = request.refiner_mode if isinstance(request, GenerationRequest) else "after the edit"
    sys.stdout.write(_summary(result, mode))
    if isinstance(request, EditRequest):  # the size note and a stock photo's credit
        sys.stdout.write(f"{result.message}\n")
    return 0


def _with_service(settings: Settings, args: argparse.Namespace,
                  start: Callable[[Any, Callable[[Any], None]], Awaitable[T]]) -> T | SdxlMcpError:
    """``start(service, on_progress)`` to its end, with a progress bar on stderr."""
    from tqdm import tqdm

    bar = None if args.no_progress else tqdm(total=0, file=sys.stderr, unit="step",
                                             dynamic_ncols=True)

    def on_progress(event: Any) -> None:
        if bar is None:
            return
        if bar.total != event.total:
            bar.total = event.total
        bar.set_description(event.message)
        bar.update(event.done - bar.n)

    try:
        return _in_service(settings, lambda service: start(service, on_progress))
    finally:
        if bar is not None:
            bar.close()


def _in_service(settings: Settings, work: Callable[[Any], Awaitable[T]]) -> T | SdxlMcpError:
    """``work(service)`` in a service opened for this command (no preload); its answer, or
    the ``SdxlMcpError`` it raised."""
    import anyio

    from sdxl_mcp.service.facade import ImageService

    async def run() -> T | SdxlMcpError:
        async with ImageService(settings.model_copy(update={"preload": False})) as service:
            # Caught here: raised through the service's task group it would
            # arrive wrapped in an ExceptionGroup and escape main() as a traceback.
            try:
                return await work(service)
            except SdxlMcpError as exc:
                return exc

    return anyio.run(run)


def _summary(result: GenerationResult, mode: str | None = None) -> str:
    """A saved image's path, seed, device, refiner outcome, steps and timings."""
    t = result.timings
    refine = (
        (f"refined ({mode})" if mode else "refined") if result.refined
        else f"not refined{': ' + result.refiner_error if result.refiner_error else ''}"
    )
    return (
        f"{result.path}\n"
        f"seed {result.seed}, {result.precision} on {result.device}, {refine}, "
        f"steps base {result.steps.base} + refiner {result.steps.refiner}\n"
        f"timings (s): model_load {t.model_load:.2f}, queue_wait {t.queue_wait:.2f}, "
        f"base {t.base:.2f}, refiner {t.refiner:.2f}, decode {t.decode:.2f}, "
        f"save {t.save:.2f}, total {t.total:.2f}\n"
    )


def _stock(settings: Settings, args: argparse.Namespace) -> int:
    from sdxl_mcp.schemas import StockSearchRequest
    from sdxl_mcp.service.stock import search_stock
    from sdxl_mcp.stock.pexels import KEY_MISSING_MESSAGE

    try:
        request = StockSearchRequest(
            query=args.query, orientation=args.orientation, size=args.size, color=args.color,
            per_page=args.per_page, page=args.page, download=args.download,
        )
    except ValidationError as exc:
        return _fail(describe_validation_error(exc), code=2)

    if settings.pexels_api_key is None:
        return _fail(KEY_MISSING_MESSAGE)

    result = _in_service(settings, lambda service: search_stock(service, request))
    if isinstance(result, SdxlMcpError):
        return _fail(result.message)
    if args.json:
        sys.stdout.write(result.model_dump_json(indent=2) + "\n")
        return 0
    if result.downloaded is not None:
        sys.stdout.write(f"{result.downloaded.path}\n{result.downloaded.attribution}\n")
    for photo in result.photos:
        sys.stdout.write(f"{photo.id}\t{photo.width}x{photo.height}\t{photo.photographer}\t"
                         f"{photo.url}\n")
    if not result.photos:
        sys.stdout.write(f"no photos found for {args.query!r}\n")
    return 0


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    if args.http:
        from sdxl_mcp.entrypoints.http.app import serve_http

        serve_http(settings, host=args.host, port=args.port)
    else:
        import anyio

        from sdxl_mcp.entrypoints.mcp.stdio import serve_stdio

        anyio.run(serve_stdio, settings)
    _leave_background_threads()
    return 0


def _leave_background_threads() -> None:
    """After the graceful shutdown (the service has stopped its jobs and closed its files),
    exit at once: past a model load still running in a worker thread, which cannot be
    interrupted and which Python would wait for, and past the interpreter's teardown of
    torch's modules. Hosts kill a server that lingers, and a lingering
    one holds GPU memory while the host starts the next (docs/RELIABILITY.md "Exit times")."""
    lingering = [t.name for t in threading.enumerate()
                 if t is not threading.main_thread() and not t.daemon and t.is_alive()]
    if lingering:
        log.info("Exiting past %d background thread(s) still working", len(lingering))
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _gpu(settings: Settings) -> int:
    """What the gpu_status tool returns, plus the load plan (nothing is loaded)."""
    from sdxl_mcp.service.status import gpu_status

    report = _in_service(settings, lambda service: gpu_status(service, plan=True))
    if isinstance(report, SdxlMcpError):
        return _fail(report.message)
    sys.stdout.write(report.model_dump_json(indent=2) + "\n")
    return 0 if report.engine.error is None else 1


def _models(settings: Settings, *, as_json: bool) -> int:
    """What list_models returns: one model per line (or the JSON); nothing is loaded."""
    from sdxl_mcp.service.models import model_list

    found = model_list(settings, None)
    if as_json:
        sys.stdout.write(found.model_dump_json(indent=2) + "\n")
        return 0
    for model in found.models:
        facts = [model.kind, *([f"hash {model.hash}"] if model.hash else []),
                 *(["default"] if model.default else []),
                 *([f"defaults {model.defaults}"] if model.defaults else [])]
        sys.stdout.write(f"{model.name}\t{', '.join(facts)}\n")
    for lora in found.loras:
        sys.stdout.write(f"lora {lora.name}\t{lora.bytes} bytes\n")
    folders = ", ".join(found.model_dirs) or "(none)"
    sys.stderr.write(f"Models folders: {folders} (SDXL_MCP_MODEL_DIRS)\n")
    return 0


def _make_tiny(directory: Path) -> int:
    from sdxl_mcp.backend.factory import write_tiny_models

    base, refiner = write_tiny_models(directory)
    sys.stdout.write(f"{base}\n{refiner}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
