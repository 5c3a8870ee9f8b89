"""Which hosts the enclave's outgoing HTTP may reach: public addresses only, unless the operator allows more.

Requesters choose the URLs that ``http.json`` and ``llm.chat`` fetch, and the enclave signs what it read. Left
alone, a requester could point it at ``http://169.254.169.254/`` (cloud metadata), ``http://127.0.0.1:<port>/``
(the coprocessor's own API, the dstack guest agent) or any RFC 1918 host and get the answer published
on-chain. So every outgoing connection goes through :class:`GuardedBackend`, which

1. resolves the host itself (``getaddrinfo``),
2. refuses the whole connection if *any* resolved address is not public (:func:`refusal_reason`) and not in
   the operator's allow list (:class:`EgressPolicy`), and
3. connects to the address it checked, so a second DNS answer (DNS rebinding) cannot swap in another one.

The check runs when a connection is opened, so every redirect hop is checked the same way. TLS still uses the
URL's host name for SNI and certificate checks (httpcore passes it to ``start_tls``, not the address).

:func:`guarded_client` is the ``httpx.Client`` the jobs use. A refusal raises :class:`EgressRefusedError`,
whose ``reason`` names the kind of address but never the address or the URL (the input may have been sent
encrypted); the jobs turn it into a JOB_FAILED result.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import ssl
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

RFC1918 = tuple(ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))
UNIQUE_LOCAL = ipaddress.IPv6Network("fc00::/7")
SHARED_ADDRESS_SPACE = ipaddress.IPv4Network("100.64.0.0/10")
"""RFC 6598, carrier-grade NAT: not global, and often where a cloud's internal services live."""
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
"""RFC 6052 well-known prefix: the last 32 bits are an IPv4 address a NAT64 gateway would reach."""


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address a packet to ``address`` really goes to (IPv4-mapped, NAT64 or 6to4), else None."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def refusal_reason(address: IPAddress) -> str | None:
    """Why the enclave must not contact ``address`` (a short kind such as ``"loopback"``), or None if public.

    Refused: unspecified, loopback, link-local (169.254.0.0/16 with the cloud metadata service, fe80::/10),
    multicast, private (RFC 1918, fc00::/7), shared (100.64.0.0/10), site-local, reserved, and anything else
    that is not globally routable (documentation, benchmarking, 0.0.0.0/8, ...). An IPv6 address that carries
    an IPv4 one (IPv4-mapped ``::ffff:a.b.c.d``, NAT64 ``64:ff9b::/96``, 6to4 ``2002::/16``) is judged by that
    IPv4 address.
    """
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            inner = refusal_reason(embedded)
            return None if inner is None else f"{inner} (IPv4 in IPv6)"
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if any(address in net for net in RFC1918) or address in UNIQUE_LOCAL:
        return "private"
    if address in SHARED_ADDRESS_SPACE:
        return "shared (carrier-grade NAT)"
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return "site-local"
    if address.is_reserved:
        return "reserved"
    if address.is_private or not address.is_global:
        return "special-purpose"
    return None


def parse_networks(entries: Iterable[str]) -> tuple[IPNetwork, ...]:
    """``"127.0.0.1"``, ``"10.1.0.0/16"``, ``"::1"`` ... as networks; ``ValueError`` naming a bad entry.

    Host names are refused: the guard checks addresses, and a name's addresses can change under it.
    """
    networks = []
    for entry in entries:
        text = entry.strip()
        try:
            networks.append(ipaddress.ip_network(text, strict=True))
        except ValueError as exc:
            raise ValueError(
                f"{text!r} is not an IP address or CIDR network (host names are not accepted; "
                f"give the address, e.g. 127.0.0.1 or 10.1.0.0/16): {exc}"
            ) from None
    return tuple(networks)


class EgressRefusedError(Exception):
    """A connection the policy does not allow; ``reason`` is safe to publish (no address, no URL)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _normalized(address: IPAddress) -> IPAddress:
    """IPv4-mapped IPv6 as the IPv4 address it is; everything else unchanged."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@dataclass(frozen=True, slots=True)
