"""The outbound network policy: every connection a tenant can cause is resolved, checked, then made to
the checked address.

What a tenant may reach:

- **Public addresses**, always.
- **Private networks** only where an operator allowed them *for that tenant*
  (``manage.py tenant_network_allow``), and only inside what ``FALCON_ALLOWED_PRIVATE_NETWORKS``
  permits platform-wide. A tenant without an allowance reaches public addresses only.
- **Never**, whatever is allowed: the platform's own services (the hosts and ports of
  ``DATABASE_URL``, ``CELERY_BROKER_URL``, ``CELERY_RESULT_BACKEND``, ``FALCON_CACHE_URL``,
  ``FALCON_BASE_URL`` and ``FALCON_PLATFORM_ADDRESSES``; on loopback, the same ports on every address of
  this machine), cloud metadata (169.254.0.0/16, fd00:ec2::254) and unspecified addresses (0.0.0.0, ::).

A host name is resolved once and every address it resolves to is checked (IPv4-mapped IPv6 unwrapped);
the caller connects to the checked address, so DNS rebinding between check and connect cannot redirect
it. Libraries that resolve names themselves (LiteLLM's provider SDKs) run inside ``pinned_resolution``:
every name they resolve in that thread goes through the same check, and they connect to what was
checked. Base URLs from the operator's environment are trusted and never pass through here.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings

from connectors.errors import Blocked

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Endpoint = tuple[IPAddress, int]

ALWAYS_REFUSED: tuple[tuple[IPNetwork, str], ...] = (
    (ipaddress.ip_network("169.254.0.0/16"), "a link-local address (cloud metadata lives there)"),
    (ipaddress.ip_network("fd00:ec2::254/128"), "the cloud metadata service"),
    (ipaddress.ip_network("fe80::/10"), "a link-local address"),
    (ipaddress.ip_network("0.0.0.0/8"), "an unspecified address (it means this machine)"),
    (ipaddress.ip_network("::/128"), "an unspecified address (it means this machine)"),
)
DEFAULT_PORTS = {"postgres": 5432, "postgresql": 5432, "redis": 6379, "rediss": 6379, "amqp": 5672}
DEFAULT_PORTS |= {"amqps": 5671, "http": 80, "https": 443, "mysql": 3306}

_real_getaddrinfo = socket.getaddrinfo
_system_getaddrinfo = _real_getaddrinfo  # the resolver the policy consults (tests stand in for DNS here)


def _unwrap(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _networks(cidrs: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


@lru_cache(maxsize=8)
def _ceiling(cidrs: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return _networks(cidrs)


def platform_ceiling() -> tuple[IPNetwork, ...]:
    """The private networks an operator may allow tenants at all (``FALCON_ALLOWED_PRIVATE_NETWORKS``)."""
    return _ceiling(tuple(settings.FALCON_ALLOWED_PRIVATE_NETWORKS))


def within_ceiling(network: IPNetwork) -> bool:
    return any(
        network.version == outer.version and network.subnet_of(outer)  # type: ignore[arg-type]
        for outer in platform_ceiling()
    )


# --- the platform's own services ------------------------------------------------------------------------


@dataclass(frozen=True)
class Service:
    name: str
    host: str
    port: int


def platform_services() -> list[Service]:
    """The services of this installation, from its own settings: never reachable by a tenant."""
    found: list[Service] = []
    database = settings.DATABASES.get("default", {})
    if database.get("HOST"):
        found.append(Service("database", str(database["HOST"]), int(database.get("PORT") or 5432)))
    urls = [
        ("message broker", getattr(settings, "CELERY_BROKER_URL", "")),
        ("result backend", getattr(settings, "CELERY_RESULT_BACKEND", "") or ""),
        ("cache", getattr(settings, "FALCON_CACHE_URL", "")),
        ("web server", getattr(settings, "FALCON_BASE_URL", "")),
        *(("platform service", url) for url in getattr(settings, "FALCON_PLATFORM_ADDRESSES", [])),
    ]
    for name, url in urls:
        parts = urlsplit(url if "://" in url else f"tcp://{url}")
        if parts.hostname:
            port = parts.port or DEFAULT_PORTS.get(parts.scheme.lower())
            if port:
                found.append(Service(name, parts.hostname, int(port)))
    return found


@lru_cache(maxsize=4)
def _platform_endpoints(services: tuple[Service, ...]) -> tuple[dict[Endpoint, str], dict[int, str]]:
    """(address, port) -> service name; and ports served on loopback, which any address of this machine
    reaches too (a server bound to 0.0.0.0 answers on the machine's LAN address as well)."""
    endpoints: dict[Endpoint, str] = {}
    local_ports: dict[int, str] = {}
    for service in services:
        try:
            infos = _system_getaddrinfo(service.host, service.port, type=socket.SOCK_STREAM)
        except OSError:
            continue
        for info in infos:
            address = _unwrap(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]))
            endpoints[(address, service.port)] = service.name
            if address.is_loopback or address.is_unspecified:
                local_ports[service.port] = service.name
    return endpoints, local_ports


