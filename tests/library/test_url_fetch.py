"""Fetching image URLs: the address rules, hop by hop, and the caps.

No packet leaves this machine. The address rules are checked with a faked
resolver and ``httpx.MockTransport`` (which records every request that would
have been sent), so a name resolving to 10.0.0.1 or 169.254.169.254 is refused
before anything is sent, and a broken rule fails here without reaching
anything. Real fetches go to the loopback server of ``tests.helpers_urls``,
allowed only with ``allow_private``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from sdxl_mcp.errors import BadRequest
from sdxl_mcp.library.url_fetch import UrlFetcher, UrlLimits
from tests.helpers_urls import CUBE, image_server

PUBLIC = "93.184.216.34"


class World:
    """A faked DNS (name -> addresses) and web (the MockTransport's handler)."""

    def __init__(self, dns: dict[str, list[str]],
                 answer: Callable[[httpx.Request], httpx.Response] | None = None) -> None:
        self.dns = dns
        self.lookups: list[str] = []
        self.sent: list[httpx.Request] = []
        self._answer = answer or (lambda request: httpx.Response(
            200, content=CUBE, headers={"Content-Type": "image/png"}))

    async def resolve(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        if host not in self.dns:
            raise OSError(f"unknown host {host}")
        return self.dns[host]

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        return self._answer(request)

    def fetcher(self, **kwargs: object) -> UrlFetcher:
        return UrlFetcher(resolve=self.resolve, transport=httpx.MockTransport(self.handle),
                          **kwargs)  # type: ignore[arg-type]


async def refused(fetcher: UrlFetcher, url: str) -> str:
    with pytest.raises(BadRequest) as caught:
        await fetcher.fetch(url, "image")
    await fetcher.aclose()
    message = caught.value.message
    assert message.startswith("image: "), message
    return message


# ------------------------------------------------------------ the address rules
@pytest.mark.parametrize(("address", "rule"), [
    ("10.0.0.1", "private"),
    ("169.254.169.254", "link-local"),
    ("127.0.0.1", "loopback"),
    ("100.100.100.200", "CGNAT"),
    ("fd00::1", "unique-local"),
    ("::ffff:10.0.0.1", "private"),
])
async def test_a_name_resolving_to_a_non_public_address_is_refused_before_any_request(
        address: str, rule: str) -> None:
    world = World({"images.example": [address]})
    message = await refused(world.fetcher(), "https://images.example/cat.png")
    assert rule in message and "public addresses" in message
    assert world.sent == []


async def test_the_metadata_address_stays_refused_when_private_hosts_are_allowed() -> None:
    world = World({"metadata.example": ["169.254.169.254"]})
    message = await refused(world.fetcher(allow_private=True), "http://metadata.example/latest")
    assert "link-local" in message and "ALLOW_PRIVATE" not in message
    assert world.sent == []


async def test_one_private_address_among_public_ones_refuses_the_name() -> None:
    world = World({"mixed.example": [PUBLIC, "10.1.2.3"]})
    assert "private" in await refused(world.fetcher(), "https://mixed.example/a.png")
    assert world.sent == []


async def test_the_refusal_says_which_setting_lifts_a_private_rule() -> None:
    world = World({"nas.local": ["192.168.1.20"]})
    message = await refused(world.fetcher(), "http://nas.local/photo.png")
    assert "SDXL_MCP_URL_ALLOW_PRIVATE=true" in message


async def test_an_ip_literal_is_judged_without_asking_anyone() -> None:
    world = World({})
    world.dns["169.254.169.254"] = ["169.254.169.254"]  # what getaddrinfo gives for a literal
    assert "link-local" in await refused(world.fetcher(), "http://169.254.169.254/latest/")
    assert world.sent == []


async def test_the_request_goes_to_the_checked_address_with_the_name_in_host() -> None:
    world = World({"images.example": [PUBLIC]})
    fetcher = world.fetcher()
    fetched = await fetcher.fetch("http://images.example:8080/cat.png?size=2", "image")
    await fetcher.aclose()
    assert fetched.data == CUBE and fetched.url == "http://images.example:8080/cat.png?size=2"
    (sent,) = world.sent
    assert sent.url.host == PUBLIC and sent.url.port == 8080 and sent.url.path == "/cat.png"
    assert sent.headers["host"] == "images.example:8080"
    assert world.lookups == ["images.example"]


async def test_https_keeps_the_name_for_sni_and_the_certificate_check() -> None:
    world = World({"images.example": [PUBLIC]})
    fetcher = world.fetcher()
    await fetcher.fetch("https://images.example/cat.png", "image")
    await fetcher.aclose()
    (sent,) = world.sent
    assert sent.url.host == PUBLIC and sent.extensions["sni_hostname"] == "images.example"


async def test_a_redirect_to_the_metadata_address_is_refused_before_it_is_followed() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"Location": "http://rebind.example/latest/meta-data"})

    world = World({"images.example": [PUBLIC], "rebind.example": ["169.254.169.254"]}, answer)
    message = await refused(world.fetcher(), "https://images.example/cat.png")
    assert "redirects to rebind.example" in message and "link-local" in message
    assert [r.url.host for r in world.sent] == [PUBLIC]
    assert world.lookups == ["images.example", "rebind.example"]


async def test_each_hop_is_resolved_once_and_connected_to_its_checked_address() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.headers["host"] == "short.example":
            return httpx.Response(301, headers={"Location": "https://cdn.example/c.png"})
        return httpx.Response(200, content=CUBE)

    world = World({"short.example": [PUBLIC], "cdn.example": ["2606:4700::6810:84e5"]}, answer)
    fetcher = world.fetcher()
    fetched = await fetcher.fetch("http://short.example/x", "image")
    await fetcher.aclose()
    assert fetched.url == "https://cdn.example/c.png"
    assert [(r.url.host, r.headers["host"]) for r in world.sent] == [
        (PUBLIC, "short.example"), ("2606:4700::6810:84e5", "cdn.example")]
    assert world.lookups == ["short.example", "cdn.example"]


async def test_three_redirects_are_followed_and_a_fourth_is_refused() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        hop = int(request.url.path.strip("/") or 0)
        if hop == 9:
            return httpx.Response(200, content=CUBE)
        return httpx.Response(302, headers={"Location": f"/{hop + 1}" if hop < 3 else "/9"})

    world = World({"a.example": [PUBLIC]}, answer)
    fetcher = world.fetcher()
    assert (await fetcher.fetch("http://a.example/1", "image")).data == CUBE  # 1->2->3->9
    await fetcher.aclose()
    world.sent.clear()
    message = await refused(world.fetcher(), "http://a.example/0")  # 0->1->2->3->9
    assert "more than 3 times" in message and len(world.sent) == 4


# ------------------------------------------------------------ what is not a fetchable URL
@pytest.mark.parametrize(("url", "says"), [
    ("ftp://images.example/cat.png", "http:// or https://"),
    ("http:///cat.png", "http:// or https://"),
    ("https://user:secret@images.example/cat.png", "user name or password"),
    ("https://nowhere.example/cat.png", "does not resolve"),
])
async def test_urls_that_cannot_be_fetched_are_refused_with_the_reason(url: str, says: str) -> None:
    world = World({"images.example": [PUBLIC]})
    message = await refused(world.fetcher(), url)
    assert says in message and "secret" not in message
    assert world.sent == []


async def test_an_answer_other_than_200_is_refused_with_its_status() -> None:
    world = World({"images.example": [PUBLIC]}, lambda request: httpx.Response(404))
    assert "HTTP 404" in await refused(world.fetcher(), "https://images.example/gone.png")


async def test_the_query_string_never_appears_in_an_error() -> None:
    world = World({"images.example": [PUBLIC]}, lambda request: httpx.Response(403))
    message = await refused(world.fetcher(), "https://images.example/a.png?token=SECRET")
    assert "SECRET" not in message and "https://images.example/a.png" in message


async def test_a_declared_length_over_the_cap_is_refused_without_reading_the_body() -> None:
    read: list[int] = []

    async def body() -> AsyncIterator[bytes]:
        read.append(1)
        yield CUBE

    world = World({"images.example": [PUBLIC]}, lambda request: httpx.Response(
        200, headers={"Content-Length": str(21 * 1024 * 1024)}, content=body()))
    assert "over 20 MB" in await refused(world.fetcher(), "https://images.example/big.png")
    assert read == []


async def test_a_body_that_grows_past_the_cap_is_refused() -> None:
    async def body() -> AsyncIterator[bytes]:  # chunked: no Content-Length to go by
        for _ in range(5):
            yield b"\0" * 1000

    world = World({"images.example": [PUBLIC]},
                  lambda request: httpx.Response(200, content=body()))
    fetcher = world.fetcher(limits=UrlLimits(max_bytes=4096))
    assert "is over 4 KB" in await refused(fetcher, "https://images.example/x")


# ------------------------------------------------------------ a real server on loopback
async def test_loopback_is_refused_by_default_and_nothing_reaches_the_server() -> None:
    with image_server() as server:
        message = await refused(UrlFetcher(), f"{server.url}/cube.png")
        assert "loopback" in message and server.requests == []


async def test_loopback_is_fetched_when_private_hosts_are_allowed() -> None:
    with image_server() as server:
        fetcher = UrlFetcher(allow_private=True)
        fetched = await fetcher.fetch(f"{server.url}/hop/2", "image")
        await fetcher.aclose()
        assert fetched.data == CUBE and fetched.url == f"{server.url}/cube.png"
        assert server.requests == ["/hop/2", "/hop/1", "/cube.png"]


async def test_an_endless_body_from_a_real_server_stops_at_the_cap() -> None:
    with image_server() as server:
        fetcher = UrlFetcher(allow_private=True, limits=UrlLimits(max_bytes=1024 * 1024))
        assert "over 1 MB" in await refused(fetcher, f"{server.url}/huge")


async def test_a_slow_server_is_given_up_on_after_the_total_timeout() -> None:
    with image_server() as server:
        fetcher = UrlFetcher(allow_private=True, limits=UrlLimits(total_timeout_s=1.0))
        message = await refused(fetcher, f"{server.url}/slow")
        assert "did not arrive within 1 s" in message
