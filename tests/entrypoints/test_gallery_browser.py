"""The web gallery in a real headless browser: Debian's chromium driven by Playwright.

Checks what only a browser shows: the sign-in form works and the browser keeps
an HttpOnly, SameSite=Strict cookie that is not the token; every thumbnail
decodes; no request leaves 127.0.0.1; a hostile prompt never runs (no dialog
fires) and reads as text; search and the source filter narrow the grid; the
detail page shows the seed and the parameters.

Skipped, with the reason, when ``/usr/bin/chromium`` or Playwright is missing
(``apt-get install -y chromium``; ``pip install -e '.[dev]'``; never
a Playwright browser download). With ``SDXL_MCP_GALLERY_SCREENSHOTS=<dir>`` it also
writes ``gallery.png`` and ``gallery-detail.png`` there (the README's).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sdxl_mcp.entrypoints.http.auth import COOKIE_NAME
from tests.helpers_gallery import HOSTILE, TOKEN, Library, library_server

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = os.environ.get("SDXL_MCP_GALLERY_SCREENSHOTS")

if not (Path(CHROMIUM).is_file() or shutil.which("chromium")):
    pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)", allow_module_level=True)
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="Playwright is missing (pip install -e '.[dev]')")


@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Library]:
    with library_server(tmp_path_factory.mktemp("gallery-browser"), token=TOKEN) as library:
        yield library


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM if Path(CHROMIUM).is_file() else shutil.which("chromium"),
            args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


class Watched:
    """A page with every request and dialog recorded."""

    def __init__(self, browser: Any, lib: Library) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.context.set_default_timeout(30_000)
        self.page = self.context.new_page()
        self.requests: list[str] = []
        self.dialogs: list[str] = []
        self.console_errors: list[str] = []
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("dialog", self._dialog)
        self.page.on("console", lambda m: m.type == "error" and self.console_errors.append(m.text))
        self.base = lib.live.url

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def goto(self, path: str) -> Any:
        response = self.page.goto(self.base + path, wait_until="load")
        assert response is not None
        return response

    def sign_in(self) -> None:
        self.goto("/gallery")
        assert self.page.url == self.base + "/gallery/login"
        self.page.fill("#token", TOKEN)
        self.page.click("button[type=submit]")
        self.page.wait_for_url(self.base + "/gallery")

    def card_ids(self) -> list[str]:
        ids: list[str] = self.page.eval_on_selector_all(
            "#images li", "cards => cards.map(c => c.dataset.imageId)")
        return ids

    def thumbnails_decoded(self) -> list[tuple[str, int]]:
        self.page.wait_for_function(
            "() => Array.from(document.images).every(i => i.complete)", timeout=30_000)
        sizes: list[tuple[str, int]] = self.page.eval_on_selector_all(
            "#images img", "imgs => imgs.map(i => [i.getAttribute('src'), i.naturalWidth])")
        return sizes

    def assert_stayed_local(self) -> None:
        local = (self.base + "/",)
        foreign = [url for url in self.requests if not url.startswith(local)]
        assert not foreign, f"requests left 127.0.0.1: {foreign}"
        assert not self.dialogs, f"a dialog fired: {self.dialogs}"

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def watched(browser: Any, lib: Library) -> Iterator[Watched]:
    w = Watched(browser, lib)
    try:
        yield w
    finally:
        w.close()


def test_sign_in_thumbnails_search_and_detail(watched: Watched, lib: Library) -> None:
    w = watched
    w.sign_in()
    cookies = {c["name"]: c for c in w.context.cookies()}
    session = cookies[COOKIE_NAME]
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert session["value"] != TOKEN and TOKEN not in session["value"]
    assert TOKEN not in w.page.content() and TOKEN not in w.page.url
    assert w.page.evaluate("document.cookie") == ""  # HttpOnly: no script can read it

    order = ["stock", "hostile", "forest", "lighthouse"]
    assert w.card_ids() == [lib.ids[role] for role in order]
    sizes = w.thumbnails_decoded()
    assert len(sizes) == 4 and all(width > 0 for _, width in sizes), sizes
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        w.page.screenshot(path=str(Path(SCREENSHOTS) / "gallery.png"), full_page=True)

    # The search box and the source filter narrow the grid (a plain GET form).
    w.page.fill("#q", "lighthouse")
    w.page.click(".search button")
    w.page.wait_for_url("**q=lighthouse**")
    assert w.card_ids() == [lib.ids["lighthouse"]]
    w.page.fill("#q", "")
    w.page.select_option("#source", "pexels")
    w.page.click(".search button")
    w.page.wait_for_url("**source=pexels**")
    assert w.card_ids() == [lib.ids["stock"]]

    # The detail page: seed, parameters, infotext, the image itself.
    w.goto("/gallery")
    w.page.click(f'li[data-image-id="{lib.ids["lighthouse"]}"] a')
    w.page.wait_for_url(f"**/gallery/{lib.ids['lighthouse']}")
    assert w.page.inner_text("#seed") == "11"
    parameters = w.page.inner_text("#parameters")
    assert "guidance_scale" in parameters and "6.5" in parameters
    assert "Seed: 11" in w.page.inner_text("#infotext")
    assert w.page.eval_on_selector("#image", "i => i.complete && i.naturalWidth") == 256
    if SCREENSHOTS:
        w.page.screenshot(path=str(Path(SCREENSHOTS) / "gallery-detail.png"), full_page=True)
    w.assert_stayed_local()


def test_hostile_prompt_is_text_and_never_runs(watched: Watched, lib: Library) -> None:
    w = watched
    w.sign_in()
    for path in ("/gallery", f"/gallery/{lib.ids['hostile']}", f"/gallery/{lib.ids['stock']}",
                 "/gallery?q=hostile"):
        w.goto(path)
        assert w.page.evaluate("document.scripts.length") == 0, path
        assert w.page.evaluate(
            "Array.from(document.images).every(i => !i.getAttribute('onerror'))"), path
    w.goto(f"/gallery/{lib.ids['hostile']}")
    assert w.page.inner_text("#prompt") == HOSTILE
    w.goto(f"/gallery/{lib.ids['stock']}")
    links = w.page.eval_on_selector_all("a", "as => as.map(a => a.href)")
    assert not [href for href in links if href.startswith("javascript:")], links
    w.assert_stayed_local()


def test_forged_cookie_and_logout_lead_back_to_sign_in(watched: Watched) -> None:
    w = watched
    w.context.add_cookies([{"name": COOKIE_NAME, "value": "forged-session-value",
                            "url": w.base}])
    w.goto("/gallery")
    assert w.page.url == w.base + "/gallery/login"
    w.page.fill("#token", "wrong-token")
    w.page.click("button[type=submit]")
    assert "That token is not right." in w.page.inner_text("main")
    w.sign_in()
    w.page.click(".logout button")
    w.page.wait_for_url(w.base + "/gallery/login")
    w.goto("/gallery")
    assert w.page.url == w.base + "/gallery/login"
    w.assert_stayed_local()
