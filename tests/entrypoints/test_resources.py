"""The ``image://`` resources over MCP and ``GET /api/media/images/{ref}`` over REST.

MCP through the in-memory client, REST through a live loopback server; both on
the gated fake backend (gate open), so a generation takes milliseconds.
"""

from __future__ import annotations

import base64
import io
import json
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client
from PIL import Image

from sdxl_mcp.entrypoints.mcp.server import build_server
from sdxl_mcp.library import CatalogRecord
from sdxl_mcp.library.transforms import sniff_format
from sdxl_mcp.service.facade import ImageService
from sdxl_mcp.settings import Settings
from tests.env import isolated_environ
from tests.fakes import GatedBackend
from tests.helpers_http import LiveServer, serve, tiny_settings

SMALL = {"width": 256, "height": 256, "num_inference_steps": 20}
GENERATE_MCP = {"prompt": "a lighthouse", "seed": 7, **SMALL}
GENERATE_REST = {"prompt": "a lighthouse", "use_pexels": False, "use_generation": True, **SMALL}
IMAGES = "/api/media/images/"
TIMEOUT = httpx.Timeout(120.0)


def decode(blob: str | bytes) -> Image.Image:
    data = base64.b64decode(blob) if isinstance(blob, str) else blob
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@pytest.fixture
def server(make_settings: Callable[..., Settings]) -> Any:
    settings = make_settings(max_wait_s=5.0)
    service = ImageService(settings, backend=GatedBackend(gate_open=True))  # type: ignore[arg-type]
    return build_server(settings, service)


async def generated(client: Client) -> dict[str, Any]:
    result = await client.call_tool("generate_image", GENERATE_MCP)
    assert not result.is_error and result.structured_content
    return result.structured_content


# ================================================================== MCP
async def test_resource_templates_are_listed(server: Any) -> None:
    async with Client(server) as client:
        templates = {t.uri_template: t for t in
                     (await client.list_resource_templates()).resource_templates}
    assert set(templates) == {"image://{image_id}",
                              "image://{image_id}/view{?format,width,height,fit,quality}",
                              "image://{image_id}/metadata"}
    assert templates["image://{image_id}/metadata"].mime_type == "application/json"


async def test_the_result_links_to_its_image_id_and_the_original_reads_back(server: Any) -> None:
    async with Client(server) as client:
        data = await generated(client)
        link = next(c for c in (await client.call_tool("generate_image", GENERATE_MCP)).content
                    if c.type == "resource_link")
        assert str(link.uri) == f"image://{data['image_id']}"
        contents = (await client.read_resource(f"image://{data['image_id']}")).contents[0]
    assert contents.mime_type == "image/png"
    assert base64.b64decode(contents.blob) == Path(data["path"]).read_bytes()  # type: ignore[union-attr]


async def test_an_older_link_by_file_name_still_reads(server: Any) -> None:
    async with Client(server) as client:
        data = await generated(client)
        name = data["path"].rsplit("/", 1)[-1]
        contents = (await client.read_resource(f"image://{name}")).contents[0]
    assert base64.b64decode(contents.blob) == Path(data["path"]).read_bytes()  # type: ignore[union-attr]


@pytest.mark.parametrize(("query", "size", "fmt"), [
    ("?format=webp&width=200&height=100", (200, 100), "webp"),
    ("?width=64", (64, 64), "png"),
    ("?format=jpeg&width=120&height=60&fit=contain&quality=40", (60, 60), "jpeg"),
    ("?height=300&format=webp&quality=100", (300, 300), "webp"),
])
async def test_the_view_template_resizes_and_re_encodes(
    server: Any, query: str, size: tuple[int, int], fmt: str
) -> None:
    async with Client(server) as client:
        data = await generated(client)
        contents = (await client.read_resource(
            f"image://{data['image_id']}/view{query}")).contents[0]
    blob = base64.b64decode(contents.blob)  # type: ignore[union-attr]
    assert sniff_format(blob) == fmt and contents.mime_type == f"image/{fmt}"
    assert decode(blob).size == size


async def test_the_view_without_parameters_is_the_original(server: Any) -> None:
    async with Client(server) as client:
        data = await generated(client)
        contents = (await client.read_resource(f"image://{data['image_id']}/view")).contents[0]
    assert base64.b64decode(contents.blob) == Path(data["path"]).read_bytes()  # type: ignore[union-attr]


async def test_metadata_is_the_sidecar_json(server: Any) -> None:
    async with Client(server) as client:
        data = await generated(client)
        contents = (await client.read_resource(
            f"image://{data['image_id']}/metadata")).contents[0]
    assert contents.mime_type == "application/json"
    meta = json.loads(contents.text)  # type: ignore[union-attr]
    assert meta["image_id"] == data["image_id"] and meta["seed"] == 7
    assert meta["request"]["prompt"] == "a lighthouse"


