"""The HTTP client of every upstream call (product images, the recommendations model):
proxies from the environment ignored, redirects never followed, and the address of each
connection checked as it is made.

`KAIROS_UPSTREAM_HOSTS` says which names may be asked; `Reach` says which addresses they
may lead to. A name is resolved once per connection and the connection goes to an
address of that very answer, checked first: a name whose DNS answer changes between a
check and the connect (DNS rebinding) cannot lead to loopback, a private network,
link-local (the cloud metadata service at 169.254.169.254), CGNAT or any other range that
is not public, IPv4 inside IPv6 included. The names of `KAIROS_UPSTREAM_PRIVATE_HOSTS`
(an internal model) may resolve to such addresses; an entry written as an IP address is
reached as written.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterable, Mapping
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from app.settings import ConfigError

Address = IPv4Address | IPv6Address

NAT64 = ip_network("64:ff9b::/96")  # the well-known prefix: an IPv4 address inside


def public(address: Address) -> bool:
    """True for an address of the public internet, looking through the forms that carry
    an IPv4 address inside IPv6 (mapped, 6to4, NAT64)."""
    if isinstance(address, IPv6Address):
        inner = address.ipv4_mapped or address.sixtofour
        if inner is None and address in NAT64:
            inner = IPv4Address(int(address) & 0xFFFFFFFF)
        if inner is not None:
            address = inner
    return address.is_global and not address.is_multicast


def _host(entry: str) -> str:
    """The host of a 'host' or 'host:port' entry ('[::1]:8080' for IPv6)."""
    return (urlsplit(f"//{entry}").hostname or entry).lower()


def _literal(host: str) -> Address | None:
    try:
        return ip_address(host.strip("[]"))
    except ValueError:
        return None


class Reach:
    """Where upstream connections may go: `upstream_hosts` as KAIROS_UPSTREAM_HOSTS lists
    them, `private_hosts` those of them that may resolve to addresses that are not
    public. `ConfigError` for a private host that is not an upstream host."""

    def __init__(self, upstream_hosts: Iterable[str], private_hosts: Iterable[str] = ()) -> None:
        hosts = frozenset(_host(entry) for entry in upstream_hosts)
        self.private = frozenset(_host(entry) for entry in private_hosts)
        strays = sorted(self.private - hosts)
        if strays:
            raise ConfigError(
                f"KAIROS_UPSTREAM_PRIVATE_HOSTS: {', '.join(strays)} must be in "
                "KAIROS_UPSTREAM_HOSTS too"
            )
        self.literals = frozenset(a for a in map(_literal, hosts) if a is not None)

    def check(self, host: str, addresses: Iterable[Address]) -> None:
        """`httpcore.ConnectError` unless every address `host` resolved to may be reached."""
        if host.lower() in self.private:
            return
        for address in addresses:
            if not public(address) and address not in self.literals:
                raise httpcore.ConnectError(f"{host} is at {address}, not a public address")


class CheckedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's own backend, connecting only to addresses `reach` allows: the name is
    resolved here, and the connection made to the checked address itself (TLS still
    verifies the certificate for the name)."""

    def __init__(self, reach: Reach) -> None:
        self.reach = reach
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self._resolve(host, port, timeout)
        self.reach.check(host, addresses)
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("upstreams are reached over TCP only")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)

    @staticmethod
    async def _resolve(host: str, port: int, within_s: float | None) -> list[Address]:
        literal = _literal(host)
        if literal is not None:
            return [literal]
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(within_s):
                found = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} took too long") from None
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from None
        addresses: list[Address] = []
        for *_, sockaddr in found:
            address = ip_address(str(sockaddr[0]).split("%", 1)[0])
            if address not in addresses:
                addresses.append(address)
        if not addresses:
            raise httpcore.ConnectError(f"{host} has no address")
        return addresses


class CheckedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over `CheckedBackend`, with no proxy."""

    def __init__(self, reach: Reach, limits: httpx.Limits) -> None:
        tls = httpx.create_ssl_context(trust_env=False)  # ~20 ms: made once
        super().__init__(verify=tls, trust_env=False, limits=limits)
        # httpx takes no network backend of its own: its pool is made again, with ours.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=tls,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=CheckedBackend(reach),
        )


def upstream_client(
    reach: Reach, *, timeout: float, headers: Mapping[str, str], max_connections: int
) -> httpx.AsyncClient:
    """A client for upstreams: checked addresses, no redirects (one could leave the
    allowed hosts), no proxy, `.netrc` or certificates from the environment."""
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections // 2
    )
    return httpx.AsyncClient(
        transport=CheckedTransport(reach, limits),
        follow_redirects=False,
        timeout=timeout,
        trust_env=False,
        headers=dict(headers),
    )
