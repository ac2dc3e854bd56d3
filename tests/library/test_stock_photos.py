"""Stock photos in the library (StockPhotos) and the service's stock workflow (StockWorkflow).

Against the in-process fake Pexels (FakePexels.transport()) and a real
ImageStore in tmp_path: a photo is downloaded once (by Pexels id, across
clients, under concurrency), catalogued with its attribution, and a failed
download leaves no file and no row. The autouse fixture checks that the key
never reaches a log record.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from sdxl_mcp.errors import StockError, StockNotConfigured, StockUnavailable
from sdxl_mcp.library import TEMP_PREFIX, ImageStore, StockPhotos
from sdxl_mcp.schemas import GenerationRequest, PexelsPhoto
from sdxl_mcp.service.stock import StockWorkflow
from sdxl_mcp.settings import Settings
from sdxl_mcp.stock import attribution_text
from sdxl_mcp.stock.pexels import USER_AGENT, PexelsClient, default_http_client
from tests.fake_pexels import BrokenStream, FakePexels, jpeg
from tests.helpers_pexels import (
    BASE,
    HTML_PAGE,
    IMAGES,
    KEY,
    FakeClock,
    Handler,
)
from tests.helpers_pexels import assert_no_key as _assert_no_key
from tests.helpers_pexels import raising as _raise
from tests.helpers_pexels import request as _request
from tests.helpers_pexels import sleep_forever as _sleep_forever

KEY_MISSING = "PEXELS_API_KEY is not set: get a free key at pexels.com/api"

# --------------------------------------------------------------------------- fixtures


# The shared fixtures (fake, clock, make_client, client, the key check), by name.
from tests.helpers_pexels import _key_never_logged, client, clock, fake, make_client  # noqa: E402, F401


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ImageStore]:
    with ImageStore(tmp_path / "images") as image_store:
        yield image_store


@pytest.fixture
def photos(store: ImageStore, client: PexelsClient) -> StockPhotos:
    return StockPhotos(store, client)


@pytest.fixture
def use_fake_http(fake: FakePexels, monkeypatch: pytest.MonkeyPatch) -> list[httpx.AsyncClient]:
    """The workflow's real default_http_client, on the fake's transport; lists each made."""
    made: list[httpx.AsyncClient] = []

    def on_fake(**kwargs: Any) -> httpx.AsyncClient:
        http = default_http_client(transport=fake.transport())
        made.append(http)
        return http

    monkeypatch.setattr("sdxl_mcp.stock.pexels.default_http_client", on_fake)
    return made


@pytest.fixture
def stock_settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(pexels_api_key=KEY, pexels_base_url=BASE)


@pytest.fixture
def workflow(
    stock_settings: Settings, store: ImageStore, use_fake_http: list[httpx.AsyncClient]
) -> Iterator[StockWorkflow]:
    flow = StockWorkflow(stock_settings, store)
    yield flow
    anyio.run(flow.aclose)


def _files(store: ImageStore) -> set[str]:
    return set(os.listdir(store.output_dir))


# --------------------------------------------------------------------------- download


async def _one_photo(client: PexelsClient) -> PexelsPhoto:
    return (await client.search(_request())).photos[0]


async def test_download_saves_the_photo_in_the_store(
    client: PexelsClient, fake: FakePexels, store: ImageStore, photos: StockPhotos
) -> None:
    photo = await _one_photo(client)

    downloaded = await photos.download(photo)

    path = Path(downloaded.path)
    assert path.is_absolute()
    assert path.parent == store.output_dir
    assert path.name == "pexels_101.jpg"
    assert path.read_bytes() == fake.image
    assert downloaded.photo_id == 101
    assert downloaded.cached is False
    assert downloaded.source_url == photo.src["large2x"]
    assert downloaded.attribution == attribution_text(photo)
    assert (downloaded.width, downloaded.height) == (188, 130)  # the file, not the original

    (image_request,) = fake.downloads
    assert "Authorization" not in image_request.headers  # the key stays with the API
    assert image_request.headers["User-Agent"] == USER_AGENT

    record = store.catalog.find_by_source_id("pexels", "101")
    assert record is not None
    assert record.source == "pexels"
    assert record.path == path
    assert record.prompt == photo.alt
    assert record.result_json is None
    assert (record.width, record.height) == (188, 130)
    assert record.parameters["photographer"] == "Jane Doe"
    assert record.parameters["photographer_url"] == "https://www.pexels.com/@jane-doe"
    assert record.parameters["page_url"] == photo.url
    assert record.parameters["src_url"] == photo.src["large2x"]
    assert record.parameters["attribution"] == downloaded.attribution
    assert record.sha256 == hashlib.sha256(fake.image).hexdigest()
    assert store.resolve_name(path.name) == path
    assert not [n for n in _files(store) if n.startswith(TEMP_PREFIX)]


async def test_second_download_of_a_photo_makes_no_request(
    client: PexelsClient, fake: FakePexels, store: ImageStore, photos: StockPhotos
) -> None:
    photo = await _one_photo(client)
    first = await photos.download(photo)
    files = _files(store)

    second = await photos.download(photo)

    assert len(fake.downloads) == 1
    assert second.cached is True
    assert second.path == first.path
    assert second.attribution == first.attribution
    assert _files(store) == files


async def test_dedup_survives_a_new_client(
    make_client: Callable[..., PexelsClient], fake: FakePexels, store: ImageStore
) -> None:
    photo = await _one_photo(make_client())
    await StockPhotos(store, make_client()).download(photo)
    again = await StockPhotos(store, make_client()).download(photo)
    assert again.cached is True
    assert len(fake.downloads) == 1


async def test_concurrent_downloads_of_one_photo_fetch_it_once(
    client: PexelsClient, fake: FakePexels, photos: StockPhotos
) -> None:
    photo = await _one_photo(client)
    results = []

    async def grab() -> None:
        results.append(await photos.download(photo))

    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(grab)

    assert len(fake.downloads) == 1
    assert len({r.path for r in results}) == 1
    assert sorted(r.cached for r in results) == [False, True, True, True]


async def test_a_bigger_wanted_size_downloads_a_bigger_variant(
    client: PexelsClient, fake: FakePexels, photos: StockPhotos
) -> None:
    photo = await _one_photo(client)
    small = await photos.download(photo)  # large2x, here 188x130

    fake.image = jpeg(400, 276, "blue")
    big = await photos.download(photo, width=2048, height=1024)

    assert big.cached is False
    assert big.source_url == photo.src["original"]
    assert big.path != small.path and Path(big.path).name == "pexels_101-1.jpg"
    assert (await photos.download(photo, width=2048, height=1024)).cached is True


async def test_redirected_image_url_is_followed(
    fake: FakePexels, store: ImageStore, clock: FakeClock
) -> None:
    def image(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/cdn/"):
            return httpx.Response(200, content=fake.image, headers={"content-type": "image/jpeg"})
        return httpx.Response(302, headers={"Location": f"{IMAGES}/cdn/{request.url.path}"})

    fake.image_handler = image
    http = default_http_client(transport=fake.transport())
    try:
        client = PexelsClient(KEY, base_url=BASE, http=http, clock=clock)
        downloaded = await StockPhotos(store, client).download(await _one_photo(client))
    finally:
        await http.aclose()
    assert Path(downloaded.path).read_bytes() == fake.image
    assert len(fake.downloads) == 2


async def test_workflow_search_downloads_the_best_match_once(
    workflow: StockWorkflow, fake: FakePexels
) -> None:
    result = await workflow.search(_request(orientation="portrait"))
    assert result.downloaded is not None
    assert result.downloaded.photo_id == 101
    assert result.downloaded.source_url == result.photos[0].src["portrait"]
    assert Path(result.downloaded.path).is_file()

    no_download = await workflow.search(_request(download=False))
    assert no_download.downloaded is None
    assert len(fake.downloads) == 1


def _broken_body(request: httpx.Request) -> httpx.Response:
    return httpx.Response(
        200, headers={"content-type": "image/jpeg"}, stream=BrokenStream(jpeg(188, 130)[:500])
    )


DOWNLOAD_FAULTS: dict[str, tuple[Handler, type[StockError], bool, str]] = {
    "breaks off half way": (
        _broken_body,
        StockUnavailable,
        True,
        "connection to Pexels failed while downloading the photo",
    ),
    "shorter than content-length": (
        lambda r: httpx.Response(
            200,
            content=jpeg(188, 130)[:300],
            headers={"content-type": "image/jpeg", "content-length": "1500"},
        ),
        StockUnavailable,
        True,
        "broke off half way",
    ),
    "404": (
        lambda r: httpx.Response(404, text="gone"),
        StockUnavailable,
        True,
        "could not be downloaded (HTTP 404)",
    ),
    "503": (
        lambda r: httpx.Response(503, html=HTML_PAGE),
        StockUnavailable,
        True,
        "Pexels is unavailable (HTTP 503)",
    ),
    "html page with 200": (
        lambda r: httpx.Response(200, html=HTML_PAGE),
        StockUnavailable,
        True,
        "Pexels is unavailable (HTTP 200",
    ),
    "not an image": (
        lambda r: httpx.Response(
            200, content=b"\x00garbage" * 50, headers={"content-type": "image/jpeg"}
        ),
        StockUnavailable,
        True,
        "was not an image",
    ),
    "read timeout": (
        _raise(httpx.ReadTimeout, "timed out"),
        StockUnavailable,
        True,
        "timed out",
    ),
    "connect error": (
        _raise(httpx.ConnectError, "refused"),
        StockUnavailable,
        True,
        "Could not connect",
    ),
    "hangs past the hard cap": (
        _sleep_forever,
        StockUnavailable,
        True,
        "timed out",
    ),
    "larger than the cap": (
        lambda r: httpx.Response(
            200, content=b"\xff" * 4096, headers={"content-type": "image/jpeg"}
        ),
        StockError,
        False,
        "larger than",
    ),
}


@pytest.mark.parametrize("case", list(DOWNLOAD_FAULTS))
async def test_download_faults_leave_no_file(
    case: str,
    make_client: Callable[..., PexelsClient],
    fake: FakePexels,
    store: ImageStore,
) -> None:
    handler, error_class, retryable, words = DOWNLOAD_FAULTS[case]
    client = make_client(download_timeout_s=0.2, max_download_bytes=2048)
    photo = await _one_photo(client)
    fake.image_handler = handler
    before = _files(store)
    catalogued = store.catalog.count()

    with pytest.raises(error_class) as info:
        await StockPhotos(store, client).download(photo)

    exc = info.value
    assert type(exc) is error_class
    assert exc.retryable is retryable
    assert words in str(exc)
    _assert_no_key(exc)
    after = _files(store)
    assert after == before, f"new files: {after - before}"
    assert not [n for n in after if n.startswith(TEMP_PREFIX)]
    assert not [n for n in after if n.startswith("pexels_")]
    assert store.catalog.count() == catalogued
    assert store.catalog.find_by_source_id("pexels", str(photo.id)) is None

    # The next try, with Pexels back, works.
    fake.image_handler = None
    fake.image = jpeg(40, 30)
    assert (await StockPhotos(store, client).download(photo)).cached is False




# --------------------------------------------------------------------------- workflow


def test_workflow_without_a_key_is_not_configured_and_sends_nothing(
    make_settings: Callable[..., Settings], store: ImageStore, fake: FakePexels,
    use_fake_http: list[httpx.AsyncClient],
) -> None:
    flow = StockWorkflow(make_settings(), store)
    assert flow.configured is False
    assert flow.status() == {"configured": False}

    async def both() -> None:
        with pytest.raises(StockNotConfigured) as info:
            await flow.search(_request())
        assert str(info.value) == KEY_MISSING
        with pytest.raises(StockNotConfigured, match="PEXELS_API_KEY is not set"):
            await flow.first_match(GenerationRequest(prompt="a lighthouse"))
        await flow.aclose()

    anyio.run(both)
    assert use_fake_http == [] and fake.searches == []


async def test_workflow_status_before_and_after_a_search(
    workflow: StockWorkflow, use_fake_http: list[httpx.AsyncClient]
) -> None:
    assert workflow.configured is True
    assert workflow.status() == {"configured": True}
    assert use_fake_http == []  # the client is built on first use

    await workflow.search(_request(download=False))

    status = workflow.status()
    assert status["configured"] is True and status["base_url"] == BASE
    assert status["rate_limit"]["remaining"] == 19684
    assert status["cached_searches"] == 1
    assert KEY not in repr(status)


async def test_workflow_shares_one_client_and_aclose_closes_it(
    workflow: StockWorkflow, fake: FakePexels, use_fake_http: list[httpx.AsyncClient]
) -> None:
    await workflow.search(_request(download=False))
    again = await workflow.search(_request(download=False))
    assert again.cached is True and len(fake.searches) == 1
    assert len(use_fake_http) == 1

    await workflow.aclose()
    assert use_fake_http[0].is_closed
    assert workflow.status() == {"configured": True}
    await workflow.search(_request(download=False))  # a later call builds a new client
    assert len(use_fake_http) == 2


@pytest.mark.parametrize(
    ("width", "height", "orientation"),
    [(1024, 1024, "square"), (1344, 768, "landscape"), (768, 1344, "portrait")],
)
async def test_first_match_searches_with_the_prompt_and_the_requested_shape(
    workflow: StockWorkflow, fake: FakePexels, width: int, height: int, orientation: str
) -> None:
    prompt = "a team meeting in a bright office " * 10
    result = await workflow.first_match(
        GenerationRequest(prompt=prompt, width=width, height=height)
    )
    assert result is not None
    (seen,) = fake.searches
    assert seen.params == {"query": prompt[:200], "orientation": orientation,
                           "per_page": "5", "page": "1"}


async def test_first_match_is_a_finished_result_with_the_credit(
    workflow: StockWorkflow, store: ImageStore, fake: FakePexels
) -> None:
    fake.image = jpeg(1880, 1300)  # large2x of a 4000x2766 photo: big enough for 1024x1024
    request = GenerationRequest(prompt="a team meeting", use_pexels=True)
    result = await workflow.first_match(request)

    assert result is not None
    assert result.success is True and result.status == "succeeded"
    assert result.image is not None and result.image.source == "pexels"
    assert result.image.photographer == "Jane Doe"
    assert result.pexels_photo_id == 101
    assert result.pexels_page_url == "https://www.pexels.com/photo/team-meeting-101/"
    assert result.attribution is not None and result.attribution.startswith("Photo by Jane Doe")
    assert result.message.endswith(f"Credit it: {result.attribution}")
    assert result.path is not None and Path(result.path).parent == store.output_dir
    assert result.image_url == result.path and result.cached is False
    assert (result.image.width, result.image.height) == (1880, 1300)

    again = await workflow.first_match(request)
    assert again is not None and again.cached is True and again.path == result.path
    assert "(already downloaded)" in again.message
    assert len(fake.downloads) == 1


async def test_first_match_without_a_match_is_none(
    workflow: StockWorkflow, fake: FakePexels
) -> None:
    fake.search_body = {"total_results": 0, "page": 1, "per_page": 5, "photos": []}
    assert await workflow.first_match(GenerationRequest(prompt="zxqv")) is None
    assert fake.downloads == []


async def test_workflow_opens_a_lazy_store_on_first_download(
    stock_settings: Settings, tmp_path: Path, use_fake_http: list[httpx.AsyncClient]
) -> None:
    opened: list[ImageStore] = []

    def open_store() -> ImageStore:
        if not opened:
            opened.append(ImageStore(tmp_path / "lazy"))
        return opened[0]

    flow = StockWorkflow(stock_settings, open_store)
    try:
        await flow.search(_request(download=False))
        assert opened == []  # no download, no store
        result = await flow.search(_request())
        assert result.downloaded is not None
        assert Path(result.downloaded.path).parent == opened[0].output_dir
    finally:
        await flow.aclose()
        for image_store in opened:
            image_store.close()
