"""Web-ready exports: sizes, formats, max_bytes, naming, metadata, snippets, faces."""

from __future__ import annotations

import html
import io
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from mcp import Client
from PIL import Image, ImageCms, ImageDraw
from pydantic import ValidationError

from sdxl_mcp.entrypoints.mcp.server import build_server
from sdxl_mcp.errors import BadRequest
from sdxl_mcp.library import CatalogRecord, ImageStore
from sdxl_mcp.library.exports import Exporter, export_name, markdown_img, read_user_comment
from sdxl_mcp.library.resolver import ImageResolver, ResolvedImage
from sdxl_mcp.library.stock_photos import _save_and_catalog
from sdxl_mcp.library.transforms import sniff_format
from sdxl_mcp.schemas import ExportRequest, describe_validation_error
from sdxl_mcp.service.facade import ImageService
from sdxl_mcp.settings import Settings
from tests.fakes import GatedBackend
from tests.helpers_http import serve

INFOTEXT = ("a red lighthouse, highly detailed, 4k\nNegative prompt: fog\n"
            "Steps: 20, Sampler: Euler, CFG scale: 7.5, Seed: 7, Size: 1024x1024, Model: tiny ü")
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def photo_like(width: int, height: int, noise: float = 4.0) -> Image.Image:
    """A smooth gradient with shapes and a little grain: compresses like a photo."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    rgb = np.dstack([80 + 120 * x / width, 60 + 150 * y / height, 140 + 80 * np.sin(x / 90)])
    image = Image.fromarray(rgb.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    draw.ellipse([width // 5, height // 5, width // 2, height // 2], fill=(230, 60, 40))
    draw.rectangle([width // 2, height // 2, width - 20, height - 20], fill=(20, 40, 90))
    grain = np.random.default_rng(0).normal(0, noise, (height, width, 3))
    return Image.fromarray((np.asarray(image) + grain).clip(0, 255).astype(np.uint8))


class Library:
    def __init__(self, root: Path) -> None:
        self.store = ImageStore(root / "images")
        self.resolver = ImageResolver(self.store)
        self.exporter = Exporter(self.store.output_dir)

    def generated(self, image: Image.Image, prompt: str = "a red lighthouse, highly detailed, "
                  "4k", infotext: str | None = INFOTEXT) -> ResolvedImage:
        saved = self.store.save_image(image, seed=7, infotext=infotext)
        record = CatalogRecord.from_saved(saved, prompt=prompt, seed=7, source="sdxl")
        self.store.catalog.add(record)
        return self.resolver.resolve(record.image_id or "")

    def stock(self, alt: str = "Woman at a desk") -> ResolvedImage:
        buffer = io.BytesIO()
        photo_like(800, 600).save(buffer, "JPEG", quality=90, icc_profile=SRGB)
        record = _save_and_catalog(self.store, buffer.getvalue(), 42, ".jpg", alt, {
            "photographer": "Ana [B]", "photographer_url": "https://www.pexels.com/@ana",
            "page_url": "https://www.pexels.com/photo/42/", "alt": alt,
            "attribution": "Photo by Ana [B] (https://www.pexels.com/@ana) on Pexels "
                           "(https://www.pexels.com/photo/42/)"}, 800, 600)
        return self.resolver.resolve(record.image_id or "")

    def export(self, source: ResolvedImage, **fields: Any) -> Any:
        return self.exporter.export(source, ExportRequest(image="x", **fields))

    def leftovers(self) -> list[str]:
        return [n for n in os.listdir(self.exporter.folder) if n.startswith(".tmp-")] \
            if self.exporter.folder.exists() else []


@pytest.fixture
def lib(tmp_path: Path) -> Iterator[Library]:
    library = Library(tmp_path)
    yield library
    library.store.close()


@pytest.fixture(scope="module")
def big() -> Image.Image:
    return photo_like(1024, 1024)


# ------------------------------------------------------------------ sizes
@pytest.mark.parametrize(("preset", "size"), [
    ("og", (1200, 630)), ("hero", (1600, 900)), ("square", (1080, 1080)),
    ("thumbnail", (400, 400)), ("original", (640, 480)),
])
def test_presets_give_exact_sizes(lib: Library, preset: str, size: tuple[int, int]) -> None:
    result = lib.export(lib.generated(photo_like(640, 480)), preset=preset)
    assert (result.width, result.height) == size
    with Image.open(result.path) as image:
        assert image.size == size and image.format == "WEBP"
    assert Path(result.path).name == f"{result.image_id}.{preset}.webp"


def test_width_height_cover_contain_and_one_side(lib: Library) -> None:
    source = lib.generated(photo_like(640, 480))
    cover = lib.export(source, width=300, height=300)
    contain = lib.export(source, width=300, height=300, fit="contain")
    wide = lib.export(source, width=320)
    tall = lib.export(source, height=120, preset="hero")
    assert (cover.width, cover.height) == (300, 300)
    assert (contain.width, contain.height) == (300, 225)
    assert (wide.width, wide.height) == (320, 240) and (tall.width, tall.height) == (160, 120)
    names = {Path(r.path).name.split(".", 1)[1] for r in (cover, contain, wide, tall)}
    assert names == {"300x300.webp", "300x300.contain.webp", "320w.webp", "120h.webp"}


def test_one_side_may_not_push_the_other_past_the_bound(lib: Library) -> None:
    source = lib.generated(photo_like(400, 100))
    with pytest.raises(BadRequest, match=r"^width: the height would be|^height: the width"):
        lib.export(source, height=2000)
    assert lib.leftovers() == []


@pytest.mark.parametrize(("fmt", "magic", "ext"), [
    ("webp", "webp", ".webp"), ("jpeg", "jpeg", ".jpg"), ("png", "png", ".png")])
def test_formats_by_magic_bytes(lib: Library, fmt: str, magic: str, ext: str) -> None:
    result = lib.export(lib.generated(photo_like(320, 240)), preset="thumbnail", format=fmt)
    data = Path(result.path).read_bytes()
    assert sniff_format(data) == magic and result.path.endswith(ext)
    assert result.bytes == len(data) and result.format == fmt
    assert result.quality == (None if fmt == "png" else 85)


def test_an_input_dirs_file_and_exif_orientation(lib: Library, tmp_path: Path) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown rotated: portrait
    photo_like(200, 100).save(inputs / "my photo.jpg", "JPEG", exif=exif.tobytes())
    resolver = ImageResolver(lib.store, [inputs])
    source = resolver.resolve(str(inputs / "my photo.jpg"))
    result = lib.export(source, preset="original")
    assert (result.width, result.height) == (100, 200) and result.image_id is None
    assert Path(result.path).name.startswith("file-my_photo-") and result.alt == "Image"


# ------------------------------------------------------------------ max_bytes
def test_max_bytes_lowers_the_quality_until_it_fits(lib: Library, big: Image.Image) -> None:
    source = lib.generated(big)
    plain = lib.export(source)
    capped = lib.export(source, max_bytes=20_000)
    assert plain.bytes > 20_000 >= capped.bytes and capped.quality < 85
    assert Path(capped.path).stat().st_size == capped.bytes
    assert Path(capped.path).name.endswith(".og.max20000.webp")


def test_unreachable_max_bytes_names_the_smallest_size(lib: Library) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (1024, 1024, 3), dtype=np.uint8)
    source = lib.generated(Image.fromarray(noise))  # 18 kB as JPEG even at quality 1
    with pytest.raises(BadRequest) as caught:
        lib.export(source, preset="original", format="jpeg", max_bytes=10_000)
    message = caught.value.message
    assert message.startswith("max_bytes: the smallest jpeg at 1024x1024 is ")
    assert "(quality 1)" in message
    with pytest.raises(BadRequest, match=r"^max_bytes: the PNG at 1200x630 is [\d,]+ bytes"):
        lib.export(source, format="png", max_bytes=10_000)
    assert lib.leftovers() == [] and list(lib.exporter.folder.iterdir()) == []


def test_png_that_fits_is_the_same_file_as_without_max_bytes(lib: Library) -> None:
    source = lib.generated(Image.new("RGB", (300, 300), (10, 20, 30)), infotext=None)
    capped = lib.export(source, preset="thumbnail", format="png", max_bytes=10_000)
    plain = lib.export(source, preset="thumbnail", format="png")
    assert capped.path == plain.path and plain.cached


# ------------------------------------------------------------------ naming
def test_the_same_export_twice_is_the_same_file(lib: Library, big: Image.Image) -> None:
    source = lib.generated(big)
    first = lib.export(source, max_bytes=20_000)
    inode = os.stat(first.path).st_ino
    again = lib.export(source, max_bytes=20_000, alt="another alt")
    assert again.path == first.path and again.cached and not first.cached
    assert (again.quality, again.bytes) == (first.quality, first.bytes)
    assert os.stat(again.path).st_ino == inode  # not written again
    assert again.alt == "another alt"  # alt is not part of the file


def test_different_requests_never_share_a_file(lib: Library) -> None:
    source = lib.generated(photo_like(640, 480))
    variants = [{}, {"quality": 60}, {"max_bytes": 50_000}, {"quality": 60, "max_bytes": 50_000},
                {"fit": "contain"}, {"format": "jpeg"}, {"format": "png"}, {"preset": "hero"},
                {"width": 1200, "height": 630}, {"width": 1200}]
    paths = [lib.export(source, **v).path for v in variants]
    assert len(set(paths)) == len(paths)
    files = {p.name for p in lib.exporter.folder.iterdir() if not p.name.endswith(".json")}
    assert files == {Path(p).name for p in paths}
    facts = json.loads(Path(paths[1] + ".json").read_text())
    assert facts["quality"] == 60


def test_names_leave_defaults_out() -> None:
    def name(**fields: Any) -> str:
        return export_name("img_1", ExportRequest(image="img_1", **fields))
    assert name() == "img_1.og.webp"
    assert name(preset="original", fit="contain") == "img_1.original.webp"
    assert name(format="png", quality=10, max_bytes=20_000) == "img_1.og.png"
    assert name(quality=70, max_bytes=20_000, format="jpeg") == "img_1.og.q70.max20000.jpg"


# ------------------------------------------------------------------ metadata
def test_generation_parameters_read_back_in_every_format(lib: Library) -> None:
    source = lib.generated(photo_like(320, 240))
    for fmt in ("png", "jpeg", "webp"):
        result = lib.export(source, preset="thumbnail", format=fmt)
        with Image.open(result.path) as image:
            text = image.info.get("parameters") if fmt == "png" else read_user_comment(image)
            assert text == INFOTEXT, fmt
            if fmt != "png":
                raw = image.getexif().get_ifd(0x8769)[0x9286]
                assert raw.startswith(b"UNICODE\x00")  # A1111's encoding


def test_stock_photos_keep_their_icc_profile_and_no_parameters(lib: Library) -> None:
    for fmt in ("jpeg", "webp", "png"):
        result = lib.export(lib.stock(), format=fmt, preset="thumbnail")
        with Image.open(result.path) as image:
            assert image.info.get("icc_profile") == SRGB, fmt
            assert "parameters" not in image.info
            if fmt != "png":
                assert read_user_comment(image) is None


# ------------------------------------------------------------------ snippets
HOSTILE = '"><script>alert(1)</script> [x](y) \\ end\nline'


def test_html_and_markdown_escape_a_hostile_alt(lib: Library) -> None:
    result = lib.export(lib.generated(photo_like(320, 240)), preset="thumbnail", alt=HOSTILE)
    assert "<script>" not in result.html and '"><' not in result.html
    assert f'alt="{html.escape(result.alt, quote=True)}"' in result.html
    assert result.html.startswith(f'<img src="{html.escape(result.path, quote=True)}" ')
    assert result.html.endswith('width="400" height="400" loading="lazy">')
    alt_part = result.markdown[2:result.markdown.rindex("](")]
    assert "\n" not in result.markdown and "[x](y)" not in alt_part
    assert alt_part == r'"\>\<script\>alert(1)\</script\> \[x\](y) \\ end line'
    assert result.markdown.endswith(f"]({result.path})")


def test_markdown_wraps_an_odd_path() -> None:
    assert markdown_img("/a b/(c).webp", "x") == "![x](</a b/(c).webp>)"


def test_default_alt_and_attribution(lib: Library) -> None:
    generated = lib.export(lib.generated(photo_like(320, 240)), preset="thumbnail")
    assert generated.alt == "A red lighthouse" and generated.attribution is None
    stock = lib.export(lib.stock(), preset="thumbnail")
    assert stock.alt == "Woman at a desk"
    assert stock.attribution.startswith("Photo by Ana [B] (https://www.pexels.com/@ana)")
    assert stock.image_id and stock.uri == Path(stock.path).as_uri()


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize(("fields", "named"), [
    ({"width": 8}, "width must be ≥ 16"), ({"height": 5000}, "height must be ≤ 4096"),
    ({"preset": "banner"}, "preset must be one of"), ({"format": "gif"}, "format must be one"),
    ({"max_bytes": 9_999}, "max_bytes must be ≥ 10000"),
    ({"max_bytes": 10_000_001}, "max_bytes must be ≤ 10000000"),
    ({"quality": 0}, "quality must be ≥ 1"), ({"quality": True}, "quality must be a number"),
    ({"fit": "fill"}, "fit must be one of"), ({"image": ""}, "image must not be empty"),
    ({"colour": "red"}, "colour is not a known field"),
])
def test_bad_arguments_name_the_field(fields: dict[str, Any], named: str) -> None:
    with pytest.raises(ValidationError) as caught:
        ExportRequest.model_validate({"image": "img_1", **fields})
    assert named in describe_validation_error(caught.value)


def test_null_means_the_default() -> None:
    request = ExportRequest.model_validate({"image": "a", "preset": None, "quality": None,
                                            "format": None, "width": None})
    assert (request.preset, request.quality, request.format) == ("og", 85, "webp")


# ------------------------------------------------------------------ faces
@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_export_image_over_mcp(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    service = ImageService(settings, backend=GatedBackend(gate_open=True))
    async with Client(build_server(settings, service)) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        made = (await client.call_tool("generate_image", {
            "prompt": "a harbour at dawn, masterpiece, 8k", "width": 256, "height": 256,
            "num_inference_steps": 20})).structured_content
        result = await client.call_tool("export_image", {
            "image": f"image://{made['image_id']}", "preset": "thumbnail", "format": "jpeg"})
        unknown = await client.call_tool("export_image", {"image": "no_such_image"})
        outside = await client.call_tool("export_image", {"image": "/etc/passwd"})
        bad = await client.call_tool("export_image", {"image": made["image_id"], "width": 9})
    schema = tools["export_image"].input_schema
    assert schema["required"] == ["image"] and tools["export_image"].annotations.idempotent_hint
    body = result.structured_content
    assert not result.is_error and body["image_id"] == made["image_id"]
    assert (body["width"], body["height"], body["format"]) == (400, 400, "jpeg")
    assert body["alt"] == "A harbour at dawn" and Path(body["path"]).is_file()
    assert body["path"] in result.content[0].text  # type: ignore[union-attr]
    for failed, word in ((unknown, "image: no image"), (outside, "image must be"),
                         (bad, "width must be ≥ 16")):
        assert failed.is_error and word in failed.content[0].text  # type: ignore[union-attr]


def test_export_over_rest(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    service = ImageService(settings, backend=GatedBackend(gate_open=True))
    with serve(settings, service) as live, httpx.Client(base_url=live.url, timeout=30) as http:
        made = http.post("/api/media/generate-image", json={
            "prompt": "a quiet harbour", "use_pexels": False, "use_generation": True,
            "width": 256, "height": 256, "num_inference_steps": 20}).json()
        ok = http.post("/api/media/export", json={"image": made["image_id"],
                                                  "preset": "square", "alt": None})
        again = http.post("/api/media/export", json={"image": made["image_id"],
                                                     "preset": "square"})
        missing = http.post("/api/media/export", json={"image": "no_such_image"})
        bad = http.post("/api/media/export", json={"image": made["image_id"], "format": "gif"})
        document = http.get("/openapi.json").json()
    assert ok.status_code == 200 and ok.json()["width"] == 1080 and not ok.json()["cached"]
    assert again.json()["path"] == ok.json()["path"] and again.json()["cached"]
    assert missing.status_code == 404 and "image" in missing.json()["message"]
    assert bad.status_code == 422 and "format must be one of" in bad.json()["message"]
    assert "/api/media/export" in document["paths"]
    exports = Path(ok.json()["path"]).parent
    assert exports == settings.output_dir.resolve() / "exports"
    assert not [n for n in os.listdir(exports) if n.startswith(".tmp-")]
