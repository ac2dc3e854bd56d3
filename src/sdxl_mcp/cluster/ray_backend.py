"""Scale-out backend: N resident engines as a Ray Serve deployment.

The front (MCP/REST server, ImageService) keeps admission, jobs, storage and
metadata; each replica holds one ``SDXLEngine`` and streams back progress
events, then the image pixels, seed, timings and refiner outcome. Edits go
the same way (the source and mask travel as PNG bytes, lossless, and are
decoded on the replica); variations run one by one, each on a free replica. Ray Serve
does the rest: one replica per GPU, routing, restarts, cluster deployment.

This is the only module that imports ray (an optional extra:
``pip install 'sdxl-mcp[ray]'``).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, fields
from typing import Any

import numpy as np
import ray
from PIL import Image
from ray import serve
from ray.serve.exceptions import RequestCancelledError

from sdxl_mcp.backend.base import (
    CancelToken,
    EngineOutput,
    EngineStateName,
    EngineStatus,
    LoadOnce,
    ProgressCallback,
    backend_capacity,
)
from sdxl_mcp.backend.base import ProgressEvent as Event
from sdxl_mcp.backend.batching import OutputCallback, one_by_one
from sdxl_mcp.errors import (
    Cancelled,
    GenerationFailed,
    ModelUnavailable,
    SdxlMcpError,
    error_class,
    first_line,
)
from sdxl_mcp.schemas import EditRequest, GenerationRequest
from sdxl_mcp.settings import Settings

log = logging.getLogger(__name__)

APP_NAME = "sdxl-mcp"


#: What a replica sends of an EngineOutput besides the pixels (plain values over Ray).
_WIRE_FIELDS = tuple(f.name for f in fields(EngineOutput) if f.name != "image")


def _deployment_failure(exc: Exception) -> SdxlMcpError:
    log.exception("Ray Serve deployment failed")
    return ModelUnavailable(
        f"Ray Serve deployment failed: {first_line(exc)}. Check "
        "SDXL_MCP_RAY_ADDRESS and the replicas' logs (ray status / the Ray dashboard)."
    )


def _to_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _from_png(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as opened:
        opened.load()
        return opened.copy()


def _error_from(payload: dict[str, Any]) -> SdxlMcpError:
    """Rebuild the replica's error on the front (same class, message, retry facts)."""
    cls = error_class(payload.get("code"))
    exc = cls.__new__(cls)
    SdxlMcpError.__init__(exc, payload["message"], retry_after_s=payload.get("retry_after_s"))
    return exc


