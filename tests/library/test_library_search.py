"""The catalog's image ids, full-text search and its migration from schema 2."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from sdxl_mcp.library import CATALOG_FILENAME, SCHEMA_VERSION, CatalogRecord, ImageStore
from sdxl_mcp.library.catalog import fts_query


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ImageStore]:
    with ImageStore(tmp_path / "images") as opened:
        yield opened


def _generated(store: ImageStore, prompt: str, seed: int, **fields: object) -> CatalogRecord:
    saved = store.save_image(Image.new("RGB", (32, 32)), seed=seed, infotext=prompt)
    record = CatalogRecord.from_saved(saved, prompt=prompt, seed=seed, source="sdxl", **fields)
    store.catalog.add(record)
    return record


def _stock(store: ImageStore, photo_id: int, alt: str, photographer: str) -> CatalogRecord:
    path = store.save_bytes(b"not decoded here", name_hint=f"pexels_{photo_id}", suffix=".jpg")
    record = CatalogRecord(name=path.name, path=path, prompt=alt, sha256="0" * 64, width=10,
                           height=10, source="pexels", source_id=str(photo_id),
                           parameters={"alt": alt, "photographer": photographer})
    store.catalog.add(record)
    return record


def test_every_image_gets_a_url_safe_id_from_its_file_stem(store: ImageStore) -> None:
    record = _generated(store, "a lighthouse", 7)
    assert record.image_id == Path(record.name).stem
    assert store.catalog.get_by_image_id(record.image_id or "") == record


def test_a_stem_taken_by_another_file_gets_a_distinct_id(store: ImageStore) -> None:
    first = _stock(store, 1, "a red door", "Ana")
    second_path = store.save_bytes(b"x", name_hint="pexels_1", suffix=".png")
    second = CatalogRecord(name=second_path.name, path=second_path, prompt="p", sha256="0",
                           width=1, height=1, source="pexels")
    store.catalog.add(second)
    assert first.image_id == "pexels_1"
    assert second.image_id == "pexels_1-png"


def test_newest_first_without_a_query(store: ImageStore) -> None:
    older = _generated(store, "first", 1)
    newer = _generated(store, "second", 2)
    total, records = store.catalog.search(None)
    assert total == 2 and [r.image_id for r in records] == [newer.image_id, older.image_id]


def test_search_matches_prompt_alt_and_photographer_and_ranks_better_matches_first(
    store: ImageStore,
) -> None:
    _generated(store, "a cat on a sofa", 1)
    both = _generated(store, "a lighthouse at dawn, lighthouse keeper, lighthouse", 2)
    once = _generated(store, "a lighthouse in fog", 3)
    stock = _stock(store, 9, "Woman at a desk", "Ana Lima")
    total, records = store.catalog.search("lighthouse")
    assert total == 2 and records[0].image_id == both.image_id
    assert records[1].image_id == once.image_id
    assert [r.image_id for r in store.catalog.search("ana")[1]] == [stock.image_id]
    assert [r.image_id for r in store.catalog.search("desk woman")[1]] == [stock.image_id]
    assert store.catalog.search("lighthouse", source="pexels")[0] == 0


def test_paging_counts_all_matches(store: ImageStore) -> None:
    for seed in range(5):
        _generated(store, f"tree number {seed}", seed)
    total, page = store.catalog.search("tree", limit=2, offset=2)
    assert total == 5 and len(page) == 2


@pytest.mark.parametrize("query", ['"', "*", "NEAR(", "-", "a OR", 'tree" AND "x', "(((", ":"])
def test_fts_syntax_is_read_as_words_and_never_raises(store: ImageStore, query: str) -> None:
    _generated(store, "a tree", 1)
    total, _ = store.catalog.search(query)
    assert total >= 0


def test_query_words_are_quoted_and_the_last_is_a_prefix() -> None:
    assert fts_query('lig "house" NEAR(') == '"lig" "house" "NEAR"*'
    assert fts_query("  *  ") is None and fts_query(None) is None


def test_a_schema_2_catalog_gets_ids_and_a_search_index(tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    # The images table exactly as schema 2 wrote it, with two rows.
    with sqlite3.connect(folder / CATALOG_FILENAME) as db:
        db.executescript("""
            CREATE TABLE images (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,
                path TEXT NOT NULL, prompt TEXT NOT NULL, negative_prompt TEXT,
                parameters TEXT NOT NULL DEFAULT '{}', seed INTEGER, source TEXT NOT NULL,
                source_id TEXT, request_key TEXT, sha256 TEXT NOT NULL, width INTEGER NOT NULL,
                height INTEGER NOT NULL, created TEXT NOT NULL, result_json TEXT);
            PRAGMA user_version=2;
        """)
        db.execute("INSERT INTO images (name, path, prompt, source, sha256, width, height, "
                   "created) VALUES ('old_generated_1.png', '/x/old_generated_1.png', "
                   "'an old lighthouse', 'sdxl', '0', 1, 1, '2026-01-01T00:00:00+00:00')")
        db.execute("INSERT INTO images (name, path, prompt, parameters, source, sha256, width, "
                   "height, created) VALUES ('pexels_5.jpg', '/x/pexels_5.jpg', 'q', "
                   "'{\"alt\": \"Harbour at night\", \"photographer\": \"Bo\"}', 'pexels', '0', "
                   "1, 1, '2026-01-02T00:00:00+00:00')")
    with ImageStore(folder) as store:
        assert store.catalog.get_by_image_id("old_generated_1") is not None
        assert [r.name for r in store.catalog.search("lighthouse")[1]] == ["old_generated_1.png"]
        assert [r.name for r in store.catalog.search("harbour")[1]] == ["pexels_5.jpg"]
        new = _generated(store, "a new lighthouse", 3)
        assert {r.image_id for r in store.catalog.search("lighthouse")[1]} == {
            "old_generated_1", new.image_id}
    with sqlite3.connect(folder / CATALOG_FILENAME) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
