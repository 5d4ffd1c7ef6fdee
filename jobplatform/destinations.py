"""Outbound destinations (webhook URLs) checked against server-side request forgery.

A URL is accepted only with an http or https scheme and a host whose every address is a
public one: loopback, private, link-local, shared (CGNAT), multicast, reserved and
unspecified addresses are refused, unless they fall inside a network listed in
settings.WEBHOOK_ALLOW_PRIVATE_DESTINATIONS. The check runs when a URL is saved and again
at delivery, where the caller connects to the addresses it returned (never resolving the
name a second time), so a DNS answer that changes in between cannot redirect a delivery.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

from django.conf import settings

SCHEMES = ("http", "https")
DEFAULT_PORTS = {"http": 80, "https": 443}

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class DestinationRefused(Exception):
    """The URL may not be called. code: invalid_destination (not a usable http(s) URL, or a
    host that does not resolve) or destination_refused (an address that is not public)."""

    def __init__(self, message: str, *, code: str = "destination_refused"):
        super().__init__(message)
        self.message, self.code = message, code


@dataclass(frozen=True)
class Destination:
    scheme: str
    host: str
    port: int
    addresses: tuple[str, ...]  # checked addresses, in the resolver's order


@lru_cache(maxsize=8)
def _allowed_networks(spec: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in spec)


def allowed_networks() -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    # Read per call, not at import, so that a settings change (or a test's override) applies.
    return _allowed_networks(tuple(getattr(settings, "WEBHOOK_ALLOW_PRIVATE_DESTINATIONS", ())))


def refusal(address: Address) -> str | None:
    """Why `address` may not be called, or None when it may."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    if any(address in network for network in allowed_networks()):
        return None
    for kind in ("loopback", "private", "link_local", "multicast", "reserved", "unspecified"):
        if getattr(address, f"is_{kind}"):
            return f"{address} is a {kind.replace('_', '-')} address"
    if not address.is_global:
        return f"{address} is not a public address"
    return None


def parse(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an http(s) URL, or DestinationRefused(invalid_destination)."""
    if not isinstance(url, str) or not url or len(url) > 2048:
        raise DestinationRefused("the URL must be 1 to 2048 characters", code="invalid_destination")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise DestinationRefused(f"the URL is not valid: {exc}", code="invalid_destination") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise DestinationRefused("the URL must start with http:// or https://", code="invalid_destination")
    host = parts.hostname
    if not host:
        raise DestinationRefused("the URL names no host", code="invalid_destination")
    return scheme, host, port or DEFAULT_PORTS[scheme]


def resolve(host: str, port: int) -> list[Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise DestinationRefused(f"the host {host!r} does not resolve", code="invalid_destination") from None
    seen: list[Address] = []
    for info in infos:
        # A scoped IPv6 address comes back as "fe80::1%eth0"; the scope is not part of the check.
        address = ipaddress.ip_address(info[4][0].split("%", 1)[0])
        if address not in seen:
            seen.append(address)
    if not seen:
        raise DestinationRefused(f"the host {host!r} does not resolve", code="invalid_destination")
    return seen


def check(url: str) -> Destination:
    """The destination of `url` with every address it resolves to, once each is checked.
    One refused address refuses the URL: a name that also points inward is not trusted."""
    scheme, host, port = parse(url)
    addresses = resolve(host, port)
    for address in addresses:
        reason = refusal(address)
        if reason is not None:
            raise DestinationRefused(f"the host {host!r} is not allowed: {reason}")
    return Destination(scheme=scheme, host=host, port=port, addresses=tuple(str(a) for a in addresses))
