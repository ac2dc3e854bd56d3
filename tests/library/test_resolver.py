"""The image resolver on real files: what an image argument may name, and what it may not.

Every case is a real file (or link) under this test's temp dir: catalogued
images in OUTPUT_DIR, files in an INPUT_DIRS folder, and files outside both.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from sdxl_mcp.errors import BadRequest, NotFound
from sdxl_mcp.library import ImageStore
from sdxl_mcp.library.resolver import MAX_PIXELS, ImageResolver
from tests.helpers_images import catalogue


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ImageStore]:
    with ImageStore(tmp_path / "images") as opened:
        yield opened


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    folder = tmp_path / "inputs"
    folder.mkdir()
    return folder


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """An image neither folder holds."""
    path = tmp_path / "elsewhere" / "photo.png"
    path.parent.mkdir()
    Image.new("RGB", (32, 24), "blue").save(path)
    return path


@pytest.fixture
def resolver(store: ImageStore, inputs: Path) -> ImageResolver:
    return ImageResolver(store, [inputs])


def red(size: tuple[int, int] = (64, 48)) -> Image.Image:
    return Image.new("RGB", size, (200, 10, 10))


# ------------------------------------------------------------------ accepted
def test_an_image_id_names_the_catalogued_file(store: ImageStore,
                                               resolver: ImageResolver) -> None:
    record = catalogue(store, red())
    assert record.image_id
    resolved = resolver.resolve(record.image_id)
    assert resolved.path == record.path and resolved.image_id == record.image_id
    assert (resolved.width, resolved.height, resolved.format) == (64, 48, "PNG")


def test_an_image_uri_by_id_or_by_legacy_file_name(store: ImageStore,
                                                   resolver: ImageResolver) -> None:
    record = catalogue(store, red())
    by_id = resolver.resolve(f"image://{record.image_id}")
    by_name = resolver.resolve(f"image://{record.name}")
    bare_name = resolver.resolve(record.name)
    assert by_id.path == by_name.path == bare_name.path == record.path
    assert by_name.image_id == record.image_id


def test_an_absolute_path_of_a_catalogued_file_in_output_dir(store: ImageStore,
                                                             resolver: ImageResolver) -> None:
    record = catalogue(store, red())
    resolved = resolver.resolve(str(record.path))
    assert resolved.path == record.path and resolved.record is not None


def test_a_path_under_an_input_dir_is_read_without_a_catalog_row(
    inputs: Path, resolver: ImageResolver
) -> None:
    path = inputs / "sub" / "mine.jpg"
    path.parent.mkdir()
    Image.new("RGB", (40, 30), "green").save(path)
    resolved = resolver.resolve(str(path), "mask")
    assert resolved.path == path and resolved.record is None and resolved.image_id is None
    assert (resolved.width, resolved.height, resolved.format) == (40, 30, "JPEG")


# ------------------------------------------------------------------ refused
def test_a_foreign_file_dropped_into_output_dir_is_refused(
    store: ImageStore, resolver: ImageResolver
) -> None:
    dropped = store.output_dir / "generated_image_dropped.png"
    Image.new("RGB", (8, 8), "red").save(dropped)
    with pytest.raises(BadRequest, match=r"^image: .*not an image this server saved"):
        resolver.resolve(str(dropped))
    with pytest.raises(NotFound, match=r"^image: no image"):
        resolver.resolve(dropped.name)


def test_a_path_outside_the_allowed_folders_is_refused(outside: Path,
                                                       resolver: ImageResolver) -> None:
    with pytest.raises(BadRequest, match=r"^mask must be an image_id.*SDXL_MCP_INPUT_DIRS"):
        resolver.resolve(str(outside), "mask")


def test_without_input_dirs_only_the_library_is_accepted(store: ImageStore, inputs: Path) -> None:
    path = inputs / "mine.png"
    Image.new("RGB", (20, 20)).save(path)
    plain = ImageResolver(store)
    with pytest.raises(BadRequest) as info:
        plain.resolve(str(path))
    assert "INPUT_DIRS" not in info.value.message and "OUTPUT_DIR" in info.value.message


@pytest.mark.parametrize("template", [
    "{inputs}/../elsewhere/photo.png",
    "{inputs}/sub/../../elsewhere/photo.png",
    "{images}/../elsewhere/photo.png",
    "image://../elsewhere/photo.png",
    "../elsewhere/photo.png",
    "elsewhere/photo.png",
    "image://..",
    "..",
])
def test_dot_dot_traversal_never_leaves_the_folders(
    template: str, store: ImageStore, inputs: Path, outside: Path, resolver: ImageResolver
) -> None:
    (inputs / "sub").mkdir()
    reference = template.format(inputs=inputs, images=store.output_dir)
    with pytest.raises(BadRequest):
        resolver.resolve(reference, "image")


def test_a_symlink_in_an_input_dir_leading_out_is_refused(
    inputs: Path, outside: Path, resolver: ImageResolver
) -> None:
    (inputs / "link.png").symlink_to(outside)
    (inputs / "linked_dir").symlink_to(outside.parent, target_is_directory=True)
    for reference in (inputs / "link.png", inputs / "linked_dir" / "photo.png"):
        with pytest.raises(BadRequest, match="outside them"):
            resolver.resolve(str(reference))


def test_a_catalogued_name_whose_file_became_a_symlink_is_refused(
    store: ImageStore, outside: Path, resolver: ImageResolver
) -> None:
    record = catalogue(store, red())
    record.path.unlink()
    record.path.symlink_to(outside)
    assert record.image_id
    for reference in (record.image_id, record.name, f"image://{record.image_id}"):
        with pytest.raises(NotFound, match="gone"):
            resolver.resolve(reference)
    with pytest.raises(BadRequest):  # the path resolves to the file outside
        resolver.resolve(str(record.path))


def test_a_missing_id_is_not_found_and_names_the_argument(store: ImageStore,
                                                         resolver: ImageResolver) -> None:
    for reference in ("abcdef123", "image://abcdef123", "generated_image_nope.png"):
        with pytest.raises(NotFound, match=r"^mask: no image .*find_images"):
            resolver.resolve(reference, "mask")


def test_a_catalogued_image_whose_file_is_gone_is_not_found(store: ImageStore,
                                                            resolver: ImageResolver) -> None:
    record = catalogue(store, red())
    record.path.unlink()
    assert record.image_id
    with pytest.raises(NotFound, match="gone"):
        resolver.resolve(record.image_id)


def test_a_missing_path_is_not_found(inputs: Path, resolver: ImageResolver) -> None:
    with pytest.raises(NotFound, match=r"^image: the file .* does not exist"):
        resolver.resolve(str(inputs / "nothing.png"))


def test_a_file_that_is_not_an_image_is_refused(inputs: Path, resolver: ImageResolver) -> None:
    for name, data in (("notes.png", b"just text, not a PNG"), ("empty.jpg", b"")):
        (inputs / name).write_bytes(data)
        with pytest.raises(BadRequest, match=r"^image: .* is not an image file"):
            resolver.resolve(str(inputs / name))


def test_a_directory_is_not_an_image(inputs: Path, resolver: ImageResolver) -> None:
    (inputs / "folder.png").mkdir()
    with pytest.raises(NotFound):
        resolver.resolve(str(inputs / "folder.png"))


def test_a_50_megapixel_png_bomb_is_refused_from_its_header(
    inputs: Path, resolver: ImageResolver, monkeypatch: pytest.MonkeyPatch
) -> None:
    bomb = inputs / "bomb.png"
    Image.new("1", (8000, 6500)).save(bomb)  # 52 MP, a few KiB on disk
    assert MAX_PIXELS < 8000 * 6500 and bomb.stat().st_size < 200_000

    def no_decoding(*_: object, **__: object) -> None:
        raise AssertionError("the resolver decoded the pixels")

    monkeypatch.setattr(Image.Image, "load", no_decoding)
    started = time.perf_counter()
    with pytest.raises(BadRequest, match=r"^image: the image is 8000x6500, over 40 megapixels"):
        resolver.resolve(str(bomb))
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize("reference", ["", "   ", "\x00", "abcdef\x00123", "image://",
                                       "image://abc\x00def", "/tmp/x\x00.png"])
def test_nul_and_empty_references_are_refused(reference: str, resolver: ImageResolver) -> None:
    with pytest.raises(BadRequest, match=r"^image must be an image_id"):
        resolver.resolve(reference)


@pytest.mark.parametrize("reference", ["a/b", "x" * 300, "a b c", "catalog.sqlite3;", "*"])
def test_references_that_are_neither_an_id_nor_a_name_are_refused(
    reference: str, resolver: ImageResolver
) -> None:
    with pytest.raises(BadRequest, match=r"^image must be an image_id"):
        resolver.resolve(reference)
