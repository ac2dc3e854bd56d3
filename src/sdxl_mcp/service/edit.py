"""The edit workflow: image-to-image or inpainting of a library image, as one job.

Guarantees (docs/EDITING.md; ``tests/service/test_edit.py``): the image and the mask are
resolved, decoded and checked before a job is admitted (a refused edit writes nothing and
takes no slot); an edit is kept as generation keeps an image, its Result naming the source
and the mask (details: docs/ARCHITECTURE.md "Guarantees").

``load_sources`` blocks (decoding): :func:`edit` runs it in a worker thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio.to_thread
from PIL import Image, ImageOps

from sdxl_mcp.backend.base import EngineOutput
from sdxl_mcp.errors import BadRequest
from sdxl_mcp.library import format_infotext
from sdxl_mcp.library.checkpoints import model_name
from sdxl_mcp.library.infotext import InfotextParams
from sdxl_mcp.library.loras import with_loras
from sdxl_mcp.library.resolver import ResolvedImage
from sdxl_mcp.schemas import EditRequest, GenerationResult, infotext_sampler
from sdxl_mcp.service.admission import admit
from sdxl_mcp.service.jobs import Job, ProgressListener
from sdxl_mcp.service.keeping import Entry
from sdxl_mcp.service.results import generation_message
from sdxl_mcp.settings import Settings

if TYPE_CHECKING:
    from sdxl_mcp.service.facade import ImageService

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


async def edit(service: ImageService, request: EditRequest,
               on_progress: ProgressListener | None = None, wait_s: float | None = None,
               *, previews: bool = False) -> GenerationResult:
    """One edit: image and mask resolved and checked before admission."""
    request = await anyio.to_thread.run_sync(admit, service.settings, request)
    source = await service.library.resolve(request.image, "image")
    mask = (await service.library.resolve(request.mask, "mask")
            if request.mask is not None else None)
    sources = await anyio.to_thread.run_sync(load_sources, source, mask)

    def work(job: Job, progress: ProgressListener) -> GenerationResult:
        backend, building_s = service.timed_backend(job.cancel)
        output = backend.edit(request, job.seed, sources.source, sources.mask, progress,
                              job.cancel)
        return service.keep(job, output, edit_entry(request, sources, output, service.settings),
                            building_s=building_s, preview=previews)

    job = service.submit(request.seed, work, on_progress)
    return await service.follow(job, on_progress, wait_s)


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
    sampler, schedule_type = infotext_sampler(request.sampler)
    return format_infotext(with_loras(InfotextParams(
        prompt=request.prompt,
        negative_prompt=request.negative_prompt,
        steps=request.num_inference_steps,
        sampler=sampler,
        schedule_type=schedule_type,
        cfg_scale=request.guidance_scale,
        seed=output.seed,
        width=width,
        height=height,
        model=model_name(output.base_model),
        model_hash=output.model_hash,
        refiner=output.refiner_model,
        denoising_strength=request.strength,
        source_image=sources.source_image_id or "file",
        mask_image=sources.mask_image_id or ("file" if sources.mask is not None else None),
    ), settings, request))


def edit_entry(request: EditRequest, sources: EditSources, output: EngineOutput,
               settings: Settings) -> Entry:
    """What an edit keeps: its infotext, its source (and credit) in the Result and catalog."""
    credit = sources.credit

    def finish(result: GenerationResult) -> GenerationResult:
        assert result.image is not None
        return result.model_copy(update={
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

    return Entry(request=request, infotext=edit_infotext(request, sources, output, settings),
                 finish=finish, catalog_extra={"edit_of": sources.source_image_id,
                                               "mask_image_id": sources.mask_image_id})


def edit_message(output: EngineOutput, sources: EditSources) -> str:
    what = "Image inpainted" if sources.mask is not None else "Image edited"
    message = generation_message(output).replace("Image generated", what, 1)
    if sources.credit.get("attribution"):
        message += f" It is a derivative of a Pexels photo: {sources.credit['attribution']}"
    return message