async def test_a_stock_photo_is_served_as_jpeg_with_its_attribution(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    service = ImageService(settings, backend=GatedBackend(gate_open=True))  # type: ignore[arg-type]
    async with Client(build_server(settings, service)) as client:
        buffer = io.BytesIO()
        Image.new("RGB", (80, 60), "orange").save(buffer, format="JPEG")
        path = service.store.save_bytes(buffer.getvalue(), name_hint="pexels_9", suffix=".jpg")
        record = CatalogRecord(name=path.name, path=path, prompt="an orange", sha256="x",
                               width=80, height=60, source="pexels", source_id="9",
                               parameters={"photographer": "Bo", "attribution": "Photo by Bo",
                                           "page_url": "https://www.pexels.com/photo/9/",
                                           "alt": "an orange"})
        service.store.catalog.add(record)
        original = (await client.read_resource(f"image://{record.image_id}")).contents[0]
        meta = (await client.read_resource(f"image://{record.image_id}/metadata")).contents[0]
    assert original.mime_type == "image/jpeg"
    assert json.loads(meta.text)["attribution"] == "Photo by Bo"  # type: ignore[union-attr]


@pytest.mark.parametrize(("query", "named"), [
    ("?width=abc", "width"), ("?width=8", "width"), ("?height=5000", "height"),
    ("?format=gif", "format"), ("?fit=stretch", "fit"), ("?quality=0", "quality"),
])
async def test_bad_view_parameters_are_errors_naming_them(
    server: Any, query: str, named: str
) -> None:
    async with Client(server) as client:
        data = await generated(client)
        with pytest.raises(Exception, match=rf"{named} must be") as info:
            await client.read_resource(f"image://{data['image_id']}/view{query}")
    assert data["path"] not in str(info.value)


@pytest.mark.parametrize("suffix", ["", "/view", "/view?width=64", "/metadata"])
async def test_unknown_ids_and_traversal_are_not_found(server: Any, suffix: str) -> None:
    async with Client(server) as client:
        await generated(client)
        for ref in ("no_such_image_1", "..", "%2Fetc%2Fpasswd", "catalog.sqlite3",
                    "..%2Fcatalog.sqlite3"):
            with pytest.raises(Exception, match=r"No image|no image|Unknown resource") as info:
                await client.read_resource(f"image://{ref}{suffix}")
            assert "root:" not in str(info.value) and "SQLite" not in str(info.value)


# ================================================================== REST
@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = tiny_settings(tmp_path_factory.mktemp("resources"), max_wait_s=5.0)
    service = ImageService(settings, backend=GatedBackend(gate_open=True))  # type: ignore[arg-type]
    with isolated_environ(), serve(settings, service) as server:
        yield server


@pytest.fixture(scope="module")
def made(live: LiveServer) -> dict[str, Any]:
    response = httpx.post(live.url + "/api/media/generate-image", json=GENERATE_REST,
                          timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_rest_serves_a_400x300_webp_by_image_id(live: LiveServer, made: dict[str, Any]) -> None:
    url = f"{live.url}{IMAGES}{made['image_id']}?format=webp&width=400&height=300"
    response = httpx.get(url, timeout=TIMEOUT)
    assert response.status_code == 200 and response.headers["content-type"] == "image/webp"
    assert sniff_format(response.content) == "webp"
    assert decode(response.content).size == (400, 300)
    assert httpx.get(url, timeout=TIMEOUT).content == response.content  # the cached view


def test_rest_without_a_query_serves_the_original_by_id_or_legacy_name(
    live: LiveServer, made: dict[str, Any]
) -> None:
    original = Path(made["path"]).read_bytes()
    for ref in (made["image_id"], Path(made["path"]).name):
        response = httpx.get(live.url + IMAGES + ref, timeout=TIMEOUT)
        assert response.status_code == 200 and response.headers["content-type"] == "image/png"
        assert response.content == original
    legacy = httpx.get(f"{live.url}{IMAGES}{Path(made['path']).name}?width=100", timeout=TIMEOUT)
    assert legacy.status_code == 200 and decode(legacy.content).size == (100, 100)


@pytest.mark.parametrize(("query", "named"), [
    ("width=8", "width"), ("height=4097", "height"), ("width=abc", "width"),
    ("format=gif", "format"), ("fit=stretch", "fit"), ("quality=101", "quality"),
    ("quality=", "quality"),
])
def test_rest_bad_query_values_are_422_naming_the_parameter(
    live: LiveServer, made: dict[str, Any], query: str, named: str
) -> None:
    response = httpx.get(f"{live.url}{IMAGES}{made['image_id']}?{query}", timeout=TIMEOUT)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error_code"] == "bad_request" and named in body["message"]


@pytest.mark.parametrize("ref", ["no_such_image_1", "nope.png", "..%2Fcatalog.sqlite3",
                                 "%2Fetc%2Fpasswd", "catalog.sqlite3"])
def test_rest_unknown_refs_are_404(live: LiveServer, made: dict[str, Any], ref: str) -> None:
    for query in ("", "?format=webp&width=64"):
        response = httpx.get(live.url + IMAGES + ref + query, timeout=TIMEOUT)
        assert response.status_code == 404, (ref, query, response.text)
        if "/" not in urllib.parse.unquote(ref):  # else the router answers, before the route
            assert response.json()["error_code"] == "not_found"
        assert b"root:" not in response.content and b"SQLite" not in response.content
