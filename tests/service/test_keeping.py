"""The one save path (``service.keeping``): what a workflow's Entry decides, and all or nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from PIL import Image

from sdxl_mcp.backend.base import EngineOutput
from sdxl_mcp.errors import StorageError
from sdxl_mcp.library import ImageStore, parse_infotext
from sdxl_mcp.schemas import EditRequest, GenerationResult
from sdxl_mcp.service.keeping import Entry, Keeper
from sdxl_mcp.settings import Settings
from tests.fakes import engine_output
from tests.helpers_images import files


def output(**fields: Any) -> EngineOutput:
    return engine_output(Image.new("RGB", (64, 48), (10, 200, 30)), **{
        "seed": 7, "steps_base": 4, "base_model": "base",
        "timings": {"base": 0.5, "model_load": 0.25}, **fields})


def an_edit_entry() -> Entry:
    def finish(result: GenerationResult) -> GenerationResult:
        return result.model_copy(update={"source_image_id": "img_source",
                                         "message": "Image edited."})

    return Entry(request=EditRequest(image="img_source", prompt="at night"),
                 infotext="at night\nSteps: 4, Seed: 7, Denoising strength: 0.6",
                 finish=finish, catalog_extra={"edit_of": "img_source"})


@pytest.fixture
def store(tmp_path: Path) -> Any:
    with ImageStore(tmp_path / "images") as opened:
        yield opened


@pytest.fixture
def keeper(store: ImageStore, make_settings: Any) -> Keeper:
    settings: Settings = make_settings(output_dir=store.output_dir)
    return Keeper(settings, lambda: store)


def test_the_entry_decides_infotext_result_fields_and_catalog_parameters(
    keeper: Keeper, store: ImageStore
) -> None:
    result = keeper.keep("job-1", output(), an_edit_entry())
    assert result.success and result.path and result.image_id
    assert result.source_image_id == "img_source" and result.message == "Image edited."
    with Image.open(result.path) as png:
        assert parse_infotext(png.text["parameters"])["Denoising strength"] == "0.6"
    sidecar = json.loads(Path(result.path).with_suffix(".json").read_text())
    assert sidecar["source_image_id"] == "img_source"
    assert sidecar["request"]["prompt"] == "at night"
    record = store.catalog.get_by_image_id(result.image_id)
    assert record is not None and record.parameters["edit_of"] == "img_source"
    assert record.parameters["prompt"] == "at night" and record.request_key is None


def test_the_backend_build_time_counts_in_model_load(keeper: Keeper) -> None:
    result = keeper.keep("job-2", output(), an_edit_entry(), building_s=1.5)
    assert result.timings.model_load == pytest.approx(1.75)


def test_a_catalog_failure_leaves_neither_png_nor_sidecar(
    keeper: Keeper, store: ImageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = files(store.output_dir)

    def full(*_: Any, **__: Any) -> None:
        raise StorageError("The catalog could not be written: disk full.")

    monkeypatch.setattr(store.catalog, "add", full)
    with pytest.raises(StorageError, match="disk full"):
        keeper.keep("job-3", output(), an_edit_entry())
    assert files(store.output_dir) == before


def test_a_preview_is_made_and_kept_only_when_asked(keeper: Keeper) -> None:
    plain = keeper.keep("job-4", output(), an_edit_entry())
    shown = keeper.keep("job-5", output(), an_edit_entry(), preview=True)
    assert plain.path and shown.path
    Path(plain.path).unlink()
    Path(shown.path).unlink()
    # The kept preview answers without the file; the other would need the file.
    assert anyio.run(keeper.preview, shown.path)[:2] == b"\xff\xd8"
    with pytest.raises(OSError):
        anyio.run(keeper.preview, plain.path)
