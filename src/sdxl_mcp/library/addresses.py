"""Which network addresses an image URL may lead to (docs/LIBRARY.md "Images from URLs").

Guarantees (tests/library/test_addresses.py):

* :func:`refusal` names the rule that refuses an address, or returns None for
  a public one; the rules are one table, checked in order;
* always refused: unspecified, link-local (169.254.0.0/16, where clouds serve
  instance metadata, and fe80::/10), multicast, and anything else that is not
  globally routable (documentation, benchmarking, reserved ranges);
* refused unless ``allow_private`` (SDXL_MCP_URL_ALLOW_PRIVATE): loopback,
  private (10/8, 172.16/12, 192.168/16), CGNAT (100.64.0.0/10) and IPv6
  unique-local (fc00::/7);
* an IPv6 address that carries an IPv4 one (IPv4-mapped ``::ffff:a.b.c.d``,
  6to4, NAT64 ``64:ff9b::/96``) is judged by the IPv4 address it carries, so
  ``::ffff:127.0.0.1`` is loopback;
* text that is not an IP address is refused (names are resolved before this).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import NamedTuple

__all__ = ["ADDRESS_RULES", "AddressRule", "refusal"]

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_UNIQUE_LOCAL = ipaddress.ip_network("fc00::/7")
_PRIVATE = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))


class AddressRule(NamedTuple):
    """One refusal: its name in the error sentence, whether ALLOW_PRIVATE lifts it, its test."""

    name: str
    private: bool
    applies: Callable[[Address], bool]


#: In order: the first rule that applies names the refusal.
ADDRESS_RULES: tuple[AddressRule, ...] = (
    AddressRule("unspecified", False, lambda a: a.is_unspecified),
    AddressRule("link-local (cloud metadata is served there)", False, lambda a: a.is_link_local),
    AddressRule("multicast", False, lambda a: a.is_multicast),
    AddressRule("loopback", True, lambda a: a.is_loopback),
    AddressRule("CGNAT (100.64.0.0/10)", True, lambda a: a in _CGNAT),
    AddressRule("IPv6 unique-local (fc00::/7)", True, lambda a: a in _UNIQUE_LOCAL),
    AddressRule("private", True, lambda a: any(a in net for net in _PRIVATE)),
    AddressRule("not globally routable", False, lambda a: not a.is_global),
)


def refusal(address: str, *, allow_private: bool = False) -> str | None:
    """Why ``address`` may not be fetched from (a rule's name), or None if it may."""
    try:
        parsed: Address = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return "not an IP address"
    parsed = _carried_ipv4(parsed)
    for rule in ADDRESS_RULES:
        if rule.applies(parsed):
            return None if rule.private and allow_private else rule.name
    return None


def _carried_ipv4(address: Address) -> Address:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, NAT64), else itself."""
    if isinstance(address, ipaddress.IPv4Address):
        return address
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address

