"""Fetching an image argument given as an ``http(s)://`` URL, without becoming a proxy.

Guarantees (tests/library/test_url_fetch.py; docs/RELIABILITY.md "URL inputs"):

* only ``http`` and ``https`` URLs with a host and no user name or password;
* the host is resolved here, once per hop, and every address it resolves to
  must pass :func:`sdxl_mcp.library.addresses.refusal` (one bad address
  refuses the URL); the request then goes to the address that was checked,
  with the name in ``Host`` (and TLS SNI and certificate check), so a DNS
  answer that changes between check and connect cannot redirect it;
* redirects are followed by hand, at most ``max_redirects``, each target
  checked like the first URL;
* no proxy from the environment is used (it would connect elsewhere);
* the body is read up to ``max_bytes`` (declared or sent), under a connect,
  a read and a total timeout; anything but ``200`` is refused;
* every refusal is a :class:`~sdxl_mcp.errors.BadRequest` naming the argument,
  the URL and the rule; no fetched byte is ever quoted.
"""

from __future__ import annotations

import logging
import re
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio
import httpx

from sdxl_mcp import __version__
from sdxl_mcp.errors import BadRequest
from sdxl_mcp.library.addresses import refusal

logger = logging.getLogger(__name__)

__all__ = ["FetchedUrl", "Resolve", "UrlFetcher", "UrlLimits", "system_resolve"]

#: (host, port) -> the IP addresses the name resolves to.
Resolve = Callable[[str, int], Awaitable[list[str]]]


@dataclass(frozen=True)
class UrlLimits:
    """What one URL fetch may cost (docs/LIBRARY.md "Images from URLs")."""

    max_bytes: int = 20 * 1024 * 1024
    max_redirects: int = 3
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 10.0
    total_timeout_s: float = 30.0


@dataclass(frozen=True)
class FetchedUrl:
    """The body of a fetched image URL and the URL it finally came from."""

    data: bytes
    url: str


async def system_resolve(host: str, port: int) -> list[str]:
    """The addresses the system resolver gives for ``host`` (every family)."""
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class UrlFetcher:
    """GETs image URLs under the address rules; close with :meth:`aclose`.

    ``resolve`` and ``transport`` are the seams tests fake (a resolver that
    answers 10.0.0.1, an ``httpx.MockTransport`` that records what reached it).
    """

    def __init__(self, *, allow_private: bool = False, limits: UrlLimits | None = None,
                 resolve: Resolve = system_resolve,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.allow_private = allow_private
        self.limits = limits or UrlLimits()
        self._resolve = resolve
        self._client = httpx.AsyncClient(
            transport=transport,
            trust_env=False,  # a proxy would connect somewhere other than the checked address
            follow_redirects=False,  # each hop is checked here
            timeout=httpx.Timeout(self.limits.read_timeout_s,
                                  connect=self.limits.connect_timeout_s),
            headers={"User-Agent": f"sdxl-mcp/{__version__}", "Accept": "image/*"},
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def fetch(self, url: str, argument: str) -> FetchedUrl:
        """The body of ``url`` (an image, the caller sniffs it); BadRequest naming ``argument``."""
        shown = _shown(url)
        try:
            with anyio.fail_after(self.limits.total_timeout_s):
                return await self._follow(_parsed(url, argument, shown), argument, shown)
        except TimeoutError:
            raise BadRequest(
                f"{argument}: {shown} did not arrive within {self.limits.total_timeout_s:g} s; "
                "use a faster host or pass the image as a data: URI.") from None
        except httpx.TimeoutException:
            raise BadRequest(f"{argument}: {shown} timed out; try again or use another "
                             "host.") from None
        except httpx.HTTPError as exc:
            logger.info("URL fetch failed: %s: %s", type(exc).__name__, exc)
            raise BadRequest(f"{argument}: {shown} could not be fetched "
                             f"({type(exc).__name__}); check the URL.") from None

    async def _follow(self, current: httpx.URL, argument: str, shown: str) -> FetchedUrl:
        for hop in range(self.limits.max_redirects + 1):
            request = await self._request_to_checked_address(current, argument, shown, hop > 0)
            response = await self._client.send(request, stream=True)
            try:
                if response.is_redirect:
                    if hop == self.limits.max_redirects:
                        raise BadRequest(
                            f"{argument}: {shown} redirects more than "
                            f"{self.limits.max_redirects} times; pass the final URL.")
                    current = _parsed(str(current.join(response.headers["location"])),
                                      argument, shown)
                    continue
                if response.status_code != 200:
                    raise BadRequest(f"{argument}: {shown} answered HTTP "
                                     f"{response.status_code}, not the image; check the URL.")
                return FetchedUrl(await self._body(response, argument, shown), str(current))
            finally:
                await response.aclose()
        raise AssertionError("unreachable: the loop returns or raises")

    async def _request_to_checked_address(self, url: httpx.URL, argument: str, shown: str,
                                          redirected: bool) -> httpx.Request:
        """A request for ``url`` that connects to an address the rules allow."""
        host = url.host
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            addresses = await self._resolve(host, port)
        except OSError:
            raise BadRequest(f"{argument}: the host of {shown} does not resolve; "
                             "check the URL.") from None
        if not addresses:
            raise BadRequest(f"{argument}: the host of {shown} does not resolve.")
        for address in addresses:
            rule = refusal(address, allow_private=self.allow_private)
            if rule is not None:
                lift = (" (SDXL_MCP_URL_ALLOW_PRIVATE=true allows it)"
                        if refusal(address, allow_private=True) is None else "")
                via = f"redirects to {url.host}, " if redirected else ""
                raise BadRequest(f"{argument}: {shown} {via}leads to a {rule} address, and "
                                 f"only public addresses may be fetched{lift}.")
        extensions = {"sni_hostname": host} if url.scheme == "https" else {}
        return self._client.build_request(
            "GET", url.copy_with(host=addresses[0]),
            headers={"Host": url.netloc.decode("ascii")}, extensions=extensions)

    async def _body(self, response: httpx.Response, argument: str, shown: str) -> bytes:
        cap = self.limits.max_bytes
        too_big = BadRequest(f"{argument}: {shown} is over {_size(cap)}; use a smaller image.")
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            raise too_big
        buffer = bytearray()
        async for chunk in response.aiter_bytes():
            buffer += chunk
            if len(buffer) > cap:
                raise too_big
        return bytes(buffer)


def _parsed(url: str, argument: str, shown: str) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError):
        raise BadRequest(f"{argument}: {shown} is not a valid URL.") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise BadRequest(f"{argument}: {shown} must be an http:// or https:// URL with a host.")
    if parsed.userinfo:
        raise BadRequest(f"{argument}: {shown} carries a user name or password; "
                         "image URLs may not.")
    return parsed


def _size(count: int) -> str:
    return f"{count // 2**20} MB" if count >= 2**20 else f"{count // 1024} KB"


def _shown(url: str) -> str:
    """The URL as errors quote it: no password or query (either may hold a secret), at
    most 100 characters."""
    text = re.sub(r"//[^/@]*@", "//", url.split("?", 1)[0].split("#", 1)[0], count=1)
    return text if len(text) <= 100 else text[:97] + "..."
