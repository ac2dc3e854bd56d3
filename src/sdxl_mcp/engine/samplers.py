"""Samplers by their A1111 names, as diffusers schedulers, swapped in for one request.

Guarantees (tests/engine/test_samplers.py; docs/MODELS.md "Samplers"):

* :data:`SAMPLERS` maps every name of ``schemas.SAMPLER_NAMES`` to a diffusers
  scheduler class and the config changes that make it that sampler (Karras
  sigmas, the SDE variant, ancestral noise), the mapping diffusers documents
  for A1111's names;
* :func:`sampler_scheduler` builds it from the resident scheduler's config, so
  the model's training schedule (betas, timestep spacing, offset) is kept;
* :func:`swapped_samplers` sets it on each given pipeline for the block and
  puts the resident schedulers back, whatever happens; ``None`` changes nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    DPMSolverSDEScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    LMSDiscreteScheduler,
    UniPCMultistepScheduler,
)

__all__ = ["SAMPLERS", "Sampler", "sampler_scheduler", "swapped_samplers"]


class Sampler(NamedTuple):
    """A diffusers scheduler class and the config keys that make it the A1111 sampler."""

    scheduler: Any  # a diffusers SchedulerMixin subclass
    config: dict[str, Any]


_KARRAS = {"use_karras_sigmas": True}

SAMPLERS: dict[str, Sampler] = {
    "Euler": Sampler(EulerDiscreteScheduler, {}),
    "Euler a": Sampler(EulerAncestralDiscreteScheduler, {}),
    "DPM++ 2M": Sampler(DPMSolverMultistepScheduler, {}),
    "DPM++ 2M Karras": Sampler(DPMSolverMultistepScheduler, _KARRAS),
    "DPM++ 2M SDE Karras": Sampler(DPMSolverMultistepScheduler,
                                   {**_KARRAS, "algorithm_type": "sde-dpmsolver++"}),
    "DPM++ SDE Karras": Sampler(DPMSolverSDEScheduler, _KARRAS),
    "DDIM": Sampler(DDIMScheduler, {}),
    "UniPC": Sampler(UniPCMultistepScheduler, {}),
    "Heun": Sampler(HeunDiscreteScheduler, {}),
    "LMS": Sampler(LMSDiscreteScheduler, {}),
}


def sampler_scheduler(name: str, config: Any) -> Any:
    """A new scheduler for the sampler ``name``, from a resident scheduler's ``config``."""
    sampler = SAMPLERS[name]
    return sampler.scheduler.from_config(config, **sampler.config)


@contextlib.contextmanager
def swapped_samplers(pipes: Sequence[Any], name: str | None) -> Iterator[None]:
    """Each of ``pipes`` (None entries skipped) runs sampler ``name`` for the block."""
    present = [pipe for pipe in pipes if pipe is not None]
    resident = [pipe.scheduler for pipe in present]
    try:
        if name is not None:
            for pipe, scheduler in zip(present, resident, strict=True):
                pipe.scheduler = sampler_scheduler(name, scheduler.config)
        yield
    finally:
        for pipe, scheduler in zip(present, resident, strict=True):
            pipe.scheduler = scheduler