def _is_this_machine(address: IPAddress) -> bool:
    """Whether ``address`` belongs to this machine: only a local address can be bound (no packet sent)."""
    if address.is_loopback:
        return True
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    with contextlib.suppress(OSError), socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((str(address), 0))
        return True
    return False


def platform_problem(address: IPAddress, port: int) -> str | None:
    endpoints, local_ports = _platform_endpoints(tuple(platform_services()))
    name = endpoints.get((address, port))
    if name is None and port in local_ports and _is_this_machine(address):
        name = local_ports[port]
    return f"the platform's own {name}" if name else None


# --- the policy -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NetPolicy:
    """What one tenant may reach: public addresses, plus its allowed private networks."""

    allowed: tuple[IPNetwork, ...] = field(default=())

    def problem(self, address: IPAddress, port: int) -> str | None:
        """Why ``address``:``port`` may not be reached, or None."""
        address = _unwrap(address)
        for network, why in ALWAYS_REFUSED:
            if address.version == network.version and address in network:
                return why
        platform = platform_problem(address, port)
        if platform:
            return platform
        if address.is_global and not (address.is_multicast or address.is_reserved):
            return None
        # Allowed for this tenant, and still inside what the platform permits today.
        if any(address in net for net in self.allowed) and any(address in net for net in platform_ceiling()):
            return None
        if address.is_loopback:
            return "a loopback address"
        if address.is_multicast:
            return "a multicast address"
        if address.is_reserved:
            return "a reserved address"
        return "a private address"

    def resolve(self, host: str, port: int) -> IPAddress:
        """The first address of ``host`` after checking every address it resolves to."""
        try:
            candidates = [ipaddress.ip_address(host.strip("[]"))]
        except ValueError:
            try:
                infos = _system_getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except socket.gaierror as exc:
                raise Blocked(f"cannot resolve {host!r}: {exc.strerror}") from exc
            candidates = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
        if not candidates:
            raise Blocked(f"{host!r} has no address")
        for address in candidates:
            problem = self.problem(address, port)
            if problem:
                raise Blocked(f"{host} resolves to {address}, {problem}; connectors may not reach it")
        return candidates[0]

    def check_url(self, url: str) -> IPAddress:
        """Resolves and checks an http(s) URL's host (a base URL on save, before any call)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise Blocked(f"only http(s) URLs are allowed, not {url!r}")
        return self.resolve(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))


PUBLIC_ONLY = NetPolicy()


# --- names resolved by libraries we do not control ------------------------------------------------------

_pins = threading.local()


def _guarded_getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
    policy: NetPolicy | None = getattr(_pins, "policy", None)
    if policy is None or host is None:
        return _real_getaddrinfo(host, port, *args, **kwargs)
    name = host.decode() if isinstance(host, bytes) else str(host)
    try:
        port_number = int(port) if port is not None else 0
    except (TypeError, ValueError):
        port_number = socket.getservbyname(str(port))
    try:
        address = policy.resolve(name, port_number)
    except Blocked as exc:
        raise OSError(f"refused by the network policy: {exc}") from exc
    return _real_getaddrinfo(str(address), port, *args, **kwargs)


@contextlib.contextmanager
def pinned_resolution(policy: NetPolicy) -> Iterator[None]:
    """Within the block, every name this thread resolves is checked by ``policy``, and the library
    connects to the checked address (one resolution: no rebinding between check and connect)."""
    previous = getattr(_pins, "policy", None)
    _pins.policy = policy
    try:
        yield
    finally:
        _pins.policy = previous


def install() -> None:
    """Routes ``socket.getaddrinfo`` through the policy for threads inside ``pinned_resolution``."""
    if socket.getaddrinfo is not _guarded_getaddrinfo:
        socket.getaddrinfo = _guarded_getaddrinfo
