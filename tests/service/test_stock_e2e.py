"""Stock-first, end to end, against a fake Pexels on a real loopback port.

The fake (``tests/fake_pexels.py``) speaks the Pexels v1 API over real sockets
and serves real JPEGs; the server under test is pointed at it with
SDXL_MCP_PEXELS_BASE_URL and given the key through PEXELS_API_KEY. Covered: the
stdio server as a subprocess (search, stock-first, fallback to SDXL, the guide's
message, a rejected key), the MCP tools in-process (dedup, cache, every fault),
the REST endpoint with the guide's defaults, the ``sdxl-mcp stock`` command, and
a scan proving the key never leaves the process: not in results, bodies, CLI
output or the log file.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client, StdioServerParameters
from mcp.types import CallToolResult
from PIL import Image
from pydantic import BaseModel

from sdxl_mcp.entrypoints.mcp.server import build_server
from sdxl_mcp.errors import (
    NoImageFound,
    StockAuthError,
    StockError,
    StockRateLimited,
    StockUnavailable,
)
from sdxl_mcp.library import TEMP_PREFIX
from sdxl_mcp.schemas import StockSearchRequest
from sdxl_mcp.service.facade import ImageService
from sdxl_mcp.service.stock import search_stock
from sdxl_mcp.settings import Settings
from sdxl_mcp.stock.pexels import default_http_client
from tests.env import server_env
from tests.fake_pexels import KEY, PHOTOS, RATE_LIMIT, RATE_RESET_IN_S, FakePexels
from tests.helpers_http import serve

GUIDE_MESSAGE = "No image found. Ensure PEXELS_API_KEY is set or GPU available"
KEY_MISSING = "PEXELS_API_KEY is not set: get a free key at pexels.com/api"
FIRST = PHOTOS[0]
ATTRIBUTION = (
    f"Photo by {FIRST.photographer} ({FIRST.photographer_url}) on Pexels ({FIRST.page_url})"
)
SMALL = {"width": 256, "height": 256, "num_inference_steps": 20}
#: Upper bound for one whole subprocess conversation (guards against hangs only).
LIMIT_S = 240


# ----------------------------------------------------------------- helpers
def dump(thing: Any) -> str:
    """Everything a client could see of ``thing``, as text."""
    if isinstance(thing, BaseModel):
        return thing.model_dump_json()
    if isinstance(thing, bytes):
        return thing.decode("latin-1")
    if isinstance(thing, str):
        return thing
    return json.dumps(thing, default=repr)


def assert_no_key(*things: Any) -> None:
    for thing in things:
        assert KEY not in dump(thing)


def text(result: CallToolResult) -> str:
    return result.content[0].text  # type: ignore[union-attr]


def structured(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, text(result)
    assert result.structured_content is not None
    return result.structured_content


def assert_one_sentence_error(result: CallToolResult) -> str:
    assert result.is_error
    message = text(result)
    assert "\n" not in message and message.strip() == message
    assert "<" not in message and "Traceback" not in message
    assert_no_key(result)
    return message


def saved_files(output_dir: Path) -> list[str]:
    """Files in the output dir other than the catalog database."""
    if not output_dir.exists():
        return []
    return sorted(p.name for p in output_dir.iterdir() if not p.name.startswith("catalog."))


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def subprocess_env(root: Path, fake: FakePexels, *, key: str | None = KEY) -> dict[str, str]:
    """``tests.env.server_env`` pointed at ``fake``, with ``key`` as the Pexels key."""
    env = server_env(root, SDXL_MCP_MAX_WAIT_S="600", SDXL_MCP_PEXELS_BASE_URL=fake.base_url)
    if key is not None:
        env["PEXELS_API_KEY"] = key
    return env


# ----------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def fake_server() -> Iterator[FakePexels]:
    with FakePexels().running() as fake:
        yield fake


@pytest.fixture
def pexels(fake_server: FakePexels) -> FakePexels:
    """The fake, back in ``normal`` mode with empty counters."""
    fake_server.reset()
    return fake_server


@pytest.fixture
def settings(make_settings: Callable[..., Settings], pexels: FakePexels) -> Settings:
    return make_settings(pexels_api_key=KEY, pexels_base_url=pexels.base_url)


@pytest.fixture(autouse=True)
def _key_never_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """In-process, no log record of any logger carries the key (no masking filter here)."""
    caplog.set_level(logging.DEBUG)
    yield
    for record in caplog.get_records("call"):
        assert KEY not in record.getMessage()
        assert KEY not in (record.exc_text or "")


# ===================================================== 1. stdio end to end
@pytest.fixture(scope="module")
def stdio_session(
    fake_server: FakePexels, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """One ``sdxl-mcp serve`` subprocess driven through the whole stock-first story.

    No ``tiny_models`` fixture: that would import torch here only to check a cache
    the subprocess checks (and fills if empty) anyway.
    """
    fake = fake_server
    fake.reset()
    root = tmp_path_factory.mktemp("stock-stdio")
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "sdxl_mcp", "serve"],
        # One torch thread: on a small, busy CI box torch's default thread pool
        # oversubscribes the CPUs and the tiny generation takes 10x longer.
        env={**subprocess_env(root, fake), "OMP_NUM_THREADS": "1"}, cwd=str(root),
    )
    out: dict[str, Any] = {"root": root, "fake_url": fake.url}

    async def run() -> None:
        with anyio.fail_after(LIMIT_S):
            async with Client(params) as client:
                out["search"] = await client.call_tool(
                    "search_stock_image", {"query": "team meeting in an office"})
                out["downloads_after_search"] = len(fake.downloads)
                out["stock_first"] = await client.call_tool(
                    "generate_image",
                    {"prompt": "a team meeting in a bright office", "use_pexels": True,
                     "use_generation": False})
                out["downloads_after_stock_first"] = len(fake.downloads)
                fake.set_mode("no-results")
                out["fallback"] = await client.call_tool(
                    "generate_image",
                    {"prompt": "a purple lighthouse on the moon", "use_pexels": True,
                     "use_generation": True, "seed": 5, **SMALL})
                out["nothing"] = await client.call_tool(
                    "generate_image",
                    {"prompt": "a purple lighthouse under the sea", "use_pexels": True,
                     "use_generation": False})
                fake.set_mode("401")
                out["rejected"] = await client.call_tool(
                    "search_stock_image", {"query": "mountain lake"})
                fake.set_mode("normal")
                out["after_rejected"] = await client.call_tool(
                    "search_stock_image", {"query": "mountain lake at dawn"})
                out["status"] = await client.call_tool("gpu_status", {})

    anyio.run(run)
    out["searches"] = list(fake.searches)
    out["downloads"] = list(fake.downloads)
    fake.reset()
    return out


def test_stdio_search_returns_photos_with_photographer_and_attribution(
    stdio_session: dict[str, Any],
) -> None:
    result = structured(stdio_session["search"])
    first = result["photos"][0]
    assert first["id"] == FIRST.id
    assert first["photographer"] == FIRST.photographer
    assert first["photographer_url"] == FIRST.photographer_url
    assert first["url"] == FIRST.page_url
    assert (first["width"], first["height"]) == (FIRST.width, FIRST.height)
    assert first["alt"] == FIRST.alt and first["avg_color"] == FIRST.avg_color
    assert {"original", "large2x", "medium"} <= set(first["src"])
    assert result["downloaded"]["attribution"] == ATTRIBUTION
    assert re.fullmatch(r"Photo by .+ \(https://\S+\) on Pexels \(https://\S+\)", ATTRIBUTION)
    assert ATTRIBUTION in text(stdio_session["search"])


def test_stdio_search_downloads_the_photo_to_an_absolute_path(
    stdio_session: dict[str, Any],
) -> None:
    downloaded = structured(stdio_session["search"])["downloaded"]
    path = Path(downloaded["path"])
    assert path.is_absolute() and path.is_file()
    assert path.parent == stdio_session["root"] / "images"
    with Image.open(path) as image:
        assert image.format == "JPEG"
        assert image.size == (FIRST.width, FIRST.height)
    assert downloaded["source_url"].startswith(f"{stdio_session['fake_url']}/photos/")


def test_stdio_generate_with_use_pexels_returns_the_stock_photo(
    stdio_session: dict[str, Any],
) -> None:
    result = structured(stdio_session["stock_first"])
    assert result["success"] is True and result["status"] == "succeeded"
    image = result["image"]
    assert image["source"] == "pexels"
    assert image["photographer"] == FIRST.photographer
    assert image["photographer_url"] == FIRST.photographer_url
    assert result["pexels_photo_id"] == FIRST.id
    assert result["pexels_page_url"] == FIRST.page_url
    assert result["attribution"] == ATTRIBUTION
    assert Path(result["path"]).is_absolute() and Path(result["path"]).is_file()
    assert result["image_url"] == result["path"] == image["url"]


def test_stdio_stock_first_searches_with_the_prompt_and_the_requested_shape(
    stdio_session: dict[str, Any],
) -> None:
    stock_first = stdio_session["searches"][1]
    assert stock_first.params["query"] == "a team meeting in a bright office"
    assert stock_first.params["orientation"] == "square"  # 1024x1024
    assert stock_first.params["per_page"] == "5" and stock_first.params["page"] == "1"


def test_stdio_the_same_photo_is_not_downloaded_twice(stdio_session: dict[str, Any]) -> None:
    assert stdio_session["downloads_after_search"] == 1
    assert stdio_session["downloads_after_stock_first"] == 1
    first = structured(stdio_session["search"])["downloaded"]["path"]
    assert structured(stdio_session["stock_first"])["path"] == first
    assert structured(stdio_session["stock_first"])["cached"] is True


def test_stdio_no_stock_match_falls_back_to_sdxl(stdio_session: dict[str, Any]) -> None:
    result = structured(stdio_session["fallback"])
    assert result["image"]["source"] == "sdxl"
    assert result["seed"] == 5 and result["pexels_photo_id"] is None
    path = Path(result["path"])
    assert path.suffix == ".png" and path.is_file()


def test_stdio_no_match_and_generation_off_gives_the_guides_message(
    stdio_session: dict[str, Any],
) -> None:
    result = stdio_session["nothing"]
    assert result.is_error
    assert text(result) == GUIDE_MESSAGE


def test_stdio_rejected_key_is_an_error_and_the_server_stays_up(
    stdio_session: dict[str, Any],
) -> None:
    message = assert_one_sentence_error(stdio_session["rejected"])
    assert "rejected the API key" in message and "PEXELS_API_KEY" in message
    after = structured(stdio_session["after_rejected"])
    assert after["photos"] and Path(after["downloaded"]["path"]).is_file()


def test_stdio_key_goes_only_to_the_search_endpoint(stdio_session: dict[str, Any]) -> None:
    assert stdio_session["searches"]
    assert all(seen.authorization == KEY for seen in stdio_session["searches"])
    assert all(seen.authorization is None for seen in stdio_session["downloads"])


def test_stdio_gpu_status_reports_the_pexels_quota(stdio_session: dict[str, Any]) -> None:
    pexels = structured(stdio_session["status"])["pexels"]
    assert pexels["configured"] is True
    assert 0 < pexels["rate_limit"]["remaining"] < RATE_LIMIT
    assert pexels["rate_limit"]["limit"] == RATE_LIMIT


def test_stdio_key_never_in_results_or_the_log_file(stdio_session: dict[str, Any]) -> None:
    results = [v for v in stdio_session.values() if isinstance(v, CallToolResult)]
    assert len(results) == 7
    assert_no_key(*results)
    log_text = (stdio_session["root"] / "logs" / "sdxl_mcp.log").read_text(encoding="utf-8")
    assert "Pexels search" in log_text and "HTTP 401" in log_text  # the log is the real one
    assert KEY not in log_text


# ============================================ 2. MCP tools in-process, faults
async def test_search_reports_the_quota_left_from_the_rate_limit_headers(
    settings: Settings, pexels: FakePexels
) -> None:
    async with Client(build_server(settings)) as client:
        result = structured(await client.call_tool(
            "search_stock_image", {"query": "office", "per_page": 2, "download": False}))
        status = structured(await client.call_tool("gpu_status", {}))
    assert result["rate_limit_remaining"] == RATE_LIMIT - 1
    assert status["pexels"]["rate_limit"]["remaining"] == RATE_LIMIT - 1
    assert result["downloaded"] is None and pexels.downloads == []
    assert pexels.searches[0].params == {"query": "office", "per_page": "2", "page": "1"}
    assert_no_key(result, status)


async def test_stock_first_request_tells_the_client_it_searches_before_generating(
    settings: Settings, pexels: FakePexels
) -> None:
    messages: list[str] = []

    async def on_log(params: Any) -> None:
        messages.append(str(params.data))

    async with Client(build_server(settings), logging_callback=on_log,
                      log_level="info") as client:
        result = structured(await client.call_tool(
            "generate_image", {"prompt": "a team meeting in an office", "use_pexels": True}))
    assert result["image"]["source"] == "pexels"
    assert any(m.startswith("Searching Pexels first; generating (") for m in messages)
    assert not any(m.startswith("Generating") for m in messages)


async def test_same_photo_from_another_search_is_not_downloaded_again(
    settings: Settings, pexels: FakePexels
) -> None:
    async with Client(build_server(settings)) as client:
        first = structured(await client.call_tool("search_stock_image", {"query": "meeting"}))
        second = structured(await client.call_tool("search_stock_image",
                                                    {"query": "office meeting"}))
    assert len(pexels.searches) == 2  # two real searches ...
    assert len(pexels.downloads) == 1  # ... one download
    assert second["downloaded"]["path"] == first["downloaded"]["path"]
    assert second["downloaded"]["cached"] is True and first["downloaded"]["cached"] is False
    assert saved_files(settings.output_dir) == [Path(first["downloaded"]["path"]).name]


async def test_repeated_identical_search_is_answered_from_the_cache(
    settings: Settings, pexels: FakePexels
) -> None:
    async with Client(build_server(settings)) as client:
        first = structured(await client.call_tool("search_stock_image", {"query": "harbour"}))
        again = structured(await client.call_tool("search_stock_image", {"query": "harbour"}))
    assert len(pexels.searches) == 1
    assert first["cached"] is False and again["cached"] is True
    assert again["photos"] == first["photos"]


def _use_short_read_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """The service's real client, with a 0.5 s timeout instead of 20 s (no setting exists)."""

    def short(**kwargs: Any) -> httpx.AsyncClient:
        client = default_http_client(**kwargs)
        client.timeout = httpx.Timeout(0.5)
        return client

    monkeypatch.setattr("sdxl_mcp.stock.pexels.default_http_client", short)


