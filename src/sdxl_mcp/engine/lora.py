"""LoRA adapters on the resident base: loaded once, switched per request.

Guarantees (docs/LORA.md): :meth:`LoraAdapters.run` activates the request's LoRAs for one
generation or edit and disables every adapter afterwards, whatever happened, so a request
without LoRAs gives the base's pixels; at most ``capacity`` stay loaded (the least recently
used is deleted); a file that is not an SDXL LoRA is a ``BadRequest`` and leaves nothing
loaded; ``quality: "draft"`` adds the draft LoRA and scheduler
(details: docs/ARCHITECTURE.md "Guarantees").
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sdxl_mcp.backend.base import EngineOutput
from sdxl_mcp.engine.draft import DRAFT_ADAPTER, load_draft_lora, swapped_scheduler
from sdxl_mcp.errors import BadRequest, first_line
from sdxl_mcp.library.loras import resolve_draft, resolve_loras
from sdxl_mcp.schemas import EditRequest, GenerationRequest
from sdxl_mcp.schemas.loras import prompt_without_lora_tags, requested_loras
from sdxl_mcp.settings import Settings

log = logging.getLogger(__name__)
R = TypeVar("R", GenerationRequest, EditRequest)

#: User LoRAs kept loaded (each is a few MB to a few hundred MB of weights).
DEFAULT_CAPACITY = 8


@dataclass(frozen=True)
class _Loaded:
    adapter: str
    path: Path
    mtime_ns: int


def adapter_name(name: str) -> str:
    """A PEFT-safe adapter name for a LoRA file name (PEFT keys cannot hold dots)."""
    return "lora_" + hashlib.sha1(name.encode("utf-8")).hexdigest()[:16]


class LoraAdapters:
    """The adapter cache of one engine (``SDXLEngine.loras``)."""

    def __init__(self, settings: Settings, capacity: int = DEFAULT_CAPACITY) -> None:
        self.settings = settings
        self.capacity = capacity
        self._loaded: OrderedDict[str, _Loaded] = OrderedDict()
        self._draft_loaded = False
        self._unfused = False
        self._lock = threading.Lock()  # loaded() is read from other threads

    def loaded(self) -> list[str]:
        """The user LoRAs loaded now, least recently used first."""
        with self._lock:
            return list(self._loaded)

    # ------------------------------------------------------------- one request
    def run(self, pipe: Any, request: R, work: Callable[[R], list[EngineOutput]]
            ) -> list[EngineOutput]:
        """``work`` on the request to encode, with its adapters active (see the guarantees)."""
        refs = requested_loras(request.prompt, request.loras)
        draft_request = (request if isinstance(request, GenerationRequest)
                         and request.quality == "draft" else None)
        draft = draft_request is not None
        if not refs and not draft:
            return work(request)
        paths = resolve_loras(self.settings, [ref.name for ref in refs])
        notes: list[str] = []
        update: dict[str, Any] = {"prompt": prompt_without_lora_tags(request.prompt)}
        if refs:
            notes.append("LoRAs: " + ", ".join(f"{r.name} ({r.weight:g})" for r in refs))
            if not request.use_refinement and self.settings.refiner_enabled and not draft:
                notes.append("refiner skipped: LoRAs apply to the base model "
                             "(use_refinement=true refines anyway)")
        names = [self._ensure(pipe, ref.name, paths[ref.name], keep=set(paths)) for ref in refs]
        weights = [ref.weight for ref in refs]
        scheduler: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
        if draft_request is not None:
            # R is GenerationRequest here: only a generation has a draft quality.
            request = resolve_draft(self.settings, draft_request)  # type: ignore[assignment]
            self._ensure_draft(pipe)
            names.append(DRAFT_ADAPTER)
            weights.append(1.0)
            update["use_refinement"] = False
            scheduler = swapped_scheduler(pipe, self.settings.draft_scheduler)
            if request.use_refinement and "use_refinement" in request.model_fields_set:
                notes.append("no refiner in draft mode")
            notes.append(f"draft: {request.num_inference_steps} steps, "
                         f"{self.settings.draft_scheduler}, guidance {request.guidance_scale:g}")
        with scheduler, self._active(pipe, names, weights):
            outputs = work(request.model_copy(update=update))
        for output in outputs:  # a batch of variations shares the notes
            output.notes.extend(notes)
        return outputs

    @contextlib.contextmanager
    def _active(self, pipe: Any, names: list[str], weights: list[float]) -> Iterator[None]:
        _set_enabled(pipe, True)
        try:
            pipe.set_adapters(names, adapter_weights=weights)
            yield
        finally:
            _set_enabled(pipe, False)  # the base layers alone until the next LoRA request

    # ----------------------------------------------------------------- loading
    def _ensure(self, pipe: Any, name: str, path: Path, keep: set[str]) -> str:
        """The adapter of ``name``, loaded now if needed (evicting past capacity)."""
        mtime = path.stat().st_mtime_ns
        with self._lock:
            entry = self._loaded.get(name)
            if entry is not None and (entry.path, entry.mtime_ns) == (path, mtime):
                self._loaded.move_to_end(name)
                return entry.adapter
        if entry is not None:  # the file changed on disk (or moved): load it again
            self._delete(pipe, name)
        while len(self._loaded) >= self.capacity:
            victim = next((n for n in self._loaded if n not in keep), None)
            if victim is None:
                break
            log.info("Unloading LoRA %s (least recently used)", victim)
            self._delete(pipe, victim)
        self._unfuse_qkv(pipe)
        adapter = adapter_name(name)
        log.info("Loading LoRA %s from %s", name, path)
        try:
            with warnings.catch_warnings():  # peft warns that a model holds several adapters
                warnings.simplefilter("ignore", UserWarning)
                pipe.load_lora_weights(str(path.parent), weight_name=path.name,
                                       adapter_name=adapter)
            if not _components_with(pipe, adapter):
                raise ValueError("none of its layers matches this model")
        except Exception as exc:
            _remove(pipe, adapter)
            raise BadRequest(
                f"loras: {name} ({path}) is not an SDXL LoRA this engine can load "
                f"({_why(exc)}). Use an SDXL LoRA (diffusers or kohya format) or remove the file."
            ) from None
        with self._lock:
            self._loaded[name] = _Loaded(adapter, path, mtime)
        return adapter

    def _unfuse_qkv(self, pipe: Any) -> None:
        """LoRAs target to_q/to_k/to_v, which fused attention bypasses: undo the fusion."""
        unet = getattr(pipe.unet, "_orig_mod", pipe.unet)
        # Fusion runs on CUDA only (engine._optimise_for_cuda): undo what was done.
        if getattr(unet, "original_attn_processors", None) is not None and not self._unfused:
            log.warning("LoRAs need separate q/k/v projections: SDXL_MCP_FUSE_QKV is undone "
                        "for the UNet of this engine from now on")
            unet.unfuse_qkv_projections()
            self._unfused = True

    def _ensure_draft(self, pipe: Any) -> None:
        if not self._draft_loaded:
            self._unfuse_qkv(pipe)
            try:
                load_draft_lora(pipe, self.settings)
            except Exception:
                _remove(pipe, DRAFT_ADAPTER)
                raise
            self._draft_loaded = True

    def unload_all(self, pipe: Any) -> None:
        """Delete every user LoRA from ``pipe`` (the draft LoRA stays)."""
        for name in self.loaded():
            self._delete(pipe, name)

    def forget(self, pipe: Any) -> None:
        """Another base model takes ``pipe``'s place: delete every adapter from it (the
        draft LoRA too), so the next pipeline starts clean and a parked one holds none."""
        self.unload_all(pipe)
        if self._draft_loaded:
            _remove(pipe, DRAFT_ADAPTER)
            self._draft_loaded = False
        self._unfused = False

    def _delete(self, pipe: Any, name: str) -> None:
        with self._lock:
            entry = self._loaded.pop(name, None)
        if entry is not None:
            _remove(pipe, entry.adapter)


def _why(exc: Exception) -> str:
    text = str(exc)
    if "size mismatch" in text:
        return "its layer sizes do not match this model: a LoRA for another architecture"
    return first_line(exc, 200).rstrip(".:")


def _set_enabled(pipe: Any, enabled: bool) -> None:
    """Enable or disable the LoRA layers of every component that has any."""
    from diffusers.loaders.lora_base import (
        disable_lora_for_text_encoder,
        enable_lora_for_text_encoder,
    )

    for part in pipe.get_list_adapters():
        model = getattr(pipe, part)
        if hasattr(model, "enable_lora"):  # the UNet (diffusers' PEFT mixin)
            model.enable_lora() if enabled else model.disable_lora()
        elif enabled:
            enable_lora_for_text_encoder(model)
        else:
            disable_lora_for_text_encoder(model)


def _components_with(pipe: Any, adapter: str) -> list[str]:
    """The pipeline components holding ``adapter``."""
    return [part for part, names in pipe.get_list_adapters().items() if adapter in names]


def _remove(pipe: Any, adapter: str) -> None:
    """Delete ``adapter`` from every component that has it (a failed load's leftovers)."""
    for part in _components_with(pipe, adapter):
        model = getattr(pipe, part)
        try:
            with warnings.catch_warnings():  # peft warns when the active adapter goes
                warnings.simplefilter("ignore", UserWarning)
                _delete_from(model, adapter)
        except Exception as exc:  # leave the others working; log what stayed
            log.warning("Could not remove the LoRA adapter %s from %s: %s", adapter, part, exc)


def _delete_from(model: Any, adapter: str) -> None:
    if hasattr(model, "delete_adapters"):  # the UNet (diffusers' PEFT mixin)
        model.delete_adapters(adapter)
        return
    # A transformers text encoder: diffusers' own deletion, which also drops the
    # model's PEFT config once its last adapter is gone.
    from diffusers.utils.peft_utils import delete_adapter_layers

    delete_adapter_layers(model, adapter)
    getattr(model, "peft_config", {}).pop(adapter, None)  # where diffusers did not mark it
