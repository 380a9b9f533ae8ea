"""Which IP addresses are public: the rule every download connection must pass, and numeric host forms."""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network
Resolver = Callable[[str, int], Awaitable[list[str]]]
"""Resolves (host, port) to IP address strings. Tests inject one to point a name at 127.0.0.1."""

_PRIVATE = "a private-network address"
_DOCS = "a documentation address"
_V4_RULES: tuple[tuple[IPv4Network, str], ...] = tuple(
    (IPv4Network(network), why)
    for network, why in (
        ("0.0.0.0/8", "an unspecified ('this network') address"),
        ("10.0.0.0/8", _PRIVATE),
        ("100.64.0.0/10", "a carrier-grade NAT (shared) address"),
        ("127.0.0.0/8", "a loopback address (this computer)"),
        ("169.254.0.0/16", "a link-local address (where cloud metadata services live)"),
        ("172.16.0.0/12", _PRIVATE),
        ("192.0.0.0/24", "an IETF protocol address"),
        ("192.0.2.0/24", _DOCS),
        ("192.88.99.0/24", "a 6to4 relay address"),
        ("192.168.0.0/16", _PRIVATE),
        ("198.18.0.0/15", "a benchmarking address"),
        ("198.51.100.0/24", _DOCS),
        ("203.0.113.0/24", _DOCS),
        ("224.0.0.0/4", "a multicast address"),
        ("255.255.255.255/32", "the broadcast address"),
        ("240.0.0.0/4", "a reserved address"),
    )
)
_V6_RULES: tuple[tuple[IPv6Network, str], ...] = tuple(
    (IPv6Network(network), why)
    for network, why in (
        ("::/128", "the unspecified address"),
        ("::1/128", "a loopback address (this computer)"),
        ("::/96", "an IPv4-compatible address (deprecated)"),
        ("64:ff9b:1::/48", "a local NAT64 address"),
        ("100::/64", "a discard address"),
        ("2001::/32", "a Teredo tunnel address"),
        ("2001::/23", "an IETF protocol address"),
        ("2001:db8::/32", _DOCS),
        ("3fff::/20", _DOCS),
        ("5f00::/16", "a segment-routing address"),
        ("fc00::/7", "a private (unique local) address"),
        ("fe80::/10", "a link-local address"),
        ("fec0::/10", "a site-local address"),
        ("ff00::/8", "a multicast address"),
    )
)
_NAT64 = IPv6Network("64:ff9b::/96")
_NUMERIC_HOST = re.compile(r"[0-9a-fA-FxX.]+")


def literal_ip(host: str) -> IPAddress | None:
    """The address a host string denotes without DNS, read as the C resolver reads it
    (`2130706433`, `0x7f000001`, `0177.0.0.1` and `127.1` are all 127.0.0.1), or None for a name."""
    text = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    text = text.split("%", 1)[0]  # an IPv6 zone ("fe80::1%eth0") does not change the address
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if _NUMERIC_HOST.fullmatch(text) and any(c.isdigit() for c in text):
        try:
            return IPv4Address(socket.inet_aton(text))
        except OSError:
            return None
    return None


def refusal_reason(ip: IPAddress) -> str | None:
    """Why `ip` is not a public internet address, or None when it is one."""
    if isinstance(ip, IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            inner = refusal_reason(embedded)
            return None if inner is None else f"an IPv6 form of {embedded}, {inner}"
        for network6, why in _V6_RULES:
            if ip in network6:
                return why
    else:
        for network4, why in _V4_RULES:
            if ip in network4:
                return why
    # Belt and braces: anything the tables missed that Python itself does not call global.
    if not ip.is_global or ip.is_multicast or ip.is_reserved or ip.is_unspecified:
        return "not a public internet address"
    return None


def _embedded_ipv4(ip: IPv6Address) -> IPv4Address | None:
    """The IPv4 address an IPv6 address leads to: ::ffff:a.b.c.d, NAT64 64:ff9b::a.b.c.d, 6to4 2002:..."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour
