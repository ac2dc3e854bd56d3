"""Several seeds of one request on a backend: the torch-free parts of ``generate_batch``.

Guarantees (docs/EDITING.md; the tests check them):

* :func:`one_by_one` runs ``generate`` once per seed, in order, with the request's
  ``seed`` field set to it: each image is exactly the generation with its seed;
  ``on_output(index, output)`` is called as each image is ready, so a caller can
  keep it before the next one starts;
  a cancel stops the running image within a step and the rest never start;
* progress runs across every image: ``done``/``total`` count denoising steps of
  all images together (``total`` = images x one image's steps), whether the
  images run one by one (:func:`one_by_one`) or in one batched pipeline call
  (:func:`batched_progress`: a batched step advances every image at once).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from sdxl_mcp.backend.base import CancelToken, EngineOutput, ProgressCallback, ProgressEvent
from sdxl_mcp.errors import Cancelled
from sdxl_mcp.schemas import GenerationRequest

#: Called as each image of a batch is ready: (its index among the seeds, its output).
OutputCallback = Callable[[int, EngineOutput], None]
#: A backend's ``generate``: (request, seed, progress, cancel) -> output.
GenerateOne = Callable[[GenerationRequest, int, ProgressCallback, CancelToken], EngineOutput]


def one_by_one(
    generate: GenerateOne,
    request: GenerationRequest,
    seeds: Sequence[int],
    on_progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    on_output: OutputCallback | None = None,
) -> list[EngineOutput]:
    """Each seed in turn (see the module's guarantees)."""
    cancel = cancel or CancelToken()
    count = len(seeds)
    outputs: list[EngineOutput] = []
    for index, seed in enumerate(seeds):
        if cancel.cancelled:
            raise Cancelled(f"Generation {cancel.reason} after {index} of {count} images.")

        def across(event: ProgressEvent, index: int = index) -> None:
            if on_progress is not None:
                on_progress(replace(event, done=index * event.total + event.done,
                                    total=count * event.total))

        output = generate(request.model_copy(update={"seed": seed}), seed, across, cancel)
        outputs.append(output)
        if on_output is not None:
            on_output(index, output)
    return outputs


def batched_progress(on_progress: ProgressCallback | None, count: int) -> ProgressCallback:
    """Progress of one pipeline call over ``count`` images, counted per image-step."""

    def scaled(event: ProgressEvent) -> None:
        if on_progress is not None:
            on_progress(replace(event, done=count * event.done, total=count * event.total))

    return scaled
