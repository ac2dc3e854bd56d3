"""The edit workflow around the engine: checking the inputs, keeping the result.

Guarantees (DESIGN.md "Editing and variations"):

* :func:`load_sources` runs before a job is admitted, on images the resolver
  has already accepted: it decodes the source (EXIF orientation applied) and
  the mask, and refuses, with one sentence naming ``mask``, a mask whose
  aspect ratio differs from the source's by more than 1 %, a mask with no
  white pixel (nothing to repaint) and an all-white mask (nothing kept). A
  refused edit writes nothing and takes no slot;
* :func:`save_edit` keeps an edit as generation keeps an image (PNG with the
  A1111 infotext, now with ``Denoising strength`` and the source's id, the
  ``.json`` sidecar, the catalog row, or none of them), and its Result adds
  ``source_image_id``/``mask_image_id``; an edit of a Pexels photo is a
  derivative, so the photo's attribution, photographer and id travel in it.

Mask pixels count as white from 128 up (after conversion to greyscale).
Blocking (decoding, disk, SQLite): callers run these in a worker thread.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, ImageOps

from sdxl_mcp.backend import EngineOutput
from sdxl_mcp.errors import BadRequest
from sdxl_mcp.library import CatalogRecord, ImageStore, format_infotext
from sdxl_mcp.library.infotext import InfotextParams
from sdxl_mcp.library.resolver import ResolvedImage
from sdxl_mcp.lorafiles import with_loras
from sdxl_mcp.results import generation_message, generation_result, generation_timings
from sdxl_mcp.schemas import EditRequest, GenerationResult
from sdxl_mcp.settings import Settings

#: The mask's aspect ratio may differ from the source's by this fraction at most.
MASK_ASPECT_TOLERANCE = 0.01
#: Greyscale mask values from this up mean "repaint".
WHITE = 128


@dataclass(frozen=True)
class EditSources:
    """What an edit job carries: the decoded source and mask, and where they came from."""

    source: Image.Image
    mask: Image.Image | None
    source_image_id: str | None
    mask_image_id: str | None
    #: Result fields for a stock photo source (attribution, photographer, ...).
    credit: dict[str, Any] = field(default_factory=dict)


def _open(resolved: ResolvedImage) -> Image.Image:
    with Image.open(resolved.path) as opened:
        image = ImageOps.exif_transpose(opened)
        image.load()
    return image


def load_sources(source: ResolvedImage, mask: ResolvedImage | None) -> EditSources:
    """Decode and check an edit's images (see the module's guarantees)."""
    image = _open(source)
    mask_image = None
    if mask is not None:
        mask_image = _open(mask).convert("L")
        _check_mask(mask_image, image.size)
    return EditSources(
        source=image,
        mask=mask_image,
        source_image_id=source.image_id,
        mask_image_id=mask.image_id if mask is not None else None,
        credit=_stock_credit(source),
    )


def _check_mask(mask: Image.Image, size: tuple[int, int]) -> None:
    source_ratio = size[0] / size[1]
    mask_ratio = mask.width / mask.height
    if abs(mask_ratio / source_ratio - 1) > MASK_ASPECT_TOLERANCE:
        raise BadRequest(
            f"mask must have the image's aspect ratio (within 1 %): the mask is "
            f"{mask.width}x{mask.height}, the image {size[0]}x{size[1]}."
        )
    extrema: Any = mask.getextrema()  # (low, high) for one band
    low, high = int(extrema[0]), int(extrema[1])
    if high < WHITE:
        raise BadRequest(
            "mask has no white pixel, so there is nothing to repaint: paint the area to "
            "change white (black keeps the image)."
        )
    if low >= WHITE:
        raise BadRequest(
            "mask is white everywhere, so nothing of the image would be kept: use "
            "generate_image for a new image, or edit_image without a mask and strength 1.0."
        )


def _stock_credit(source: ResolvedImage) -> dict[str, Any]:
    record = source.record
    if record is None or record.source != "pexels":
        return {}
    params = record.parameters
    photo_id = record.source_id
    return {
        "attribution": params.get("attribution"),
        "photographer": params.get("photographer"),
        "photographer_url": params.get("photographer_url"),
        "pexels_page_url": params.get("page_url"),
        "pexels_photo_id": int(photo_id) if photo_id and photo_id.isdigit() else None,
    }


def edit_infotext(request: EditRequest, sources: EditSources, output: EngineOutput,
                  settings: Settings) -> str:
    width, height = output.image.size
    return format_infotext(with_loras(InfotextParams(
        prompt=request.prompt,
        negative_prompt=request.negative_prompt,
        steps=request.num_inference_steps,
        cfg_scale=request.guidance_scale,
        seed=output.seed,
        width=width,
        height=height,
        model=output.base_model,
        refiner=output.refiner_model,
        denoising_strength=request.strength,
        source_image=sources.source_image_id or "file",
        mask_image=sources.mask_image_id or ("file" if sources.mask is not None else None),
    ), settings, request))


def save_edit(
    store: ImageStore,
    settings: Settings,
    job_id: str,
    request: EditRequest,
    sources: EditSources,
    output: EngineOutput,
    queue_wait_s: float,
) -> GenerationResult:
    """Publish an edit's image with its sidecar and catalog row; its Result."""
    t0 = time.perf_counter()
    saved = store.save_image(output.image, seed=output.seed,
                             infotext=edit_infotext(request, sources, output, settings),
                             compress_level=settings.png_compress_level)
    timings = generation_timings(output, queue_wait_s, time.perf_counter() - t0)
    image_id = store.catalog.new_image_id(saved.name)
    result = generation_result(job_id, output, saved, timings, image_id)
    credit = sources.credit
    assert result.image is not None
    result = result.model_copy(update={
        "message": edit_message(output, sources),
        "source_image_id": sources.source_image_id,
        "mask_image_id": sources.mask_image_id,
        "attribution": credit.get("attribution"),
        "pexels_photo_id": credit.get("pexels_photo_id"),
        "pexels_page_url": credit.get("pexels_page_url"),
        "image": result.image.model_copy(update={
            "photographer": credit.get("photographer"),
            "photographer_url": credit.get("photographer_url"),
        }),
    })
    payload = result.model_dump(mode="json")
    payload["request"] = request.model_dump(mode="json")
    payload["models"] = {"base": output.base_model, "refiner": output.refiner_model}
    try:
        store.write_sidecar(saved.path, payload)
        store.catalog.add(CatalogRecord.from_saved(
            saved, prompt=request.prompt, negative_prompt=request.negative_prompt,
            parameters={**payload["request"], "edit_of": sources.source_image_id,
                        "mask_image_id": sources.mask_image_id},
            seed=output.seed, source="sdxl", result_json=result.model_dump_json(),
            image_id=image_id,
        ))
    except BaseException:
        store.discard(saved.path)  # no file the catalog does not know
        raise
    return result


def edit_message(output: EngineOutput, sources: EditSources) -> str:
    what = "Image inpainted" if sources.mask is not None else "Image edited"
    message = generation_message(output).replace("Image generated", what, 1)
    if sources.credit.get("attribution"):
        message += f" It is a derivative of a Pexels photo: {sources.credit['attribution']}"
    return message