#: mode -> (error class, retryable, what the one sentence says)
FAULTS: dict[str, tuple[type[StockError], bool, str]] = {
    "401": (StockAuthError, False,
            r"Pexels rejected the API key \(HTTP 401\): check PEXELS_API_KEY\."),
    "403": (StockAuthError, False,
            r"Pexels rejected the API key \(HTTP 403\): check PEXELS_API_KEY\."),
    "429": (StockRateLimited, True, r"Pexels rate limit reached \(HTTP 429\): try again .+"),
    "500": (StockUnavailable, True, r"Pexels is unavailable \(HTTP 500\); try again .+"),
    "html-200": (StockUnavailable, True,
                 r"Pexels is unavailable \(HTTP 200, an HTML page\); try again .+"),
    "slow": (StockUnavailable, True, r"Pexels timed out .+; try again in a minute\."),
    "refused": (StockUnavailable, True, r"Could not connect to Pexels .+"),
    "bad-json": (StockUnavailable, True, r"Pexels sent a response this client cannot read; .+"),
    "download-breaks": (StockUnavailable, True, r".*(broke off|connection to Pexels failed).+"),
}


def _arrange(mode: str, pexels: FakePexels, settings: Settings,
             monkeypatch: pytest.MonkeyPatch) -> Settings:
    if mode == "refused":
        return settings.model_copy(
            update={"pexels_base_url": f"http://127.0.0.1:{closed_port()}/v1"})
    if mode == "slow":
        _use_short_read_timeout(monkeypatch)
    pexels.set_mode(mode)
    return settings


@pytest.mark.parametrize("mode", list(FAULTS))
async def test_fault_is_one_sentence_error_and_the_server_keeps_serving(
    mode: str, settings: Settings, pexels: FakePexels, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _arrange(mode, pexels, settings, monkeypatch)
    async with Client(build_server(settings)) as client:
        result = await client.call_tool("search_stock_image", {"query": f"fault {mode}"})
        status = await client.call_tool("gpu_status", {})
    message = assert_one_sentence_error(result)
    assert re.fullmatch(FAULTS[mode][2] + r"( \(retry_after_s=\d+\))?", message), message
    assert not status.is_error and structured(status)["pexels"]["configured"] is True
    assert saved_files(settings.output_dir) == []  # no photo, no partial, no .tmp- file


@pytest.mark.parametrize("mode", list(FAULTS))
async def test_fault_is_classified_retryable_or_not(
    mode: str, settings: Settings, pexels: FakePexels, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _arrange(mode, pexels, settings, monkeypatch)
    error_class, retryable, _ = FAULTS[mode]
    async with ImageService(settings) as service:
        with pytest.raises(StockError) as info:
            await search_stock(service, StockSearchRequest(query=f"classified {mode}"))
    assert type(info.value) is error_class
    assert info.value.retryable is retryable
    assert_no_key(str(info.value), repr(info.value), repr(info.value.args))


async def test_rate_limit_says_when_to_retry(
    settings: Settings, pexels: FakePexels
) -> None:
    pexels.set_mode("429")
    async with Client(build_server(settings)) as client:
        result = await client.call_tool("search_stock_image", {"query": "sunset"})
    message = assert_one_sentence_error(result)
    assert "try again in about 2 minutes" in message
    hint = re.search(r"\(retry_after_s=(\d+)\)$", message)
    assert hint and RATE_RESET_IN_S - 5 <= int(hint.group(1)) <= RATE_RESET_IN_S


async def test_after_a_rate_limit_no_request_is_sent_until_the_reset(
    settings: Settings, pexels: FakePexels
) -> None:
    pexels.set_mode("429")
    async with Client(build_server(settings)) as client:
        await client.call_tool("search_stock_image", {"query": "sunset"})
        pexels.set_mode("normal")
        again = await client.call_tool("search_stock_image", {"query": "sunrise"})
    assert "quota is used up" in assert_one_sentence_error(again)
    assert len(pexels.searches) == 1


async def test_download_breaking_half_way_leaves_no_file(
    settings: Settings, pexels: FakePexels
) -> None:
    pexels.set_mode("download-breaks")
    async with Client(build_server(settings)) as client:
        result = await client.call_tool("search_stock_image", {"query": "forest"})
        pexels.set_mode("normal")
        retry = structured(await client.call_tool("search_stock_image", {"query": "forest"}))
    assert_one_sentence_error(result)
    assert len(pexels.downloads) == 2  # the failed one was not recorded as saved
    names = os.listdir(settings.output_dir)
    assert not [n for n in names if n.startswith(TEMP_PREFIX)]
    assert saved_files(settings.output_dir) == [Path(retry["downloaded"]["path"]).name]


async def test_stock_fault_with_generation_off_reports_the_fault_not_the_generic_line(
    settings: Settings, pexels: FakePexels
) -> None:
    pexels.set_mode("500")
    async with Client(build_server(settings)) as client:
        result = await client.call_tool(
            "generate_image", {"prompt": "a lighthouse", "use_pexels": True,
                               "use_generation": False})
    assert assert_one_sentence_error(result).startswith("Pexels is unavailable (HTTP 500)")


# ===================================================================== 3. REST
def _post(url: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{url}/api/media/generate-image", json=body, timeout=60)


def test_rest_guide_default_body_returns_the_stock_photo(
    settings: Settings, pexels: FakePexels
) -> None:
    with serve(settings) as live:
        response = _post(live.url, {"prompt": "a team meeting in a bright office"})
        body = response.json()
        image = httpx.get(f"{live.url}/api/media/images/{Path(body['path']).name}", timeout=30)
    assert response.status_code == 200, body
    assert body["image"]["source"] == "pexels"
    assert body["image"]["photographer"] == FIRST.photographer
    assert body["attribution"] == ATTRIBUTION and body["pexels_photo_id"] == FIRST.id
    assert Path(body["image_url"]).is_file()
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    assert_no_key(response.content, dict(response.headers))


def test_rest_no_stock_match_with_the_guides_defaults_is_503_with_its_message(
    settings: Settings, pexels: FakePexels
) -> None:
    pexels.set_mode("no-results")
    with serve(settings) as live:
        response = _post(live.url, {"prompt": "a purple lighthouse on the moon"})
    assert response.status_code == 503
    assert response.json()["message"] == GUIDE_MESSAGE
    assert response.json()["error_code"] == NoImageFound.code
    assert_no_key(response.content)


def test_rest_rate_limited_is_429_with_retry_after(
    settings: Settings, pexels: FakePexels
) -> None:
    pexels.set_mode("429")
    with serve(settings) as live:
        response = _post(live.url, {"prompt": "a sunset over the sea"})
    assert response.status_code == 429
    assert RATE_RESET_IN_S - 5 <= int(response.headers["Retry-After"]) <= RATE_RESET_IN_S
    body = response.json()
    assert body["retryable"] is True and body["error_code"] == StockRateLimited.code
    assert_no_key(response.content, dict(response.headers))


# ====================================================================== 4. CLI
def _cli(root: Path, fake: FakePexels, *args: str,
         key: str | None = KEY) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sdxl_mcp", "stock", *args],
        capture_output=True, text=True, env=subprocess_env(root, fake, key=key), cwd=root,
        timeout=120,
    )


def test_cli_stock_prints_the_downloaded_path_and_the_attribution(
    tmp_path: Path, pexels: FakePexels
) -> None:
    proc = _cli(tmp_path, pexels, "team meeting")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    path = Path(lines[0])
    assert path.is_absolute() and path.is_file() and path.parent == tmp_path / "images"
    assert lines[1] == ATTRIBUTION
    assert any(line.startswith(f"{FIRST.id}\t") for line in lines[2:])


def test_cli_stock_without_a_key_fails_with_one_line(
    tmp_path: Path, pexels: FakePexels
) -> None:
    proc = _cli(tmp_path, pexels, "team meeting", key=None)
    assert proc.returncode != 0
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [f"sdxl-mcp: error: {KEY_MISSING}"]
    assert pexels.searches == []


def test_cli_key_never_in_output_or_the_log_file(tmp_path: Path, pexels: FakePexels) -> None:
    ok = _cli(tmp_path, pexels, "city at night", "--json")
    pexels.set_mode("401")
    rejected = _cli(tmp_path, pexels, "city at dawn")
    assert ok.returncode == 0 and rejected.returncode != 0
    assert "rejected the API key" in rejected.stderr.splitlines()[-1]
    log_text = (tmp_path / "logs" / "sdxl_mcp.log").read_text(encoding="utf-8")
    assert "HTTP 401" in log_text
    assert_no_key(ok.stdout, ok.stderr, rejected.stdout, rejected.stderr, log_text)
