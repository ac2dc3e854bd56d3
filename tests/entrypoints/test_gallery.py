"""The web gallery over plain HTTP: pages, search, paging, escaping, headers, sign-in.

Every test talks to the real app under uvicorn on a loopback port (see
``helpers_gallery``); the browser checks are in ``test_gallery_browser``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sdxl_mcp.entrypoints.http.auth import COOKIE_NAME, MAX_FAILURES, FailureLimiter, Sessions
from sdxl_mcp.entrypoints.http.gallery import CSP, PER_PAGE
from tests.helpers_gallery import HOSTILE, HOSTILE_ALT, TIMEOUT, TOKEN, Library, library_server

IDS = re.compile(r'data-image-id="([^"]+)"')


@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Library]:
    with library_server(tmp_path_factory.mktemp("gallery")) as library:
        yield library


@pytest.fixture(scope="module")
def paged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Library]:
    with library_server(tmp_path_factory.mktemp("gallery-paged"), extra_stock=PER_PAGE + 2) as lib:
        yield lib


@pytest.fixture(scope="module")
def token_lib(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Library]:
    with library_server(tmp_path_factory.mktemp("gallery-token"), token=TOKEN) as library:
        yield library


def _get(lib: Library, path: str, **kw: object) -> httpx.Response:
    return httpx.get(lib.live.url + path, timeout=TIMEOUT, **kw)  # type: ignore[arg-type]


def _ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return IDS.findall(response.text)


# ------------------------------------------------------------------ pages
def test_list_shows_the_library_newest_first(lib: Library) -> None:
    response = _get(lib, "/gallery")
    assert response.headers["content-type"].startswith("text/html")
    order = ["stock", "hostile", "forest", "lighthouse"]
    assert _ids(response) == [lib.ids[role] for role in order]
    assert "4 images" in response.text
    for role in order:
        assert f'/api/media/images/{lib.ids[role]}?format=webp&amp;width=320' in response.text


def test_every_page_has_a_strict_csp_and_loads_nothing_from_elsewhere(lib: Library) -> None:
    for path in ("/gallery", f"/gallery/{lib.ids['stock']}", f"/gallery/{lib.ids['lighthouse']}",
                 "/gallery/no-such-image", "/gallery?page=0"):
        response = _get(lib, path)
        assert response.headers["content-security-policy"] == CSP, path
        assert "script-src 'none'" in CSP and "default-src 'none'" in CSP
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert "<script" not in response.text, path
        # Resources (src=, stylesheet and icon links) are all on this server.
        for url in re.findall(r'\ssrc="([^"]*)"', response.text):
            assert url.startswith("/"), (path, url)
        for url in re.findall(r'<link [^>]*href="([^"]*)"', response.text):
            assert url.startswith("/gallery/static/"), (path, url)
    css = _get(lib, "/gallery/static/gallery.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert "url(" not in css.text and "@import" not in css.text


def test_search_narrows_the_list(lib: Library) -> None:
    assert _ids(_get(lib, "/gallery", params={"q": "lighthouse"})) == [lib.ids["lighthouse"]]
    assert _ids(_get(lib, "/gallery", params={"q": "forest fog"})) == [lib.ids["forest"]]
    assert _ids(_get(lib, "/gallery", params={"q": "Ana"})) == [lib.ids["stock"]]  # photographer
    none = _get(lib, "/gallery", params={"q": "zeppelin"})
    assert _ids(none) == [] and "0 images" in none.text and "No images match" in none.text
    # The query is shown back, escaped.
    echoed = _get(lib, "/gallery", params={"q": "<b>lighthouse</b>"})
    assert "&lt;b&gt;lighthouse&lt;/b&gt;" in echoed.text and "<b>lighthouse" not in echoed.text


def test_source_filter(lib: Library) -> None:
    assert _ids(_get(lib, "/gallery?source=pexels")) == [lib.ids["stock"]]
    sdxl = _ids(_get(lib, "/gallery?source=sdxl&q="))
    assert sdxl == [lib.ids[r] for r in ("hostile", "forest", "lighthouse")]
    assert _ids(_get(lib, "/gallery?source=sdxl&q=lighthouse")) == [lib.ids["lighthouse"]]


def test_paging(paged: Library) -> None:
    first = _get(paged, "/gallery")
    assert len(_ids(first)) == PER_PAGE and "page 1 of 2" in first.text
    assert 'href="/gallery?page=2"' in first.text and 'rel="prev"' not in first.text
    second = _get(paged, "/gallery?page=2")
    assert len(_ids(second)) == 6 and 'href="/gallery"' in second.text
    assert not set(_ids(first)) & set(_ids(second))
    filtered = _get(paged, "/gallery?source=pexels&q=meadow")
    assert 'href="/gallery?q=meadow&amp;source=pexels&amp;page=2"' in filtered.text


@pytest.mark.parametrize(("query", "sentence"), [
    ("page=3", "page 3 is past the last page (2)"),
    ("page=0", "page must be ≥ 1"),
    ("page=-1", "page must be ≥ 1"),
    ("page=two", "page"),
    ("page=99999999", "page must be ≤"),
    ("source=flickr", "source must be one of"),
    ("q=" + "x" * 201, "q must be at most 200 characters"),
    ("sort=oldest", "sort is not a known field"),
])
def test_bad_parameters_answer_422_with_a_sentence(paged: Library, query: str, sentence: str
                                                   ) -> None:
    response = _get(paged, f"/gallery?{query}")
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("text/html")
    message = re.search(r'<p id="message">(.*?)</p>', response.text, re.S)
    assert message is not None and sentence in message.group(1).replace("&#39;", "'")


def test_detail_shows_seed_parameters_infotext_and_timings(lib: Library) -> None:
    response = _get(lib, f"/gallery/{lib.ids['lighthouse']}")
    assert response.status_code == 200
    text = response.text
    assert '<dd id="seed">11</dd>' in text
    assert "a red lighthouse on a cliff at dusk" in text
    assert "blurry, low contrast" in text  # the negative prompt
    for key in ("guidance_scale", "num_inference_steps", "width", "use_refinement"):
        assert f"<th>{key}</th>" in text, key
    assert "<th>guidance_scale</th><td>6.5</td>" in text
    assert 'id="infotext"' in text and "Seed: 11" in text and "CFG scale: 6.5" in text
    assert "<th>total (s)</th>" in text and "<th>base (s)</th>" in text
    assert "<th>base</th><td>fake</td>" in text  # the models from the sidecar
    assert lib.names["lighthouse"] in text
    for preset in ("og", "hero", "square", "thumbnail"):
        assert f">{preset}</a>" in text
    assert "width=1200&amp;height=630" in text and "POST /api/media/export" in text


def test_detail_of_a_stock_photo_shows_attribution_with_safe_links(lib: Library) -> None:
    text = _get(lib, f"/gallery/{lib.ids['stock']}").text
    assert "Photo by Ana Lens on Pexels (photo 4242)" in text
    assert 'href="https://www.pexels.com/photo/4242/"' in text
    assert 'href="javascript:' not in text  # the hostile photographer_url is no link
    assert "<td>javascript:alert(4)</td>" in text  # only shown as a parameter's text
    assert "Ana &lt;b&gt;Bold&lt;/b&gt;" in text and "<b>Bold" not in text


def test_hostile_text_renders_as_text(lib: Library) -> None:
    escaped_prompt = "&lt;img src=x onerror=alert(1)&gt;&lt;script&gt;alert(2)&lt;/script&gt;"
    for path in ("/gallery", f"/gallery/{lib.ids['hostile']}", f"/gallery/{lib.ids['stock']}",
                 "/gallery?q=hostile"):
        text = _get(lib, path).text
        assert "<script" not in text and "<img src=x" not in text, path
        assert "onerror=alert(1)>" not in text
    assert escaped_prompt in _get(lib, f"/gallery/{lib.ids['hostile']}").text
    assert HOSTILE.startswith("<img")
    stock = _get(lib, f"/gallery/{lib.ids['stock']}").text
    assert "Lake &#34;at&#34; dawn &lt;script&gt;alert(3)&lt;/script&gt;" in stock
    assert HOSTILE_ALT not in stock


@pytest.mark.parametrize("image_id", ["no-such-image", "a" * 81, "dots.in.it", "%3Cscript%3E",
                                      "..%2F..%2Fcatalog.sqlite3"])
def test_unknown_image_is_a_404_page(lib: Library, image_id: str) -> None:
    response = _get(lib, f"/gallery/{image_id}")
    assert response.status_code == 404
    if image_id.startswith(".."):  # the client resolves it to /catalog.sqlite3: not ours
        return
    assert "No image with this id in the library." in response.text
    assert "<script" not in response.text


def test_without_a_token_there_is_nothing_to_sign_in_to(lib: Library) -> None:
    response = _get(lib, "/gallery/login")
    assert response.status_code == 303 and response.headers["location"] == "/gallery"
    assert "Sign out" not in _get(lib, "/gallery").text


# ------------------------------------------------------------------ sign-in
def _login(lib: Library, token: str, **headers: str) -> httpx.Response:
    return httpx.post(lib.live.url + "/gallery/login", data={"token": token},
                      headers=headers, timeout=TIMEOUT)


def test_with_a_token_pages_send_to_sign_in_and_other_routes_answer_401(token_lib: Library
                                                                        ) -> None:
    for path in ("/gallery", f"/gallery/{token_lib.ids['forest']}", "/gallery?q=x"):
        response = _get(token_lib, path)
        assert response.status_code == 303 and response.headers["location"] == "/gallery/login"
    form = _get(token_lib, "/gallery/login")
    assert form.status_code == 200 and 'name="token"' in form.text and TOKEN not in form.text
    assert form.headers["content-security-policy"] == CSP
    assert _get(token_lib, "/gallery/static/gallery.css").status_code == 200
    image = _get(token_lib, f"/api/media/images/{token_lib.names['forest']}")
    assert image.status_code == 401 and image.headers["www-authenticate"] == "Bearer"
    # A bearer token still works everywhere, the gallery included.
    assert _get(token_lib, "/gallery", headers=token_lib.auth()).status_code == 200


def test_sign_in_sets_a_session_cookie_that_is_not_the_token(token_lib: Library) -> None:
    response = _login(token_lib, TOKEN)
    assert response.status_code == 303 and response.headers["location"] == "/gallery"
    set_cookie = response.headers["set-cookie"]
    assert set_cookie.startswith(f"{COOKIE_NAME}=")
    assert "HttpOnly" in set_cookie and "SameSite=strict" in set_cookie
    assert "Path=/" in set_cookie and "Secure" not in set_cookie  # plain http here
    assert TOKEN not in set_cookie
    value = response.cookies[COOKIE_NAME]
    assert value != TOKEN and len(value) >= 40
    cookies = {COOKIE_NAME: value}
    with httpx.Client(base_url=token_lib.live.url, cookies=cookies, timeout=TIMEOUT) as client:
        listing = client.get("/gallery")
        assert listing.status_code == 200 and TOKEN not in listing.text
        assert "Sign out" in listing.text
        detail = client.get(f"/gallery/{token_lib.ids['lighthouse']}")
        assert detail.status_code == 200 and '<dd id="seed">11</dd>' in detail.text
        original = client.get(f"/api/media/images/{token_lib.names['lighthouse']}")
        assert original.status_code == 200 and original.content.startswith(b"\x89PNG")
        thumb = client.get(f"/api/media/images/{token_lib.ids['stock']}",
                           params={"format": "webp", "width": 320, "height": 320})
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/webp"
        # The cookie only reads: it never starts work, reaches MCP or the status routes.
        body = {"prompt": "x", "use_pexels": False, "use_generation": True}
        assert client.post("/api/media/generate-image", json=body).status_code == 401
        assert client.get("/healthz").status_code == 401
        assert client.get("/openapi.json").status_code == 401
        assert client.post("/mcp", json={}).status_code == 401


def test_sign_in_over_https_sets_a_secure_cookie(token_lib: Library) -> None:
    # uvicorn trusts X-Forwarded-Proto from 127.0.0.1 (a local TLS proxy).
    response = _login(token_lib, TOKEN, **{"X-Forwarded-Proto": "https"})
    assert response.status_code == 303 and "Secure" in response.headers["set-cookie"]


@pytest.mark.parametrize("cookie", [TOKEN, "forged", "A" * 43, "x" * 5000, ""])
def test_a_forged_cookie_is_refused(token_lib: Library, cookie: str) -> None:
    cookies = {COOKIE_NAME: cookie}
    with httpx.Client(base_url=token_lib.live.url, cookies=cookies, timeout=TIMEOUT) as client:
        page = client.get("/gallery")
        assert page.status_code == 303 and page.headers["location"] == "/gallery/login"
        image = client.get(f"/api/media/images/{token_lib.names['forest']}")
        assert image.status_code == 401


def test_logout_ends_the_session(token_lib: Library) -> None:
    value = _login(token_lib, TOKEN).cookies[COOKIE_NAME]
    with httpx.Client(base_url=token_lib.live.url, cookies={COOKIE_NAME: value},
                      timeout=TIMEOUT) as client:
        assert client.get("/gallery").status_code == 200
        out = client.post("/gallery/logout")
        assert out.status_code == 303 and out.headers["location"] == "/gallery/login"
        assert f'{COOKIE_NAME}=""' in out.headers["set-cookie"]
    with httpx.Client(base_url=token_lib.live.url, cookies={COOKIE_NAME: value},
                      timeout=TIMEOUT) as client:
        assert client.get("/gallery").status_code == 303


def test_a_cross_site_sign_in_post_is_refused(token_lib: Library) -> None:
    response = _login(token_lib, TOKEN, Origin="https://evil.example")
    assert response.status_code == 403 and "set-cookie" not in response.headers


def test_failed_sign_ins_are_rate_limited(tmp_path: Path) -> None:
    with library_server(tmp_path, token=TOKEN) as lib:
        for _ in range(MAX_FAILURES):
            wrong = _login(lib, "not-the-token")
            assert wrong.status_code == 401 and "That token is not right." in wrong.text
            assert "set-cookie" not in wrong.headers
        limited = _login(lib, TOKEN)  # even the right token waits out the limit
        assert limited.status_code == 429
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        assert "Too many failed sign-ins" in limited.text and "set-cookie" not in limited.headers
        too_big = httpx.post(lib.live.url + "/gallery/login", content=b"token=" + b"x" * 5000,
                             headers={"Content-Type": "application/x-www-form-urlencoded"},
                             timeout=TIMEOUT)
        assert too_big.status_code in (413, 429)


def test_failure_limiter_and_sessions_expire_with_time() -> None:
    now = [1000.0]
    limiter = FailureLimiter(limit=2, window_s=60.0, clock=lambda: now[0])
    limiter.failed("a")
    limiter.failed("a")
    assert limiter.retry_after("a") == 60 and limiter.retry_after("b") is None
    now[0] += 30.5
    assert limiter.retry_after("a") == 30
    now[0] += 30
    assert limiter.retry_after("a") is None
    sessions = Sessions(ttl_s=10.0, clock=lambda: now[0])
    sid = sessions.create()
    assert sessions.valid(sid) and not sessions.valid(sid + "x") and not sessions.valid(None)
    now[0] += 11
    assert not sessions.valid(sid)
