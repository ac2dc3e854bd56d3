"""Tests for the library's files, infotext and catalog (sdxl_mcp.library).

Real files in tmp_path, no GPU, no network. Stock photo saving is tested in
tests/library/test_stock_photos.py.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from sdxl_mcp.errors import StorageError
from sdxl_mcp.library import (
    CATALOG_FILENAME,
    SCHEMA_VERSION,
    CatalogRecord,
    ImageStore,
    InfotextParams,
    SavedImage,
    files,
    format_infotext,
    parse_infotext,
)

TRICKY_PROMPT = 'a cat, sitting: on a "mat"\nsecond line, with commas: and colons'


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ImageStore]:
    with ImageStore(tmp_path / "out") as s:
        yield s


def _image(
    color: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (16, 8)
) -> Image.Image:
    return Image.new("RGB", size, color)


def _params(**overrides: object) -> InfotextParams:
    values: dict[str, object] = {
        "prompt": TRICKY_PROMPT,
        "negative_prompt": "blurry, low quality",
        "steps": 50,
        "cfg_scale": 8.0,
        "seed": 7,
        "width": 1024,
        "height": 768,
        "model": "stabilityai/stable-diffusion-xl-base-1.0",
        "refiner": "stabilityai/stable-diffusion-xl-refiner-1.0",
        "refiner_switch_at": 0.8,
    }
    values.update(overrides)
    return InfotextParams(**values)  # type: ignore[arg-type]


def _catalogue(store: ImageStore, saved: SavedImage, **fields: object) -> CatalogRecord:
    record = CatalogRecord.from_saved(saved, prompt="a cat", **fields)
    store.catalog.add(record)
    return record


def _leftovers(directory: Path) -> list[str]:
    """Everything in the dir except the catalog's own files."""
    return sorted(p.name for p in directory.iterdir() if not p.name.startswith(CATALOG_FILENAME))


# ---------------------------------------------------------------- infotext


def test_infotext_round_trips_prompt_with_commas_colons_and_newlines() -> None:
    parsed = parse_infotext(format_infotext(_params()))
    assert parsed["prompt"] == TRICKY_PROMPT
    assert parsed["negative_prompt"] == "blurry, low quality"
    assert parsed["Steps"] == "50"
    assert parsed["Seed"] == "7"
    assert parsed["Size"] == "1024x768"
    assert parsed["CFG scale"] == "8.0"
    assert parsed["Sampler"] == "Euler"
    assert parsed["Refiner"] == "stabilityai/stable-diffusion-xl-refiner-1.0"
    assert parsed["Refiner switch at"] == "0.8"


def test_infotext_omits_negative_line_and_refiner_keys_when_absent() -> None:
    text = format_infotext(_params(negative_prompt=None, refiner=None, refiner_switch_at=None))
    assert "Negative prompt:" not in text
    assert "Refiner" not in text
    parsed = parse_infotext(text)
    assert parsed["prompt"] == TRICKY_PROMPT
    assert parsed["negative_prompt"] == ""


def test_infotext_has_sequential_refiner_keys() -> None:
    text = format_infotext(
        _params(
            refiner_switch_at=None,
            refiner_mode="sequential",
            refiner_steps=30,
            refiner_strength=0.3,
        )
    )
    assert text.splitlines()[-1].endswith(
        "Refiner mode: sequential, Refiner steps: 30, Refiner strength: 0.3"
    )
    parsed = parse_infotext(text)
    assert parsed["Refiner steps"] == "30"
    assert "Refiner switch at" not in parsed


def test_infotext_quotes_values_that_contain_commas_or_colons() -> None:
    model = r"C:\models\sdxl, v1"
    parsed = parse_infotext(format_infotext(_params(model=model)))
    assert parsed["Model"] == model
    assert parsed["Size"] == "1024x768"


def test_parse_infotext_without_parameter_line_is_all_prompt() -> None:
    assert parse_infotext("just a prompt, nothing else") == {
        "prompt": "just a prompt, nothing else",
        "negative_prompt": "",
    }


# ---------------------------------------------------------------- saving