class EngineReplica:
    """One Ray Serve replica: a resident engine, one generation at a time."""

    def __init__(self, settings_json: str, torch_threads: int) -> None:
        from sdxl_mcp.engine.gpu import limit_cpu_threads
        from sdxl_mcp.engine.sdxl import SDXLEngine

        if torch_threads > 0:
            limit_cpu_threads(torch_threads)
        self.settings = Settings.model_validate_json(settings_json)
        self.engine = SDXLEngine(self.settings)
        self.engine.load()  # the replica reports healthy only once its models are in
        context = ray.get_runtime_context()
        self.name = context.get_actor_name() or f"replica-{os.getpid()}"
        self.current_job: str | None = None

    async def generate(self, request_json: str, seed: int, job_id: str) -> Any:
        """Stream progress events, then the result (or an error payload)."""
        request = GenerationRequest.model_validate_json(request_json)
        async for item in self._stream(
            job_id, lambda report, token: self.engine.generate(request, seed, report, token)
        ):
            yield item

    async def edit(self, request_json: str, seed: int, source_png: bytes,
                   mask_png: bytes | None, job_id: str) -> Any:
        """An edit, streamed like :meth:`generate`; source and mask arrive as PNG bytes."""
        request = EditRequest.model_validate_json(request_json)
        source = _from_png(source_png)
        mask = _from_png(mask_png) if mask_png is not None else None
        async for item in self._stream(job_id, lambda report, token: self.engine.edit(
                request, seed, source, mask, report, token)):
            yield item

    async def _stream(
        self, job_id: str, work: Callable[[ProgressCallback, CancelToken], EngineOutput]
    ) -> Any:
        """Run ``work`` in a thread: its progress events, then its result or error."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        token = CancelToken()

        def on_progress(event: Event) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, ("progress", event))

        def run() -> EngineOutput:
            try:
                return work(on_progress, token)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, ("done", None))

        self.current_job = job_id
        future = loop.run_in_executor(None, run)
        try:
            while True:
                kind, event = await queue.get()
                if kind == "done":
                    break
                yield {"type": "progress", "replica": self.name, **asdict(event)}
            try:
                output = await future
            except SdxlMcpError as exc:
                yield {"type": "error", "code": exc.code, "message": exc.message,
                       "retry_after_s": exc.retry_after_s}
                return
            yield {"type": "result", "replica": self.name,
                   "pixels": np.asarray(output.image),
                   **{name: getattr(output, name) for name in _WIRE_FIELDS}}
        except asyncio.CancelledError:
            # The caller cancelled (tool, client or timeout): stop the denoising
            # loop and wait for the thread, so this replica is free when we return.
            token.cancel("cancelled by the client")
            with contextlib.suppress(BaseException):
                await asyncio.shield(future)
            raise
        finally:
            self.current_job = None

    def status(self) -> dict[str, Any]:
        return {**self.engine.status().model_dump(), "replica": self.name,
                "current_job": self.current_job}


class RayBackend:
    """The ``Backend`` the service uses when ``SDXL_MCP_BACKEND=ray``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.capacity = backend_capacity(settings)
        self._loading = LoadOnce()
        self._handle: Any = None
        self._started_ray = False
        self._replicas: dict[str, dict[str, Any]] = {}
        #: Set at shutdown: lets the thread that started Ray end (see ``_init_ray``).
        self._ray_home_done = threading.Event()

    @property
    def state(self) -> EngineStateName:
        return self._loading.state

    def load(self) -> None:
        self._loading.load(self._deploy, _deployment_failure)

    def _deploy(self) -> None:
        s = self.settings
        if not ray.is_initialized():
            address = s.ray_address or None
            log.info("Connecting to Ray at %s", address or "a new local instance")
            self._init_ray(address)
            self._started_ray = address is None
        gpus = s.ray_num_gpus
        if gpus is None:  # auto: one GPU per replica when the cluster has GPUs
            gpus = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
        options: dict[str, Any] = {"num_cpus": s.ray_num_cpus}
        if gpus:
            options["num_gpus"] = gpus
        replica_settings = s.model_copy(update={"backend": "local", "preload": True})
        deployment = serve.deployment(
            name="EngineReplica",
            num_replicas=s.replicas,
            max_ongoing_requests=1,  # one generation per engine; the front queues
            ray_actor_options=options,
            health_check_period_s=10,
        )(EngineReplica)
        log.info("Deploying %d engine replica(s) with %s", s.replicas, options)
        self._handle = serve.run(
            deployment.bind(replica_settings.model_dump_json(), s.ray_torch_threads),
            name=APP_NAME, route_prefix=None,
        )
        log.info("Ray Serve engine replicas ready")

    def _init_ray(self, address: str | None) -> None:
        """``ray.init`` on a thread that lives as long as this backend.

        A local Ray starts its head processes (gcs_server, raylet) with
        PR_SET_PDEATHSIG, which Linux fires when the *thread* that forked them
        exits. Loading runs in a worker thread (the preload, or a job's) that AnyIO
        retires once idle, so Ray is started from a thread that stays (tests/cluster/
        test_ray_head.py)."""
        started = threading.Event()
        failure: list[BaseException] = []

        def home() -> None:
            try:
                ray.init(address=address, include_dashboard=False, configure_logging=False,
                         log_to_driver=False, ignore_reinit_error=True)
            except BaseException as exc:  # handed to the loading thread below
                failure.append(exc)
                return
            finally:
                started.set()
            self._ray_home_done.wait()

        self._ray_home_done.clear()
        threading.Thread(target=home, name="sdxl-mcp ray home", daemon=True).start()
        started.wait()
        if failure:
            raise failure[0]

    def generate(self, request: GenerationRequest, seed: int,
                 on_progress: ProgressCallback | None = None,
                 cancel: CancelToken | None = None) -> EngineOutput:
        return self._call("generate", (request.model_dump_json(), seed), seed, "Generation",
                          on_progress, cancel)

    def generate_batch(self, request: GenerationRequest, seeds: Sequence[int],
                       on_progress: ProgressCallback | None = None,
                       cancel: CancelToken | None = None,
                       on_output: OutputCallback | None = None) -> list[EngineOutput]:
        """One by one, each on whichever replica is free: a job holds one slot, so
        spreading its images over several replicas would take slots it was not given."""
        return one_by_one(self.generate, request, seeds, on_progress, cancel, on_output)

    def edit(self, request: EditRequest, seed: int, source: Image.Image,
             mask: Image.Image | None = None, on_progress: ProgressCallback | None = None,
             cancel: CancelToken | None = None) -> EngineOutput:
        """On a replica; the source (as RGB, which the engine makes of it anyway) and
        the mask travel as PNG bytes, lossless, so the pixels equal a local edit's."""
        args = (request.model_dump_json(), seed, _to_png(source.convert("RGB")),
                _to_png(mask) if mask is not None else None)
        return self._call("edit", args, seed, "Edit", on_progress, cancel)

    def _call(
        self,
        method: str,
        args: tuple[Any, ...],
        seed: int,
        what: str,
        on_progress: ProgressCallback | None,
        cancel: CancelToken | None,
    ) -> EngineOutput:
        """Stream ``method`` on a replica: progress, cancel and errors as on the engine."""
        cancel = cancel or CancelToken()
        started = time.perf_counter()
        self.load()
        model_load = round(time.perf_counter() - started, 4)
        job_id = f"job-{seed}-{time.monotonic_ns()}"
        stream = getattr(self._handle.options(stream=True), method).remote(*args, job_id)
        stop = threading.Event()

        def forward_cancel() -> None:
            while not stop.wait(0.02):
                if cancel.cancelled:
                    stream.cancel()
                    return

        watcher = threading.Thread(target=forward_cancel, daemon=True)
        watcher.start()
        try:
            for item in stream:
                kind = item["type"]
                if kind == "progress":
                    replica = item.pop("replica")
                    self._replicas.setdefault(replica, {})["current_job"] = job_id
                    item.pop("type")
                    if on_progress is not None:
                        on_progress(Event(**item))
                elif kind == "error":
                    raise _error_from(item)
                else:
                    return self._output(item, model_load)
        except RequestCancelledError:
            raise Cancelled(f"{what} {cancel.reason} on its replica.") from None
        except ray.exceptions.RayError as exc:
            if cancel.cancelled:
                raise Cancelled(f"{what} {cancel.reason} on its replica.") from None
            log.warning("Replica failed mid-%s: %s", what.lower(), str(exc).splitlines()[0])
            raise GenerationFailed(
                f"The engine replica running this {what.lower()} died; Ray Serve is replacing "
                "it. Send the request again."
            ) from None
        finally:
            stop.set()
        raise GenerationFailed("The replica ended the stream without a result; try again.")

    def _output(self, item: dict[str, Any], model_load: float) -> EngineOutput:
        replica = item["replica"]
        self._replicas[replica] = {"current_job": None, "device": item["device"],
                                   "precision": item["precision"]}
        timings = dict(item["timings"])
        timings["model_load"] = round(timings.get("model_load", 0.0) + model_load, 4)
        return EngineOutput(
            image=Image.fromarray(item["pixels"]),
            **{name: item[name] for name in _WIRE_FIELDS if name not in ("timings", "notes")},
            timings=timings,
            notes=[*item["notes"], f"ran on replica {replica.rsplit('#', 1)[-1]}"],
        )

    def loaded_loras(self) -> None:
        """Each replica keeps its own adapters: the front cannot say which."""
        return None

    def loaded_models(self) -> None:
        """Each replica switches its own base model: the front cannot say which."""
        return None

    def unload(self) -> bool:
        """Replicas keep their models (Ray Serve scales replicas, not their memory)."""
        return False

    def status(self, plan: bool = False) -> EngineStatus:
        """The front's view of its replicas (``plan`` deploys nothing: replicas plan
        on their own machines, and report device and precision once they ran)."""
        replicas: list[dict[str, Any]] = []
        counts: dict[Any, Any]
        if self.state == "ready":
            try:
                app = serve.status().applications.get(APP_NAME)
                deployment = app.deployments.get("EngineReplica") if app else None
                counts = dict(deployment.replica_states) if deployment else {}
            except Exception as exc:  # the controller may be restarting
                counts = {"unknown": str(exc)[:100]}
            replicas = [{"replica": name, **info} for name, info in self._replicas.items()]
        else:
            counts = {}
        first = next(iter(self._replicas.values()), {})
        return EngineStatus(
            state=self.state,
            error=self._loading.error,
            backend="ray",
            ray_address=self.settings.ray_address or "local",
            replicas_wanted=self.settings.replicas,
            replica_states={str(k): v for k, v in counts.items()},
            replicas=replicas,
            device=first.get("device"),
            dtype=first.get("precision"),
            load_time_s=self._loading.load_time_s,
            base_model=self.settings.base_model,
            refiner_model=self.settings.refiner_model or None,
        )

    def shutdown(self) -> None:
        """Tear down what this backend started (tests, bench)."""
        try:
            serve.delete(APP_NAME)
        except Exception:
            log.debug("serve.delete failed", exc_info=True)
        if self._started_ray:
            serve.shutdown()
            ray.shutdown()
        self._ray_home_done.set()  # the thread that started Ray may end now
        self._loading.reset()


__all__ = ["EngineReplica", "RayBackend"]
