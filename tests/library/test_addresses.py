"""The address rules for image URLs: one table, each row an address and its verdict."""

from __future__ import annotations

import pytest

from sdxl_mcp.library.addresses import ADDRESS_RULES, refusal

PUBLIC = None
#: address, verdict, verdict with SDXL_MCP_URL_ALLOW_PRIVATE=true
TABLE = [
    ("93.184.216.34", PUBLIC, PUBLIC),
    ("8.8.8.8", PUBLIC, PUBLIC),
    ("2606:4700:4700::1111", PUBLIC, PUBLIC),
    ("127.0.0.1", "loopback", PUBLIC),
    ("127.8.9.10", "loopback", PUBLIC),
    ("::1", "loopback", PUBLIC),
    ("10.0.0.1", "private", PUBLIC),
    ("172.16.0.1", "private", PUBLIC),
    ("172.31.255.254", "private", PUBLIC),
    ("192.168.1.1", "private", PUBLIC),
    ("100.64.0.1", "CGNAT (100.64.0.0/10)", PUBLIC),
    ("fd12:3456::1", "IPv6 unique-local (fc00::/7)", PUBLIC),
    ("169.254.169.254", "link-local (cloud metadata is served there)",
     "link-local (cloud metadata is served there)"),
    ("fe80::1", "link-local (cloud metadata is served there)",
     "link-local (cloud metadata is served there)"),
    ("fe80::1%eth0", "link-local (cloud metadata is served there)",
     "link-local (cloud metadata is served there)"),
    ("224.0.0.251", "multicast", "multicast"),
    ("ff02::1", "multicast", "multicast"),
    ("0.0.0.0", "unspecified", "unspecified"),
    ("::", "unspecified", "unspecified"),
    ("192.0.2.7", "not globally routable", "not globally routable"),
    ("240.0.0.1", "not globally routable", "not globally routable"),
    ("255.255.255.255", "not globally routable", "not globally routable"),
    # IPv6 forms that carry an IPv4 address are judged by it.
    ("::ffff:127.0.0.1", "loopback", PUBLIC),
    ("::ffff:169.254.169.254", "link-local (cloud metadata is served there)",
     "link-local (cloud metadata is served there)"),
    ("2002:a00:1::", "private", PUBLIC),  # 6to4 of 10.0.0.1
    ("64:ff9b::a9fe:a9fe", "link-local (cloud metadata is served there)",
     "link-local (cloud metadata is served there)"),  # NAT64 of 169.254.169.254
    ("64:ff9b::5db8:d822", PUBLIC, PUBLIC),  # NAT64 of 93.184.216.34
    ("example.com", "not an IP address", "not an IP address"),
]


@pytest.mark.parametrize(("address", "verdict", "verdict_allowing_private"), TABLE)
def test_each_address_gets_the_verdict_of_its_rule(
        address: str, verdict: str | None, verdict_allowing_private: str | None) -> None:
    assert refusal(address) == verdict
    assert refusal(address, allow_private=True) == verdict_allowing_private


def test_every_rule_has_a_row_in_the_table() -> None:
    named = {verdict for _, verdict, _ in TABLE}
    assert {rule.name for rule in ADDRESS_RULES} <= named