class EgressPolicy:
    """Public addresses, plus the networks in ``allow`` (the operator's ``egress_allow``)."""

    allow: tuple[IPNetwork, ...] = ()

    @classmethod
    def allowing(cls, *entries: str) -> EgressPolicy:
        """A policy that also allows these addresses/networks (see :func:`parse_networks`)."""
        return cls(parse_networks(entries))

    def refused_kind(self, address: IPAddress) -> str | None:
        """None if the enclave may connect to ``address``; otherwise its kind (:func:`refusal_reason`)."""
        address = _normalized(address)
        if any(address.version == net.version and address in net for net in self.allow):
            return None
        return refusal_reason(address)

    def check(self, address: IPAddress) -> None:
        """Raise :class:`EgressRefusedError` unless the enclave may connect to ``address``."""
        kind = self.refused_kind(address)
        if kind is not None:
            raise EgressRefusedError(
                f"destination is a {kind} address; the enclave does not fetch private networks "
                "(the operator's egress_allow lists exceptions)"
            )


Resolver = typing.Callable[[str, int], list[IPAddress]]
"""``resolve(host, port)``: every address the host has, in the order to try them."""


def system_resolver(host: str, port: int) -> list[IPAddress]:
    """The addresses ``getaddrinfo`` gives for ``host`` (an IP literal resolves to itself), without duplicates."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    out: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in out:
            out.append(address)
    return out


class GuardedBackend(httpcore.NetworkBackend):
    """An httpcore network backend that connects only where ``policy`` allows, to the address it checked."""

    def __init__(self, policy: EgressPolicy, resolver: Resolver = system_resolver) -> None:
        self.policy = policy
        self.resolver = resolver
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        """Resolve ``host``, refuse if any address is not allowed, else connect to the first that answers."""
        try:
            addresses = self.resolver(host, port)
        except (OSError, UnicodeError) as exc:
            raise httpcore.ConnectError(f"could not resolve the host ({type(exc).__name__})") from exc
        if not addresses:
            raise httpcore.ConnectError("the host has no addresses")
        for address in addresses:  # a name with one private address among public ones is refused whole
            self.policy.check(address)
        last: Exception | None = None
        for address in addresses:
            try:
                return self._inner.connect_tcp(str(address), port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        """Never: a Unix socket is a local service by definition."""
        raise EgressRefusedError("destination is a local socket; the enclave does not fetch private networks")

    def sleep(self, seconds: float) -> None:
        """Delegate to the standard backend (used between connect retries)."""
        self._inner.sleep(seconds)


class GuardedTransport(httpx.HTTPTransport):
    """``httpx.HTTPTransport`` whose connection pool opens connections through :class:`GuardedBackend`.

    httpx has no public way to pass a network backend, so the pool it builds is replaced by one with the same
    TLS context and the guarded backend (HTTP/1.1, no proxy: proxies would connect on our behalf unchecked).
    """

    def __init__(self, policy: EgressPolicy, resolver: Resolver = system_resolver) -> None:
        ssl_context = _default_ssl_context()
        super().__init__(verify=ssl_context, trust_env=False)
        self._pool = httpcore.ConnectionPool(ssl_context=ssl_context, network_backend=GuardedBackend(policy, resolver))


@functools.cache
def _default_ssl_context() -> ssl.SSLContext:
    """httpx's default verifying TLS context (certifi's CA bundle), built once and shared by every client."""
    return httpx.create_ssl_context(trust_env=False)


def guarded_client(policy: EgressPolicy, *, resolver: Resolver = system_resolver, **kwargs: Any) -> httpx.Client:
    """An ``httpx.Client`` (``kwargs`` as for it) whose every connection, redirects included, obeys ``policy``.

    Environment proxy settings are ignored (``trust_env=False``) and no ``transport`` may be given.
    """
    if "transport" in kwargs or "mounts" in kwargs or "proxy" in kwargs:
        raise TypeError("guarded_client builds its own transport; transport, mounts and proxy are not accepted")
    return httpx.Client(transport=GuardedTransport(policy, resolver), trust_env=False, **kwargs)
