"""Served views: transforms (size, fit, format, quality), the bounded cache, metadata.

Real files in a real ImageStore; the pixels are checked after decoding the
bytes that would be served.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from sdxl_mcp.errors import BadRequest, NotFound
from sdxl_mcp.library import CatalogRecord, ImageStore
from sdxl_mcp.library import views as views_module
from sdxl_mcp.library.resolver import ImageResolver, ResolvedImage
from sdxl_mcp.library.transforms import Transform, sniff_format
from sdxl_mcp.library.views import (
    ViewCache,
    metadata_json,
    served_image,
    view_bytes,
    view_transform,
)
from tests.helpers_images import catalogue

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ImageStore]:
    with ImageStore(tmp_path / "images") as opened:
        yield opened


@pytest.fixture
def resolver(store: ImageStore, tmp_path: Path) -> ImageResolver:
    (tmp_path / "inputs").mkdir()
    return ImageResolver(store, [tmp_path / "inputs"])


def stripes(width: int = 300, height: int = 100) -> Image.Image:
    """Red | green | blue thirds: a centred crop is all green."""
    image = Image.new("RGB", (width, height), RED)
    image.paste(GREEN, (width // 3, 0, 2 * width // 3, height))
    image.paste(BLUE, (2 * width // 3, 0, width, height))
    return image


@pytest.fixture
def striped(store: ImageStore, resolver: ImageResolver) -> ResolvedImage:
    record = catalogue(store, stripes(), prompt="stripes")
    assert record.image_id
    return resolver.resolve(record.image_id)


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def close(pixel: tuple[int, ...], colour: tuple[int, int, int], tolerance: int = 40) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel[:3], colour, strict=True))


# ------------------------------------------------------------------ query values
def test_no_query_value_means_no_transform() -> None:
    assert view_transform() is None


def test_query_strings_become_a_transform_with_the_defaults() -> None:
    assert view_transform(width="400", height="300") == Transform("png", 400, 300, "cover", 85)
    assert view_transform(format="WEBP", quality="70", fit="contain") == Transform(
        "webp", None, None, "contain", 70)
    assert view_transform(width=16, height=4096) == Transform("png", 16, 4096)


@pytest.mark.parametrize(("values", "named"), [
    ({"width": "abc"}, "width"), ({"width": "15"}, "width"), ({"height": "4097"}, "height"),
    ({"width": ""}, "width"), ({"width": "-20"}, "width"), ({"height": "1.5"}, "height"),
    ({"width": "9" * 40}, "width"), ({"format": "gif"}, "format"), ({"format": ""}, "format"),
    ({"fit": "stretch"}, "fit"), ({"quality": "0"}, "quality"), ({"quality": "101"}, "quality"),
    ({"quality": "high"}, "quality"),
])
def test_bad_query_values_name_the_parameter(values: dict[str, str], named: str) -> None:
    with pytest.raises(BadRequest, match=rf"^{named} must be"):
        view_transform(**values)


# ------------------------------------------------------------------ sizes and fits
@pytest.mark.parametrize(("transform", "size"), [
    (Transform(width=120, height=120), (120, 120)),                # cover: exact
    (Transform(width=400, height=50, fit="cover"), (400, 50)),     # cover, upscaled
    (Transform(width=120, height=120, fit="contain"), (120, 40)),  # inside the box
    (Transform(width=60, height=100, fit="contain"), (60, 20)),
    (Transform(width=150), (150, 50)),                             # width only
    (Transform(height=20), (60, 20)),                              # height only
])
def test_sizes_for_cover_contain_and_one_side(
    striped: ResolvedImage, transform: Transform, size: tuple[int, int]
) -> None:
    data, mime = view_bytes(striped, transform, ViewCache())
    assert decode(data).size == size and mime == "image/png"


def test_cover_crops_the_centre(striped: ResolvedImage) -> None:
    data, _ = view_bytes(striped, Transform(width=90, height=90), ViewCache())
    image = decode(data).convert("RGB")
    for xy in ((2, 2), (45, 45), (87, 87), (2, 87), (87, 2)):
        assert close(image.getpixel(xy), GREEN), (xy, image.getpixel(xy))  # type: ignore[arg-type]


def test_contain_keeps_the_whole_image(striped: ResolvedImage) -> None:
    data, _ = view_bytes(striped, Transform(width=90, height=90, fit="contain"), ViewCache())
    image = decode(data).convert("RGB")
    assert image.size == (90, 30)
    assert close(image.getpixel((3, 15)), RED) and close(image.getpixel((86, 15)), BLUE)  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", ["png", "webp", "jpeg"])
def test_formats_are_what_their_magic_bytes_say(striped: ResolvedImage, fmt: str) -> None:
    data, mime = view_bytes(striped, Transform(format=fmt, width=64), ViewCache())  # type: ignore[arg-type]
    assert sniff_format(data) == fmt and mime == f"image/{fmt}"
    assert decode(data).size == (64, 21)


def test_quality_bounds_change_the_size(striped: ResolvedImage) -> None:
    cache = ViewCache()
    noisy = striped  # stripes compress well; compare lowest and highest quality
    low, _ = view_bytes(noisy, Transform(format="jpeg", quality=1), cache)
    high, _ = view_bytes(noisy, Transform(format="jpeg", quality=100), cache)
    assert len(low) < len(high)
    for bad in (0, 101):
        with pytest.raises(BadRequest, match=r"^quality must be"):
            Transform(format="jpeg", quality=bad)


def test_no_transform_or_an_identity_serves_the_original_bytes(striped: ResolvedImage) -> None:
    original = striped.path.read_bytes()
    assert view_bytes(striped, None, ViewCache()) == (original, "image/png")
    assert view_bytes(striped, Transform(format="png"), ViewCache())[0] == original
    assert view_bytes(striped, Transform(format="webp"), ViewCache())[0] != original


def test_a_jpeg_source_is_decoded_at_a_reduced_scale(store: ImageStore,
                                                     resolver: ImageResolver) -> None:
    buffer = io.BytesIO()
    stripes(1600, 800).save(buffer, format="JPEG", quality=90)
    path = store.save_bytes(buffer.getvalue(), name_hint="pexels_1", suffix=".jpg")
    store.catalog.add(CatalogRecord(name=path.name, path=path, prompt="stripes", sha256="x",
                                    width=1600, height=800, source="pexels", source_id="1"))
    resolved = resolver.resolve(path.name)
    assert view_bytes(resolved, None, ViewCache())[1] == "image/jpeg"
    data, mime = view_bytes(resolved, Transform(format="webp", width=200, height=200),
                            ViewCache())
    image = decode(data).convert("RGB")
    assert mime == "image/webp" and image.size == (200, 200)
    assert close(image.getpixel((100, 100)), GREEN)  # type: ignore[arg-type]


# ------------------------------------------------------------------ the cache
@pytest.fixture
def render_calls(monkeypatch: pytest.MonkeyPatch) -> list[Transform]:
    calls: list[Transform] = []
    real = views_module.render

    def counting(image: Image.Image, transform: Transform) -> bytes:
        calls.append(transform)
        return real(image, transform)

    monkeypatch.setattr(views_module, "render", counting)
    return calls


def test_a_repeated_view_is_served_from_the_cache(striped: ResolvedImage,
                                                  render_calls: list[Transform]) -> None:
    cache = ViewCache()
    thumb = Transform(format="webp", width=40, height=40)
    first = view_bytes(striped, thumb, cache)
    again = view_bytes(striped, Transform(format="webp", width=40, height=40), cache)
    assert first == again and len(render_calls) == 1 and len(cache) == 1
    view_bytes(striped, Transform(format="webp", width=41, height=40), cache)
    assert len(render_calls) == 2 and cache.total_bytes == sum(
        len(view_bytes(striped, t, cache)[0]) for t in (thumb, Transform("webp", 41, 40)))
    assert len(render_calls) == 2


def test_a_replaced_file_is_rendered_again(striped: ResolvedImage,
                                           render_calls: list[Transform]) -> None:
    cache = ViewCache()
    thumb = Transform(width=30)
    view_bytes(striped, thumb, cache)
    Image.new("RGB", (300, 100), BLUE).save(striped.path)
    stat = striped.path.stat()
    os.utime(striped.path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    data, _ = view_bytes(striped, thumb, cache)
    assert len(render_calls) == 2
    assert close(decode(data).convert("RGB").getpixel((2, 2)), BLUE)  # type: ignore[arg-type]


def test_the_cache_is_bounded_by_bytes_least_recently_used_first() -> None:
    cache = ViewCache(max_bytes=1000)
    key = lambda n: ("img", 1, 1, Transform(width=16 + n))  # noqa: E731
    cache.put(key(1), (b"a" * 400, "image/png"))
    cache.put(key(2), (b"b" * 400, "image/png"))
    assert cache.get(key(1)) is not None  # 1 is now the most recently used
    cache.put(key(3), (b"c" * 400, "image/png"))
    assert cache.get(key(2)) is None and cache.get(key(1)) and cache.get(key(3))
    assert cache.total_bytes == 800 <= cache.max_bytes
    cache.put(key(4), (b"d" * 1001, "image/png"))  # alone over the bound: not kept
    assert cache.get(key(4)) is None and cache.total_bytes == 800
    cache.put(key(3), (b"e" * 100, "image/png"))  # replacing an entry recounts it
    assert cache.total_bytes == 500 and len(cache) == 2


def test_views_over_the_bound_evict_older_ones(striped: ResolvedImage) -> None:
    cache = ViewCache(max_bytes=3000)
    for width in range(16, 200, 8):
        view_bytes(striped, Transform(width=width), cache)
        assert cache.total_bytes <= 3000
    assert 0 < len(cache) < len(range(16, 200, 8))


# ------------------------------------------------------------------ what is served
def test_only_library_images_are_served(store: ImageStore, resolver: ImageResolver,
                                        striped: ResolvedImage, tmp_path: Path) -> None:
    record = striped.record
    assert record is not None and record.image_id
    for reference in (record.image_id, record.name, f"image://{record.image_id}",
                      f"image://{record.name}"):
        assert served_image(resolver, reference).path == striped.path
    mine = tmp_path / "inputs" / "mine.png"
    Image.new("RGB", (20, 20)).save(mine)
    for reference in (str(mine), str(striped.path), "../images/" + record.name, "..",
                      "image://../x", "nope-nope", "a" * 5000, "x\x00.png", "",
                      "catalog.sqlite3"):
        with pytest.raises(NotFound, match=r"^No image .* on this server"):
            served_image(resolver, reference)


def test_metadata_is_the_sidecar_json(store: ImageStore, striped: ResolvedImage) -> None:
    store.write_sidecar(striped.path, {"image_id": striped.image_id, "request": {"seed": 1}})
    assert json.loads(metadata_json(striped)) == {"image_id": striped.image_id,
                                                  "request": {"seed": 1}}


def test_a_stock_photo_without_a_sidecar_gets_its_catalog_row(
    store: ImageStore, resolver: ImageResolver
) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30)).save(buffer, format="JPEG")
    path = store.save_bytes(buffer.getvalue(), name_hint="pexels_42", suffix=".jpg")
    store.catalog.add(CatalogRecord(
        name=path.name, path=path, prompt="a desk", sha256="x", width=40, height=30,
        source="pexels", source_id="42", parameters={
            "photographer": "Ann", "photographer_url": "https://www.pexels.com/@ann",
            "page_url": "https://www.pexels.com/photo/42/", "alt": "a desk",
            "attribution": "Photo by Ann on Pexels"}))
    meta = json.loads(metadata_json(resolver.resolve(path.name)))
    assert meta["attribution"] == "Photo by Ann on Pexels" and meta["photographer"] == "Ann"
    assert meta["page_url"] == "https://www.pexels.com/photo/42/" and meta["alt"] == "a desk"
    assert meta["source"] == "pexels" and meta["image_id"] and meta["width"] == 40


def test_a_sidecar_that_is_a_symlink_is_not_read(store: ImageStore, striped: ResolvedImage,
                                                 tmp_path: Path) -> None:
    secret = tmp_path / "secret.json"
    secret.write_text('{"secret": true}')
    striped.path.with_suffix(".json").symlink_to(secret)
    assert "secret" not in metadata_json(striped)