def test_concurrent_saves_with_same_seed_never_collide(store: ImageStore) -> None:
    barrier = threading.Barrier(8)
    results: list[SavedImage] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        try:
            barrier.wait()
            saved = store.save_image(_image((i * 30, 0, 0)), seed=42, infotext=None)
            with lock:
                results.append(saved)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert not errors
    assert len({r.path for r in results}) == 8
    for r in results:
        assert r.path.is_absolute()
        assert r.name.startswith("generated_image_") and "_42" in r.name
        with Image.open(r.path) as im:
            im.verify()
        assert hashlib.sha256(r.path.read_bytes()).hexdigest() == r.sha256
    assert not [n for n in _leftovers(store.output_dir) if n.startswith(".tmp-")]


def test_saves_in_the_same_microsecond_get_numbered_names(
    store: ImageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(files, "_utc_stamp", lambda: "20261126T005227123456Z")
    barrier = threading.Barrier(8)
    names: list[str] = []

    def worker() -> None:
        barrier.wait()
        names.append(store.save_image(_image(), seed=42, infotext=None).name)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stem = "generated_image_20261126T005227123456Z_42"
    assert sorted(names) == sorted([f"{stem}.png"] + [f"{stem}-{i}.png" for i in range(1, 8)])


def test_file_name_has_utc_timestamp_and_seed(store: ImageStore) -> None:
    saved = store.save_image(_image(), seed=123, infotext=None)
    assert saved.path.parent == store.output_dir
    prefix, stamp, seed = saved.path.stem.split("_")[-3:]
    assert (prefix, seed) == ("image", "123")
    assert len(stamp) == len("20261126T005227123456Z") and stamp.endswith("Z")
    assert (saved.width, saved.height, saved.bytes_written) == (16, 8, saved.path.stat().st_size)


def test_failed_fsync_leaves_nothing_and_raises_storage_error(
    store: ImageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files.os, "fsync", disk_full)
    with pytest.raises(StorageError, match="Free disk space") as info:
        store.save_image(_image(), seed=1, infotext="x")
    assert str(store.output_dir) in str(info.value)
    assert _leftovers(store.output_dir) == []


def test_failed_encode_leaves_nothing_and_raises_storage_error(
    store: ImageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_encoder(*args: object, **kwargs: object) -> bytes:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files, "encode_png", broken_encoder)
    with pytest.raises(StorageError, match="No space left on device"):
        store.save_image(_image(), seed=1, infotext="x")
    assert _leftovers(store.output_dir) == []


def test_read_only_output_dir_raises_storage_error(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root ignores directory permissions")
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    try:
        with pytest.raises(StorageError, match="not writable"):
            ImageStore(out)
    finally:
        out.chmod(0o700)


def test_unwritable_output_dir_raises_storage_error_even_as_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Root ignores chmod, so simulate the refusal where the write probe happens.
    real_open = os.open

    def refuse_temp(path: os.PathLike[str] | str, flags: int, mode: int = 0o777) -> int:
        if Path(path).name.startswith(".tmp-"):
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_open(path, flags, mode)

    monkeypatch.setattr(files.os, "open", refuse_temp)
    with pytest.raises(StorageError, match="not writable: Permission denied"):
        ImageStore(tmp_path / "out")


def test_output_dir_that_cannot_be_created_raises_storage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(StorageError, match="SDXL_MCP_OUTPUT_DIR"):
        ImageStore(blocker / "images")


def test_parameters_chunk_parses_back(store: ImageStore) -> None:
    saved = store.save_image(_image(), seed=7, infotext=format_infotext(_params()))
    with Image.open(saved.path) as im:
        text = im.info["parameters"]
    parsed = parse_infotext(text)
    assert parsed["prompt"] == TRICKY_PROMPT
    assert (parsed["Seed"], parsed["Steps"], parsed["Size"]) == ("7", "50", "1024x768")


def test_save_bytes_never_overwrites_an_existing_name(store: ImageStore) -> None:
    first = store.save_bytes(b"one", name_hint="pexels 123", suffix=".jpg")
    second = store.save_bytes(b"two", name_hint="pexels 123", suffix="jpg")
    assert (first.name, second.name) == ("pexels_123.jpg", "pexels_123-1.jpg")
    assert (first.read_bytes(), second.read_bytes()) == (b"one", b"two")


def test_publish_falls_back_to_replace_without_hard_links(
    store: ImageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(src: object, dst: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(files.os, "link", no_links)
    first = store.save_bytes(b"one", name_hint="photo", suffix=".jpg")
    second = store.save_bytes(b"two", name_hint="photo", suffix=".jpg")
    assert (first.read_bytes(), second.read_bytes()) == (b"one", b"two")
    assert _leftovers(store.output_dir) == ["photo-1.jpg", "photo.jpg"]


def test_sidecar_json_reads_back(store: ImageStore) -> None:
    saved = store.save_image(_image(), seed=3, infotext=None)
    payload = {"prompt": "ein Bär, café", "path": saved.path, "seed": 3}
    sidecar = store.write_sidecar(saved.path, payload)
    assert sidecar == saved.path.with_suffix(".json")
    assert json.loads(sidecar.read_text(encoding="utf-8")) == {**payload, "path": str(saved.path)}
    assert not [n for n in _leftovers(store.output_dir) if n.startswith(".tmp-")]


# ---------------------------------------------------------------- catalog


def test_catalog_row_matches_saved_file(store: ImageStore) -> None:
    saved = store.save_image(_image(), seed=11, infotext=None)
    _catalogue(store, saved, seed=11, parameters={"steps": 50}, negative_prompt="blurry")
    row = store.catalog.get_by_name(saved.name)
    assert row is not None
    assert row.name == saved.name
    assert row.path == saved.path
    assert row.seed == 11
    assert row.sha256 == hashlib.sha256(saved.path.read_bytes()).hexdigest()
    assert row.parameters == {"steps": 50}
    assert (row.width, row.height, row.source) == (16, 8, "sdxl")


def test_find_by_source_id_finds_stock_photo(store: ImageStore) -> None:
    path = store.save_bytes(b"jpeg", name_hint="pexels_99", suffix=".jpg")
    store.catalog.add(
        CatalogRecord(
            name=path.name,
            path=path,
            prompt="a dog",
            sha256="0" * 64,
            width=1,
            height=1,
            source="pexels",
            source_id="99",
        )
    )
    found = store.catalog.find_by_source_id("pexels", "99")
    assert found is not None and found.path == path
    assert store.catalog.find_by_source_id("pexels", "100") is None


def test_catalog_uses_wal_and_schema_version(store: ImageStore) -> None:
    with sqlite3.connect(store.output_dir / CATALOG_FILENAME) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()


def test_catalog_survives_reopen(tmp_path: Path) -> None:
    with ImageStore(tmp_path / "out") as first:
        saved = first.save_image(_image(), seed=9, infotext=None)
        _catalogue(first, saved, seed=9)
    with ImageStore(tmp_path / "out") as second:
        assert second.catalog.count() == 1
        row = second.catalog.get_by_name(saved.name)
        assert row is not None and row.seed == 9
        assert second.resolve_name(saved.name) == saved.path


# ---------------------------------------------------------------- resolve / cleanup


@pytest.mark.parametrize(
    "name", ["../x", "/etc/passwd", "a/b", "a\\b", "x\x00y", "", ".", "..", CATALOG_FILENAME]
)
def test_resolve_name_refuses_unsafe_names(store: ImageStore, name: str) -> None:
    assert store.resolve_name(name) is None


def test_resolve_name_refuses_symlink_pointing_outside(store: ImageStore, tmp_path: Path) -> None:
    outside = tmp_path / "secret.png"
    outside.write_bytes(b"secret")
    link = store.output_dir / "link.png"
    link.symlink_to(outside)
    assert store.resolve_name("link.png") is None


def test_resolve_name_refuses_uncatalogued_file(store: ImageStore) -> None:
    saved = store.save_image(_image(), seed=1, infotext=None)
    assert store.resolve_name(saved.name) is None


def test_resolve_name_accepts_catalogued_file(store: ImageStore) -> None:
    saved = store.save_image(_image(), seed=1, infotext=None)
    _catalogue(store, saved, seed=1)
    assert store.resolve_name(saved.name) == saved.path


def test_cleanup_temp_files_removes_only_tmp_files(store: ImageStore) -> None:
    (store.output_dir / ".tmp-abc.png").write_bytes(b"partial")
    (store.output_dir / ".tmp-def.json").write_bytes(b"{")
    keep = store.save_image(_image(), seed=1, infotext=None)
    assert store.cleanup_temp_files() == 2
    assert _leftovers(store.output_dir) == [keep.name]
