"""edit_image end to end: the service, the MCP tool, the REST route and the CLI.

Real edits run on the shared tiny engine (CPU, 256x256, few steps); admission,
cancel, job handles and the stock photo credit use the gated fake backend.
Every refused input is one sentence naming the argument, writes nothing and
leaves the slot free.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import numpy as np
import pytest
from mcp import Client
from PIL import Image

from sdxl_mcp.entrypoints.mcp.server import build_server
from sdxl_mcp.errors import BadRequest, NotFound
from sdxl_mcp.library import parse_infotext
from sdxl_mcp.schemas import EditRequest
from sdxl_mcp.service.edit import edit as edit_image
from sdxl_mcp.service.facade import ImageService
from tests.fakes import GatedBackend
from tests.helpers_cli import run_cli
from tests.helpers_http import serve
from tests.helpers_images import catalogue, files, half_mask, noise

pytestmark = pytest.mark.anyio
FAST = {"num_inference_steps": 10, "use_refinement": False}  # strength 0.6: 6 steps


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def edit(image: str, **fields: Any) -> EditRequest:
    return EditRequest(image=image, prompt="the same scene at night", **{**FAST, **fields})


# ------------------------------------------------------------------ service
async def test_edit_by_id_uri_and_path_saves_a_new_catalogued_image(
    make_settings: Callable[..., Any], tiny_engine: Any
) -> None:
    settings = make_settings()
    async with ImageService(settings, backend=tiny_engine) as svc:
        src = catalogue(svc.store, noise())
        by_id = await edit_image(svc, edit(src.image_id or "", seed=5))
        by_uri = await edit_image(svc, edit(f"image://{src.image_id}", seed=5))
        by_path = await edit_image(svc, edit(str(src.path), seed=5))
        again = await edit_image(svc, edit(src.image_id or "", seed=6))
        total, _ = svc.store.catalog.search(None, limit=10)
    for result in (by_id, by_uri, by_path):
        assert result.status == "succeeded" and result.source_image_id == src.image_id
        assert result.mask_image_id is None and result.seed == 5
        assert (result.image.width, result.image.height) == (256, 256)  # type: ignore[union-attr]
        assert result.steps.base == 6 and result.image_id != src.image_id
        assert result.message == "Image edited successfully"
    same = [np.asarray(Image.open(r.path or "")) for r in (by_id, by_uri, by_path)]
    assert np.array_equal(same[0], same[1]) and np.array_equal(same[0], same[2])
    assert not np.array_equal(same[0], np.asarray(Image.open(again.path or "")))
    params = parse_infotext(Image.open(by_id.path or "").info["parameters"])
    assert params["Denoising strength"] == "0.6" and params["Source image"] == src.image_id
    assert params["Size"] == "256x256" and params["Seed"] == "5"
    sidecar = json.loads(Path(by_id.metadata_path or "").read_text())
    assert sidecar["request"]["image"] == src.image_id and sidecar["source_image_id"]
    assert total == 5  # the source and four edits


async def test_inpainting_keeps_the_black_half_and_records_the_mask(
    make_settings: Callable[..., Any], tiny_engine: Any
) -> None:
    async with ImageService(make_settings(), backend=tiny_engine) as svc:
        src = catalogue(svc.store, noise())
        mask = catalogue(svc.store, half_mask())
        result = await edit_image(svc, edit(src.image_id or "", mask=mask.image_id, seed=2))
    assert result.mask_image_id == mask.image_id and result.source_image_id == src.image_id
    got = np.asarray(Image.open(result.path or "").convert("RGB"))
    assert np.array_equal(got[:, 128:], np.asarray(noise())[:, 128:])
    assert result.message == "Image inpainted successfully"
    params = parse_infotext(Image.open(result.path or "").info["parameters"])
    assert params["Mask image"] == mask.image_id


async def test_a_stock_photo_source_carries_its_pexels_credit(
    make_settings: Callable[..., Any],
) -> None:
    async with ImageService(make_settings(), backend=GatedBackend(gate_open=True)) as svc:  # type: ignore[arg-type]
        photo = catalogue(svc.store, noise((320, 240)), source="pexels", source_id="12345",
                          parameters={"attribution": "Photo by Ann Lee on Pexels",
                                      "photographer": "Ann Lee",
                                      "photographer_url": "https://www.pexels.com/@ann",
                                      "page_url": "https://www.pexels.com/photo/12345/"})
        result = await edit_image(svc, edit(photo.image_id or ""))
    assert result.status == "succeeded" and result.source_image_id == photo.image_id
    assert result.attribution == "Photo by Ann Lee on Pexels"
    assert result.pexels_photo_id == 12345
    assert result.image.photographer == "Ann Lee"  # type: ignore[union-attr]
    assert result.image.source == "sdxl"  # type: ignore[union-attr]
    assert "derivative of a Pexels photo" in result.message


# ------------------------------------------------------------- bad input
BAD_MASKS = {
    "aspect": (half_mask((256, 200)), "mask must have the image's aspect ratio"),
    "black": (Image.new("L", (256, 256), 0), "mask has no white pixel"),
    "white": (Image.new("L", (256, 256), 255), "use generate_image .* strength 1.0"),
}


@pytest.mark.parametrize("case", sorted(BAD_MASKS))
async def test_a_mask_that_does_not_fit_is_refused_before_admission(
    make_settings: Callable[..., Any], case: str
) -> None:
    backend = GatedBackend(gate_open=True)
    async with ImageService(make_settings(), backend=backend) as svc:  # type: ignore[arg-type]
        src = catalogue(svc.store, noise())
        mask_image, words = BAD_MASKS[case]
        mask = catalogue(svc.store, mask_image)
        before = files(svc.store.output_dir)
        with pytest.raises(BadRequest, match=words):
            await edit_image(svc, edit(src.image_id or "", mask=mask.image_id))
        assert files(svc.store.output_dir) == before
        assert svc.queue_status()["running"] == svc.queue_status()["waiting"] == 0
        assert svc.jobs.all() == [] and backend.calls == 0


async def test_references_the_resolver_refuses_name_the_argument(
    make_settings: Callable[..., Any], tmp_path: Path
) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "notes.png").write_text("not an image")
    Image.new("1", (8000, 5001)).save(inputs / "huge.png")  # 40.008 MP
    outside = tmp_path / "outside.png"
    noise((64, 64)).save(outside)
    backend = GatedBackend(gate_open=True)
    async with ImageService(make_settings(input_dirs=[inputs]), backend=backend) as svc:  # type: ignore[arg-type]
        src = catalogue(svc.store, noise())
        before = files(svc.store.output_dir)
        cases = [
            (edit(str(outside)), BadRequest, "image"),
            (edit("../../etc/passwd"), BadRequest, "image"),
            (edit(str(inputs / "huge.png")), BadRequest, "megapixel|MP|pixels"),
            (edit(src.image_id or "", mask=str(inputs / "notes.png")), BadRequest,
             "mask: notes.png is not an image"),
            (edit(src.image_id or "", mask=str(outside)), BadRequest, "mask"),
            (edit("image://no_such_image_here"), NotFound, "no_such_image_here"),
        ]
        for request, error, words in cases:
            with pytest.raises(error, match=words):
                await edit_image(svc, request)
        assert files(svc.store.output_dir) == before
        assert svc.jobs.all() == [] and backend.calls == 0


@pytest.mark.parametrize("strength", [0.01, 0.049, 1.01, 2.0])
def test_strength_outside_its_bounds_is_a_schema_error(strength: float) -> None:
    with pytest.raises(ValueError, match="strength"):
        EditRequest(image="abcdef", prompt="x", strength=strength)


# ------------------------------------------------------- jobs and cancel
async def test_cancel_mid_edit_frees_the_slot_and_a_long_edit_is_a_job_handle(
    make_settings: Callable[..., Any],
) -> None:
    backend = GatedBackend()
    async with ImageService(make_settings(), backend=backend) as svc:  # type: ignore[arg-type]
        src = catalogue(svc.store, noise())
        handle = await edit_image(svc, edit(src.image_id or ""), wait_s=0.05)
        assert handle.status == "running" and handle.job_id
        await anyio.to_thread.run_sync(backend.started.wait, 10)
        cancelled = await svc.cancel_job(handle.job_id)
        assert cancelled.status == "cancelled" and backend.cancelled.is_set()
        assert svc.queue_status()["running"] == 0
        backend.gate.set()
        done = await edit_image(svc, edit(src.image_id or ""))
        assert done.status == "succeeded" and backend.calls == 2
        followed = await svc.wait_job(handle.job_id, 0)
        assert followed.status == "cancelled"


# -------------------------------------------------------------------- MCP
def structured(result: Any) -> dict[str, Any]:
    assert result.structured_content is not None
    return dict(result.structured_content)


async def test_mcp_edit_image_returns_result_preview_link_and_progress(
    make_settings: Callable[..., Any], tiny_engine: Any
) -> None:
    settings = make_settings()
    svc = ImageService(settings, backend=tiny_engine)
    progress: list[float] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append(done)

    async with Client(build_server(settings, svc)) as client:
        src = catalogue(svc.store, noise())
        result = await client.call_tool(
            "edit_image", {"image": f"image://{src.image_id}", "prompt": "at night",
                           "seed": 3, **FAST}, progress_callback=on_progress)
        bad = await client.call_tool("edit_image", {"image": src.image_id, "prompt": "x",
                                                    "strength": 1.5})
        white = catalogue(svc.store, Image.new("L", (256, 256), 255))
        all_white = await client.call_tool("edit_image", {
            "image": src.image_id, "prompt": "x", "mask": white.image_id})
    assert not result.is_error, result.content
    body = structured(result)
    assert body["status"] == "succeeded" and body["source_image_id"] == src.image_id
    kinds = [c.type for c in result.content]
    assert kinds == ["text", "image", "resource_link"]
    preview = Image.open(io.BytesIO(base64.b64decode(result.content[1].data)))
    assert max(preview.size) <= 512
    assert progress and progress[-1] == 6
    assert bad.is_error and "strength" in bad.content[0].text
    assert all_white.is_error and "generate_image" in all_white.content[0].text


# ------------------------------------------------------------------- REST
def test_rest_edit_image_answers_the_result_or_422_naming_the_field(
    make_settings: Callable[..., Any], tiny_engine: Any
) -> None:
    settings = make_settings()
    svc = ImageService(settings, backend=tiny_engine)
    with serve(settings, svc) as live:
        src = catalogue(live.service.store, noise())
        url = live.url + "/api/media/edit-image"
        ok = httpx.post(url, json={"image": src.image_id, "prompt": "at night", "seed": 1,
                                   **FAST}, timeout=600)
        bad = httpx.post(url, json={"image": src.image_id, "prompt": "x", "strength": 0},
                         timeout=60)
        outside = httpx.post(url, json={"image": "/etc/hosts", "prompt": "x"}, timeout=60)
    assert ok.status_code == 200, ok.text
    assert ok.json()["source_image_id"] == src.image_id and ok.json()["steps"]["base"] == 6
    assert bad.status_code == 422 and "strength" in bad.json()["message"]
    assert outside.status_code == 422 and "image" in outside.json()["message"]


# -------------------------------------------------------------------- CLI
def test_cli_edit_prints_the_result(tiny_models: tuple, tmp_path: Path) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    noise((250, 256)).save(inputs / "photo.png")
    proc = run_cli("edit", str(inputs / "photo.png"), "at night", "--seed", "4", "--steps",
                   "10", "--strength", "0.5", "--no-refine", "--json", "--no-progress",
                   tmp_path=tmp_path, SDXL_MCP_INPUT_DIRS=str(inputs))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["status"] == "succeeded" and result["steps"]["base"] == 5
    assert result["source_image_id"] is None  # an INPUT_DIRS file has no id
    assert (result["image"]["width"], result["image"]["height"]) == (248, 256)
    assert "rounded to 248x256" in result["message"]
    bad = run_cli("edit", str(inputs / "photo.png"), "x", "--strength", "3", tmp_path=tmp_path)
    assert bad.returncode == 2 and "strength" in bad.stderr
