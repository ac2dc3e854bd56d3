"""The resident two-stage SDXL engine: base -> latents -> refiner -> image.

One engine per process. Both pipelines are loaded once and placed by the memory
tier (``engine.memory``, ``engine.offload``); the refiner shares ``text_encoder_2``
and ``vae`` with the base; the edit pipelines (``engine.edit``) are built from them
and share every weight. A request may name another base (``engine.models``), and
an idle service may give the models back (``unload``; the next job reloads them).
Diffusers pipelines are not thread-safe, so a lock makes exactly one generation,
switch or unload run at a time.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from diffusers import (
    AutoencoderKL,
    StableDiffusionXLImg2ImgPipeline,
    StableDiffusionXLPipeline,
)
from PIL import Image

from sdxl_mcp.backend.base import (
    CancelToken,
    EngineOutput,
    EngineStateName,
    EngineStatus,
    LoadOnce,
    ProgressCallback,
    ProgressEvent,
)
from sdxl_mcp.engine.basestage import run_base, run_fields
from sdxl_mcp.engine.batch import BatchMixin
from sdxl_mcp.engine.devices import (
    TORCH_DTYPES,
    bad_pixels,
    free_device_memory,
    is_out_of_memory,
    speed_up_unet,
)
from sdxl_mcp.engine.edit import EditPipelines, run_edit
from sdxl_mcp.engine.loading import load_pipeline, model_hash_of
from sdxl_mcp.engine.loadplan import LoadPlan, plan_load, resolve_model
from sdxl_mcp.engine.lora import LoraAdapters
from sdxl_mcp.engine.memory import Tier
from sdxl_mcp.engine.models import BaseModels
from sdxl_mcp.engine.offload import park_base, place, place_base
from sdxl_mcp.engine.precision import PrecisionDecision
from sdxl_mcp.engine.quiet import quiet_libraries
from sdxl_mcp.engine.refinestage import run_refiner
from sdxl_mcp.engine.samplers import swapped_samplers
from sdxl_mcp.engine.schedules import StepReporter, sequential_refiner_schedule
from sdxl_mcp.errors import (
    Cancelled,
    GenerationFailed,
    ModelUnavailable,
    OutOfMemory,
    SdxlMcpError,
    first_line,
)
from sdxl_mcp.library.models import default_model, find_model
from sdxl_mcp.schemas import EditRequest, GenerationRequest
from sdxl_mcp.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")


# The engine reports progress through its own events instead.
quiet_libraries()


class SDXLEngine(BatchMixin):
    """Resident SDXL base + refiner; implements ``sdxl_mcp.backend.base.Backend``."""

    #: One generation at a time: diffusers pipelines are not thread-safe.
    capacity = 1

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._loading = LoadOnce()
        self._base: StableDiffusionXLPipeline | None = None
        self._refiner: StableDiffusionXLImg2ImgPipeline | None = None
        self._decision: PrecisionDecision | None = None
        self._load_plan: LoadPlan | None = None
        self._base_path: str | None = None
        self._refiner_path: str | None = None
        #: One generation at a time: diffusers pipelines are not thread-safe.
        self.generate_lock = threading.Lock()
        #: The edit pipelines, built from the resident ones on first use (no new weights).
        self._edits = EditPipelines()
        self.loras = LoraAdapters(settings)  # LoRA adapters and draft mode, per request
        self.model_hash: str | None = None
        self.model_ref = settings.base_model
        #: The base models by name (``model``): made when the stock base has loaded.
        self.models: BaseModels | None = None
        self._tier: Tier = "full"

    # ----------------------------------------------------------------- state
    @property
    def state(self) -> EngineStateName:
        return self._loading.state

    @property
    def base(self) -> StableDiffusionXLPipeline:
        assert self._base is not None, "engine not loaded"
        return self._base

    @property
    def refiner(self) -> StableDiffusionXLImg2ImgPipeline | None:
        return self._refiner

    @property
    def decision(self) -> PrecisionDecision:
        """The device and precision the models were loaded with."""
        assert self._decision is not None, "engine not loaded"
        return self._decision

    def loaded_loras(self) -> list[str]:
        return self.loras.loaded()

    def loaded_models(self) -> dict[str, str]:
        return self.models.loaded() if self.models is not None else {}

    def unload(self) -> bool:
        """Give the models back (device and RAM) between jobs: under ``generate_lock``, so
        never during one; the next job loads them again (``reload_if_unloaded``)."""
        with self.generate_lock:
            if self.state != "ready":
                return False
            self._base = self._refiner = None
            self.models = None
            self._edits = EditPipelines()
            self.loras = LoraAdapters(self.settings)  # the adapters went with the pipelines
            gc.collect()
            free_device_memory()
            self._loading.unloaded()
        log.info("Models unloaded (device and RAM memory given back)")
        return True

    def reload_if_unloaded(self, on_progress: ProgressCallback | None,
                           total_steps: int) -> float:
        """Under ``generate_lock``: load the models again if an idle unload gave them
        back (progress says so); the seconds it took."""
        if self.state != "unloaded":
            return 0.0
        if on_progress is not None:
            on_progress(ProgressEvent(stage="model", step=0, stage_total=0, done=0,
                                      total=total_steps, model="SDXL again (unloaded while idle)"))
        started = time.perf_counter()
        self.load()
        return time.perf_counter() - started

    def status(self, plan: bool = False) -> EngineStatus:
        """State and precision; ``plan=True`` before loading works out the load plan."""
        error = self._loading.error
        if plan and self._load_plan is None and self.state == "not_loaded":
            try:
                self._load_plan = plan_load(self.settings)
            except SdxlMcpError as exc:
                error = exc.message
        load_plan = self._load_plan
        decision = load_plan.decision if load_plan else None
        return EngineStatus(
            state=self.state,
            error=error or (load_plan.refusal if load_plan else None),
            base_model=self.settings.base_model,
            refiner_model=self.settings.refiner_model or None,
            refinement="ENABLED" if self.settings.refiner_enabled else "DISABLED",
            device=decision.device if decision else None,
            dtype=decision.dtype if decision else None,
            precision_reason=decision.reason if decision else None,
            precision_warning=decision.warning if decision else None,
            memory_tier=load_plan.memory.tier if load_plan and load_plan.memory else None,
            memory_reason=(load_plan.memory.reason + (f" WARNING: {load_plan.memory.warning}"
                                                      if load_plan.memory.warning else "")
                           if load_plan and load_plan.memory else None),
            parameters=load_plan.parameters if load_plan else None,
            weights_gb=round(decision.weight_bytes / 1024**3, 3) if decision else None,
            load_time_s=self._loading.load_time_s,
            cuda_available=bool(torch.cuda.is_available()),
        )

    # --------------------------------------------------------------- loading
    def load(self) -> None:
        """Load both pipelines once; later calls return at once (or re-raise)."""
        self._loading.load(self._load_and_warm_up, self._failure)

    def _load_and_warm_up(self) -> None:
        self._load()
        if self.settings.warmup:
            self._warmup()

    def _failure(self, exc: Exception) -> SdxlMcpError:
        """Free what was loaded; anything not ours becomes ModelUnavailable."""
        if not isinstance(exc, SdxlMcpError):  # anything else from diffusers/torch
            log.exception("Model loading failed")
            exc = ModelUnavailable(f"Model loading failed: {first_line(exc)}")
        self._base = self._refiner = None
        free_device_memory()
        log.error("%s", exc.message)
        return exc

    def _load(self) -> None:
        s = self.settings
        plan = plan_load(s)
        self._load_plan = plan
        if plan.refusal:
            raise ModelUnavailable(plan.refusal)
        base_path, refiner_path = plan.base_path, plan.refiner_path
        device = plan.decision.device
        decision = plan.decision
        self._decision = decision
        dtype = TORCH_DTYPES[decision.dtype]
        log.info("%s", decision.reason)
        if decision.warning:
            log.warning("Precision warning: %s", decision.warning)

        log.info("Loading SDXL base model... (%s)", s.base_model)
        extra: dict[str, Any] = {}
        if s.vae_model:
            vae_path = resolve_model(s.vae_model, "vae", "SDXL_MCP_VAE_MODEL")
            extra["vae"] = load_pipeline(
                AutoencoderKL, vae_path, "SDXL_MCP_VAE_MODEL", s.vae_model, dtype=dtype
            )
        base = load_pipeline(
            StableDiffusionXLPipeline, base_path, "SDXL_MCP_BASE_MODEL", s.base_model,
            configs=s.checkpoint_config, dtype=dtype, **extra,
        )
        base.set_progress_bar_config(disable=True)

        refiner = None
        if refiner_path is not None:
            log.info("Loading SDXL refinement model... (%s)", s.refiner_model)
            # Shared components: one copy in memory, as the SDXL authors intend.
            refiner = load_pipeline(
                StableDiffusionXLImg2ImgPipeline, refiner_path, "SDXL_MCP_REFINER_MODEL",
                s.refiner_model, configs=s.checkpoint_config, dtype=dtype,
                text_encoder_2=base.text_encoder_2, vae=base.vae,
            )
            refiner.set_progress_bar_config(disable=True)
            log.info("SDXL base + refinement models loaded successfully")
        else:
            log.info("SDXL base model loaded successfully")
        log.info("Refinement: %s", "ENABLED" if refiner is not None else "DISABLED")
        self._tier = plan.memory.tier if plan.memory is not None else "full"
        if plan.memory is not None:
            log.info("Memory: %s", plan.memory.reason)
            if plan.memory.warning:
                log.warning("Memory warning: %s", plan.memory.warning)
        if device.startswith("cuda"):  # before placing: the tier's hooks wrap the final UNets
            self._optimise_for_cuda(base, refiner)
        refiner = place(self._tier, base, refiner, device)
        self._base, self._refiner = base, refiner
        self._base_path, self._refiner_path = base_path, refiner_path
        self.model_ref = s.base_model
        self.model_hash = model_hash_of(base_path)
        self.models = BaseModels(default_model(s).name, base, device, s.model_cache,
                                 place=self._place_base, park=self._park_base)

    def use_model(self, name: str | None, on_progress: ProgressCallback | None,
                  total_steps: int) -> float:
        """Under ``generate_lock``: make the base model ``name`` (None: BASE_MODEL) the one
        in use (``engine.models``); the seconds the switch took."""
        assert self.models is not None, "engine not loaded"
        target = name or self.models.stock_name
        if target == self.models.current_name:
            return 0.0
        entry = find_model(self.settings, target)
        previous = self._base
        seconds = self.models.use(target, lambda: self._load_base(entry.ref, target),
                                  on_progress, total_steps)
        self.loras.forget(previous)  # a parked pipeline keeps no adapters
        self._base = self.models.current
        self._edits = EditPipelines()  # built from the new base on first use
        self.model_ref = entry.ref
        self.model_hash = model_hash_of(entry.ref)
        return seconds

    def _place_base(self, pipe: Any) -> None:
        """A base taking the device: placed by the engine's memory tier."""
        place_base(self._tier, pipe, self._refiner, self.decision.device)

    def _park_base(self, pipe: Any, shared_with_refiner: bool) -> None:
        """A base leaving the device for CPU RAM (its tier's hooks removed)."""
        park_base(self._tier, pipe, shared_with_refiner)

    def _load_base(self, ref: str, name: str) -> Any:
        """Another base model from disk, at the decided precision (the stock VAE if
        SDXL_MCP_VAE_MODEL replaces the model's own)."""
        s = self.settings
        assert self.models is not None
        extra: dict[str, Any] = {"vae": self.models.stock.vae} if s.vae_model else {}
        pipe = load_pipeline(StableDiffusionXLPipeline, ref, "model", name,
                                configs=s.checkpoint_config,
                                dtype=TORCH_DTYPES[self.decision.dtype], **extra)
        pipe.set_progress_bar_config(disable=True)
        if self.decision.device.startswith("cuda"):
            self._optimise_for_cuda(pipe, None)
        return pipe

    def _optimise_for_cuda(self, base: Any, refiner: Any) -> None:
        """The GPU speed settings; each is measured by ``sdxl-mcp bench --full-size``."""
        s = self.settings
        if self._tier in ("low", "minimal"):
            # Offloaded weights move in and out per call: compiled or fused graphs would
            # be rebuilt each time, so the tiers that offload run plain.
            log.info("GPU optimisations skipped: memory tier %s offloads", self._tier)
            return
        # balanced moves the UNets in and out, so a compiled graph would not survive it.
        compile_unets = s.compile and self._tier == "full"
        if s.compile and not compile_unets:
            log.info("torch.compile skipped: memory tier %s moves the UNets", self._tier)
        for pipe in (p for p in (base, refiner) if p is not None):
            pipe.unet = speed_up_unet(pipe.unet, channels_last=s.channels_last,
                                      fuse_qkv=s.fuse_qkv, compile=compile_unets)
        if s.fuse_qkv:
            base.vae.fuse_qkv_projections()  # shared by both pipelines
        applied = [name for name, on in (("channels-last UNets", s.channels_last),
                                         ("fused QKV", s.fuse_qkv),
                                         ("torch.compile (compiled by the warm-up)",
                                          compile_unets))
                   if on]
        if applied:
            log.info("GPU optimisations: %s", ", ".join(applied))

    def _warmup(self) -> None:
        """One short generation so lazy initialisation (and compilation) happens now.

        With torch.compile the warm-up runs at the default 1024² so the compiled
        graphs match the common request; otherwise a small size is enough.
        """
        size = 1024 if self.settings.compile else 256
        started = time.perf_counter()
        try:
            common: dict[str, Any] = {"prompt": "warm-up", "output_type": "latent",
                                      "generator": torch.Generator("cpu").manual_seed(0)}
            latents = self.base(width=size, height=size, num_inference_steps=4,
                                denoising_end=0.5 if self._refiner else None, **common).images
            if self._refiner is not None:
                latents = self._refiner(image=latents, num_inference_steps=4,
                                        denoising_start=0.5, **common).images
            self._vae_decode(latents[:, :, :8, :8], fp32=True)
        except Exception as exc:  # a failed warm-up must not block serving
            log.warning("Warm-up generation failed (serving anyway): %s", first_line(exc))
            return
        log.info("Warm-up done in %.2f s", time.perf_counter() - started)

    # ------------------------------------------------------------ generation
    def generate(self, request: GenerationRequest, seed: int,
                 on_progress: ProgressCallback | None = None,
                 cancel: CancelToken | None = None) -> EngineOutput:
        cancel = cancel or CancelToken()
        timings: dict[str, float] = {}
        started = time.perf_counter()
        if self.state != "unloaded":
            self.load()  # waits for a preload in progress; raises if loading failed
        timings["model_load"] = round(time.perf_counter() - started, 4)
        with self.generate_lock:
            if cancel.cancelled:
                raise Cancelled(f"Generation {cancel.reason} before it started.")
            timings["model_load"] += round(
                self.reload_if_unloaded(on_progress, request.num_inference_steps)
                + self.use_model(request.model, on_progress, request.num_inference_steps), 4)
            return self.loras.run(self.base, request, lambda r: self.generate_images(
                r, seed, on_progress, cancel, timings))[0]

    def generate_images(
        self,
        request: GenerationRequest,
        seed: int,
        on_progress: ProgressCallback | None,
        cancel: CancelToken,
        timings: dict[str, float], seeds: list[int] | None = None,
    ) -> list[EngineOutput]:
        """One pipeline run (``seeds``: a batch, one image per seed); the caller holds
        ``generate_lock`` and has applied the request's LoRAs."""
        assert self._decision is not None
        refiner = self._refiner if request.use_refinement else None
        with swapped_samplers([self.base, refiner], request.sampler):
            return self._generate_images(request, seed, on_progress, cancel, timings, seeds,
                                         refiner)

    def _generate_images(
        self,
        request: GenerationRequest,
        seed: int,
        on_progress: ProgressCallback | None,
        cancel: CancelToken,
        timings: dict[str, float], seeds: list[int] | None, refiner: Any,
    ) -> list[EngineOutput]:
        base = self.base
        notes: list[str] = []
        if request.use_refinement and self._refiner is None:
            notes.append("refiner not configured (SDXL_MCP_REFINER_MODEL is empty)")
        ensemble = refiner is not None and request.refiner_mode == "ensemble"
        base_total, refiner_total, refiner_schedule = self._plan(request, refiner, ensemble)
        total = base_total + refiner_total
        # CPU generators give the same noise on every device; a batch has one per seed.
        generators = [torch.Generator("cpu").manual_seed(s) for s in seeds or [seed]]
        common: dict[str, Any] = {
            "guidance_scale": request.guidance_scale,
            "generator": generators if seeds else generators[0],
            "num_images_per_prompt": len(generators),
            "output_type": "latent",
        }

        base_reporter = StepReporter("base", base_total, 0, total, on_progress, cancel)
        base_args = {**common, "width": request.width, "height": request.height,
                     "num_inference_steps": request.num_inference_steps,
                     "denoising_end": request.high_noise_frac if ensemble else None}
        prompts, latents = run_base(self, base, refiner, request, base_args, base_reporter,
                                    timings)

        stage = None
        if refiner is not None:
            stage_args: dict[str, Any] = (
                {"num_inference_steps": request.num_inference_steps,
                 "denoising_start": request.high_noise_frac}
                if ensemble
                else {"num_inference_steps": refiner_schedule,
                      "strength": request.refiner_strength}
            )
            stage = run_refiner(
                refiner, latents, {**common, **prompts.refiner, **stage_args},
                job="Generation", steps=refiner_total, done=base_reporter.steps_run,
                total=total, on_progress=on_progress, cancel=cancel, timings=timings,
                sync=self.sync)
            latents = stage.latents

        t2 = time.perf_counter()
        images = self.with_oom_retry("decode", lambda: [
            self.decode(z, request.high_quality) for z in latents.split(1)])
        timings["decode"] = round(time.perf_counter() - t2, 4)
        fields = {**run_fields(self, refiner, base_reporter, stage, request.sampler),
                  **prompts.counts}
        return [EngineOutput(image=image, seed=s, timings=dict(timings), notes=list(notes),
                             **fields)
                for s, image in zip(seeds or [seed], images, strict=True)]

    def edit(self, request: EditRequest, seed: int, source: Image.Image,
             mask: Image.Image | None = None, on_progress: ProgressCallback | None = None,
             cancel: CancelToken | None = None) -> EngineOutput:
        """Image-to-image (no mask) or inpainting; see ``engine.edit`` for the guarantees."""
        cancel = cancel or CancelToken()
        started = time.perf_counter()
        if self.state != "unloaded":
            self.load()
        timings = {"model_load": round(time.perf_counter() - started, 4)}
        with self.generate_lock:
            if cancel.cancelled:
                raise Cancelled(f"Edit {cancel.reason} before it started.")
            timings["model_load"] += round(
                self.reload_if_unloaded(on_progress, request.num_inference_steps)
                + self.use_model(request.model, on_progress, request.num_inference_steps), 4)
            return self.loras.run(self.base, request, lambda r: [run_edit(
                self, self._edits, r, seed, source, mask, on_progress, cancel, timings)])[0]

    def _plan(
        self, request: GenerationRequest, refiner: Any, ensemble: bool
    ) -> tuple[int, int, int]:
        """Steps each stage will run (for progress totals) and the img2img schedule."""
        n = request.num_inference_steps
        if refiner is None:
            return n, 0, 0
        if ensemble:
            scheduler = type(self.base.scheduler).from_config(self.base.scheduler.config)
            scheduler.set_timesteps(n)
            # The same cut-off diffusers applies for denoising_end / denoising_start.
            train_steps = scheduler.config.num_train_timesteps
            cutoff = round(train_steps - request.high_noise_frac * train_steps)
            base_runs = int((scheduler.timesteps >= cutoff).sum().item())
            # A second-order sampler (Heun) runs two model calls per step but the last.
            order = getattr(scheduler, "order", 1)
            base_steps = -(-base_runs // order)
            return base_steps, -(-len(scheduler.timesteps) // order) - base_steps, 0
        schedule = sequential_refiner_schedule(request.refiner_steps, request.refiner_strength)
        return n, request.refiner_steps, schedule

    def with_oom_retry(
        self, stage: str, run: Callable[[], T], before_retry: Callable[[], None] | None = None
    ) -> T:
        """Run; on out-of-memory free memory and retry once with VAE tiling/slicing."""
        try:
            return run()
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            log.warning("Out of memory in the %s stage; retrying once with VAE tiling", stage)
        # Outside the except block, so the traceback's frames (and their tensors) are freed.
        free_device_memory()
        vae = self.base.vae
        vae.enable_tiling()
        vae.enable_slicing()
        if before_retry is not None:
            before_retry()
        failed = False
        try:
            return run()
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            failed = True
        finally:
            vae.disable_tiling()
            vae.disable_slicing()
        assert failed
        free_device_memory()
        raise OutOfMemory(
            f"The {self._decision.device if self._decision else 'device'} ran out of memory in "
            f"the {stage} stage, even with VAE tiling. Try a smaller width/height, "
            "use_refinement=false, or SDXL_MCP_PRECISION=fp16."
        )

    def decode(self, latents: torch.Tensor, high_quality: bool) -> Image.Image:
        """VAE decode with a NaN/black check; one retry in fp32, then an error."""
        vae = self.base.vae
        # The SDXL VAE overflows in fp16 (NaN/black images): decode in fp32 when the
        # VAE asks for it (force_upcast) or the request wants the quality path.
        upcast = vae.dtype != torch.float32 and (
            high_quality or (vae.dtype == torch.float16 and bool(vae.config.force_upcast))
        )
        for attempt, fp32 in ((1, upcast), (2, True)):
            pixels = self._vae_decode(latents, fp32)
            problem = bad_pixels(pixels)
            if problem is None:
                return self.base.image_processor.postprocess(pixels, output_type="pil")[0]
            log.warning("VAE decode attempt %d produced %s", attempt, problem)
        raise GenerationFailed(
            f"The VAE decode produced {problem} twice, even in fp32, so no image was saved. "
            "Retry with another seed; if it persists set SDXL_MCP_PRECISION=fp32 or "
            "SDXL_MCP_VAE_MODEL to an fp16-safe VAE (madebyollin/sdxl-vae-fp16-fix)."
        )

    def _vae_decode(self, latents: torch.Tensor, fp32: bool) -> torch.Tensor:
        vae = self.base.vae
        original = vae.dtype
        dtype = torch.float32 if fp32 else original
        if dtype != original:
            vae.to(dtype=dtype)
        try:
            z = latents.to(device=vae.device, dtype=dtype)
            mean = getattr(vae.config, "latents_mean", None)
            std = getattr(vae.config, "latents_std", None)
            if mean is not None and std is not None:
                mean_t = torch.tensor(mean).view(1, 4, 1, 1).to(z)
                std_t = torch.tensor(std).view(1, 4, 1, 1).to(z)
                z = z * std_t / vae.config.scaling_factor + mean_t
            else:
                z = z / vae.config.scaling_factor
            with torch.no_grad():
                return vae.decode(z, return_dict=False)[0]
        finally:
            if dtype != original:
                vae.to(dtype=original)

    def sync(self) -> None:
        """Wait for the device (stage timings are real)."""
        # CUDA kernels run asynchronously; synchronise so stage timings are real.
        if self._decision is not None and self._decision.device.startswith("cuda"):
            torch.cuda.synchronize()
