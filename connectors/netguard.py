"""The network guard: connectors reach only public addresses, checked after resolution, every hop.

A host name is resolved once, every address is checked (loopback, private, link-local incl. cloud
metadata 169.254.169.254, CGNAT 100.64/10, multicast, reserved, IPv4-mapped IPv6 unwrapped), and the
connection goes to the checked address, so DNS rebinding between check and connect cannot redirect it.
Self-hosters may allow networks with ``FALCON_ALLOWED_PRIVATE_NETWORKS`` (CIDRs).
"""

from __future__ import annotations

import ipaddress
import socket
from functools import lru_cache

from django.conf import settings

from connectors.errors import Blocked

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@lru_cache(maxsize=8)
def _allowed(networks: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in networks)


def address_problem(address: IPAddress) -> str | None:
    """Why ``address`` may not be reached, or None."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if any(address in network for network in _allowed(tuple(settings.FALCON_ALLOWED_PRIVATE_NETWORKS))):
        return None
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address (cloud metadata lives there)"
    if address.is_multicast:
        return "a multicast address"
    if address.is_unspecified or address.is_reserved:
        return "a reserved address"
    if address.is_private or not address.is_global:
        return "a private address"
    return None


def resolve_checked(host: str, port: int) -> IPAddress:
    """The first address of ``host`` after checking every address it resolves to."""
    try:
        literal = ipaddress.ip_address(host.strip("[]"))
        candidates = [literal]
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise Blocked(f"cannot resolve {host!r}: {exc.strerror}") from exc
        candidates = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    if not candidates:
        raise Blocked(f"{host!r} has no address")
    for address in candidates:
        problem = address_problem(address)
        if problem:
            raise Blocked(f"{host} resolves to {address}, {problem}; connectors may not reach it")
    return candidates[0]
