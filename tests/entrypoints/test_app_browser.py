"""The MCP App in a real browser: the official ext-apps ``AppBridge`` host, the real server.

What a person in an Apps host sees: the image decodes in the iframe, with its
prompt, seed, size, precision and timings; a running job's progress bar moves
(``get_generation`` long-polls through the bridge) and stops on Cancel; the
variation and export buttons call their tools and show the answers; "Use this
image" sends a ``ui/message``; library and variation results are a grid to
pick from by keyboard; a stock photo shows its attribution and opens links
through the host; a hostile prompt reads as text; the host's theme applies; no
request leaves the page and no console error occurs.

The host is ``tests/helpers_app.py`` (Debian's chromium through Playwright's
``executable_path``). Skipped, with the reason, without chromium, Playwright,
or a buildable AppBridge bundle (npm). With ``SDXL_MCP_APP_SCREENSHOTS=<dir>``
it writes ``app-running.png``, ``app-finished.png`` and ``app-variations.png``
there (the README's, in docs/).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from sdxl_mcp.entrypoints.mcp.app import VIEWER_URI
from sdxl_mcp.entrypoints.mcp.server import build_server
from sdxl_mcp.service.facade import ImageService
from tests.helpers_app import AppPage, McpHost, SteppedBackend, calls_named
from tests.helpers_gallery import HOSTILE, HOSTILE_ALT, catalogue_stock
from tests.helpers_http import tiny_settings

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = os.environ.get("SDXL_MCP_APP_SCREENSHOTS")
POLL_WAIT_S = 2  # the viewer's get_generation wait (viewer.html)
SIZE = {"width": 448, "height": 320, "num_inference_steps": 20}
PAGE_URL = "https://www.pexels.com/photo/4242/"

if not (Path(CHROMIUM).is_file() or shutil.which("chromium")):
    pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)", allow_module_level=True)
async_api = pytest.importorskip(
    "playwright.async_api", reason="Playwright is missing (pip install -e '.[dev]')")

pytestmark = pytest.mark.asyncio(loop_scope="session")

IMAGE_DECODED = """() => { const i = document.getElementById('image');
  return !document.getElementById('figure').hidden && i.complete && i.naturalWidth > 0; }"""


@dataclass
class Env:
    mcp: McpHost
    backend: SteppedBackend
    service: ImageService
    browser: Any
    bundle: Path
    html: str
    csp: dict[str, list[str]]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Env]:
    from tests.helpers_app import bridge_bundle

    bundle, why = await asyncio.to_thread(bridge_bundle)
    if bundle is None:
        pytest.skip(why)
    settings = tiny_settings(tmp_path_factory.mktemp("app-browser"), max_wait_s=POLL_WAIT_S)
    backend = SteppedBackend()
    service = ImageService(settings, backend=backend)  # type: ignore[arg-type]
    mcp = McpHost(build_server(settings, service))
    await mcp.start()
    playwright = await async_api.async_playwright().start()
    try:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM if Path(CHROMIUM).is_file() else shutil.which("chromium"),
            args=["--no-sandbox"])
        viewer = (await mcp.read_resource(VIEWER_URI))["contents"][0]
        yield Env(mcp, backend, service, browser, bundle, viewer["text"],
                  viewer["_meta"]["ui"]["csp"])
        await browser.close()
    finally:
        await playwright.stop()
        await mcp.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def app(env: Env) -> AsyncIterator[AppPage]:
    context = await env.browser.new_context(viewport={"width": 620, "height": 900})
    context.set_default_timeout(30_000)
    page = AppPage(await context.new_page(), env.mcp, env.bundle)
    await page.open(env.html, env.csp)
    try:
        yield page
    finally:
        await context.close()


async def shoot(app: AppPage, name: str) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        await app.page.wait_for_timeout(300)  # the iframe follows the view's size-changed
        await app.page.locator("#app").screenshot(path=str(Path(SCREENSHOTS) / name))


async def generate(env: Env, prompt: str, seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    args = {"prompt": prompt, "seed": seed, **SIZE}
    return args, await env.mcp.call_tool("generate_image", args)


async def field(app: AppPage, name: str) -> str:
    text: str = await app.frame.locator(f'#details dd[data-field="{name}"]').inner_text()
    return text


# ------------------------------------------------------------------ a running job
async def test_running_job_progress_moves_and_stops_on_cancel(env: Env, app: AppPage) -> None:
    env.backend.held = True
    try:
        args, result = await generate(env, "a lighthouse at dusk, long exposure", 21)
        job = result["structuredContent"]
        assert job["status"] == "running", job
        await app.send(args, result)
        await app.wait_view("() => !document.getElementById('progress-box').hidden")
        env.backend.step(3)
        await app.wait_view("() => document.getElementById('progress').value === 3")
        env.backend.step(2)
        await app.wait_view("() => document.getElementById('progress').value === 5")
        assert await app.frame.locator("#progress-text").inner_text() == "step 5 of 10"
        await shoot(app, "app-running.png")
        polls = calls_named(env.mcp, "get_generation")
        assert len(polls) >= 2
        assert all(p == {"job_id": job["job_id"], "wait_seconds": POLL_WAIT_S} for p in polls)

        await app.frame.locator("#cancel").click()
        await app.wait_view("() => document.getElementById('progress-box').hidden")
        assert calls_named(env.mcp, "cancel_generation") == [{"job_id": job["job_id"]}]
        assert "cancel" in (await app.frame.locator("#status").inner_text()).lower()
        assert env.backend.cancelled.wait(10)
        after = len(calls_named(env.mcp, "get_generation"))
        await asyncio.sleep(POLL_WAIT_S + 1)  # one more poll period: none may follow
        assert len(calls_named(env.mcp, "get_generation")) == after
    finally:
        env.backend.held = False
        env.backend.step(SteppedBackend.total)
    app.assert_clean()


# ------------------------------------------------------------------ a finished image
async def test_finished_image_details_and_the_buttons_call_their_tools(
        env: Env, app: AppPage) -> None:
    prompt = "a red lighthouse on a cliff at dusk"
    args, result = await generate(env, prompt, 11)
    first = result["structuredContent"]
    await app.send(args, result)
    await app.wait_view(IMAGE_DECODED)
    view = app.view()
    assert await view.evaluate("[image.naturalWidth, image.naturalHeight]") == [448, 320]
    assert await view.evaluate("image.src.startsWith('data:image/png;base64,')")
    assert await app.frame.locator("#prompt").inner_text() == prompt
    assert await field(app, "seed") == "11"
    assert await field(app, "size") == "448 × 320"
    assert await field(app, "precision") == "fp32 on cpu"
    assert (await field(app, "time")).startswith(f"{first['timings']['total']:.1f} s")
    assert await field(app, "path") == first["path"]
    await shoot(app, "app-finished.png")

    # "Another variation": vary_image, and the new image replaces the shown one.
    await app.frame.locator("#vary").click()
    await app.wait_view(
        "id => document.querySelector('#details dd[data-field=image]').textContent !== id",
        first["image_id"])
    await app.wait_view(IMAGE_DECODED)
    assert calls_named(env.mcp, "vary_image") == [{"image": first["image_id"], "count": 1}]
    variation_id, variation_path = await field(app, "image"), await field(app, "path")
    assert await field(app, "seed") != "11"

    # "Export for the web", reached by keyboard: export_image preset og, size and html shown.
    for _ in range(30):
        if await view.evaluate("document.activeElement && document.activeElement.id") == "export":
            break
        await app.page.keyboard.press("Tab")
    await app.page.keyboard.press("Enter")
    await app.wait_view("() => !document.getElementById('export-box').hidden")
    export_args = {"image": variation_id, "preset": "og"}
    assert calls_named(env.mcp, "export_image") == [export_args]
    exported = (await env.mcp.call_tool("export_image", export_args))["structuredContent"]
    assert (await app.frame.locator("#export-size").inner_text()).startswith("1200 × 630 WEBP")
    assert await app.frame.locator("#export-html").input_value() == exported["html"]

    # "Use this image": a ui/message naming the image, its path and its alt text.
    await app.frame.locator("#use").click()
    await app.page.wait_for_function("hostLog.some(e => e.method === 'ui/message')")
    [message] = await app.host_log("ui/message")
    assert message["role"] == "user"
    text = message["content"][0]["text"]
    for part in (variation_id, variation_path, exported["alt"], exported["path"]):
        assert part in text, (part, text)
    app.assert_clean()


async def test_hostile_prompt_reads_as_text_and_never_runs(env: Env, app: AppPage) -> None:
    args, result = await generate(env, HOSTILE, 13)
    await app.send(args, result)
    await app.wait_view(IMAGE_DECODED)
    assert await app.frame.locator("#prompt").inner_text() == HOSTILE
    view = app.view()
    assert await view.evaluate("document.scripts.length") == 1  # the viewer's own
    assert await view.evaluate("document.querySelectorAll('[onerror], #prompt *').length") == 0
    app.assert_clean()


# ------------------------------------------------------------------ grids
def add_stock(service: ImageService) -> str:
    """Catalogue a stock photo as a Pexels download does (hostile alt and photographer)."""
    record = catalogue_stock(service.store, 4242, HOSTILE_ALT,
                             photographer="Ana <b>Bold</b>",
                             photographer_url="javascript:alert(4)", page_url=PAGE_URL,
                             attribution="Photo by Ana Lens on Pexels")
    assert record.image_id is not None
    return record.image_id


async def test_library_grid_and_stock_attribution(env: Env, app: AppPage) -> None:
    stock_id = add_stock(env.service)
    args = {"limit": 6}
    result = await env.mcp.call_tool("find_images", args)
    found = result["structuredContent"]["images"]
    await app.send(args, result)
    await app.wait_view(IMAGE_DECODED)
    grid = app.frame.locator("#grid button")
    assert await grid.count() == len(found) >= 2
    assert await grid.evaluate_all("bs => bs.map(b => b.dataset.imageId)") == [
        i["image_id"] for i in found]
    await app.wait_view("() => [...document.querySelectorAll('#grid img')]"
                        ".every(i => i.complete && i.naturalWidth > 0)")

    await app.frame.locator(f'#grid button[data-image-id="{stock_id}"]').click()
    await app.wait_view("id => document.querySelector('#details dd[data-field=image]')"
                        ".textContent === id", stock_id)
    attribution = app.frame.locator("#attribution")
    assert "Photo by Ana Lens on Pexels" in await attribution.inner_text()
    assert "Ana <b>Bold</b>" in await attribution.inner_text()  # text, and no link: javascript:
    assert await attribution.locator("a").evaluate_all("as => as.map(a => a.href)") == [PAGE_URL]
    assert await app.frame.locator("#vary").is_hidden()  # variations are for generations
    await attribution.locator("a").click()
    await app.page.wait_for_function("hostLog.some(e => e.method === 'ui/open-link')")
    assert await app.host_log("ui/open-link") == [{"url": PAGE_URL}]
    app.assert_clean()


async def test_variations_grid_follows_the_host_theme_and_keyboard(
        env: Env, app: AppPage) -> None:
    _, base = await generate(env, "snowy peaks above a green valley", 31)
    args = {"image": base["structuredContent"]["image_id"], "count": 3}
    result = await env.mcp.call_tool("vary_image", args)
    variations = result["structuredContent"]["results"]
    assert [v["status"] for v in variations] == ["succeeded"] * 3
    await app.page.evaluate("""() => bridge.setHostContext({theme: 'dark', styles: {variables:
        {'--color-background-primary': '#101418', '--color-text-primary': '#e8e8e8'}}})""")
    await app.send(args, result)
    await app.wait_view(IMAGE_DECODED)
    view = app.view()
    assert await view.evaluate("document.documentElement.dataset.theme") == "dark"
    assert await view.evaluate("getComputedStyle(document.body).backgroundColor") == (
        "rgb(16, 20, 24)")
    assert await app.frame.locator("#grid button").count() == 3
    await app.wait_view("() => [...document.querySelectorAll('#grid img')]"
                        ".every(i => i.complete && i.naturalWidth > 0)")
    await shoot(app, "app-variations.png")

    second = variations[1]
    await app.frame.locator("#grid button").nth(1).focus()
    await app.page.keyboard.press("Enter")
    await app.wait_view("id => document.querySelector('#details dd[data-field=image]')"
                        ".textContent === id", second["image_id"])
    assert await field(app, "seed") == str(second["seed"])
    assert await app.frame.locator("#grid button").nth(1).get_attribute("aria-pressed") == "true"
    app.assert_clean()
