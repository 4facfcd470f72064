"""The client's address: the peer, or what a trusted proxy says the client was.

``X-Forwarded-For`` is read only when the peer itself is a trusted proxy, and then from
the right: each hop appends the address it saw, so the rightmost entry that is not a
trusted proxy is the first one no proxy of ours vouches for. Entries to its left are
whatever the client sent and are never believed. Arena's own HAProxy replaces the header
with the address it accepted the connection from (``serve.ingress``), so clients behind
it are told apart instead of all looking like 127.0.0.1.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from starlette.requests import HTTPConnection

__all__ = ["TrustedProxies", "client_address"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_MAX_HOPS = 20  # more entries than this are not a real chain; the header is ignored past it


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


class TrustedProxies:
    """The networks whose forwarding headers Arena believes."""

    def __init__(self, networks: Iterable[str] = ()) -> None:
        self.networks: tuple[Network, ...] = tuple(ipaddress.ip_network(n.strip(), strict=False) for n in networks)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, address: str | None) -> bool:
        ip = _ip(address) if address else None
        return ip is not None and any(ip in network for network in self.networks)

    def client(self, peer: str | None, forwarded_for: Sequence[str]) -> str:
        """The client's address given the connection's peer and every X-Forwarded-For header."""
        peer = peer or "unknown"
        if not self.trusts(peer):
            return peer
        hops = [hop.strip() for header in forwarded_for for hop in header.split(",") if hop.strip()]
        if not hops or len(hops) > _MAX_HOPS:
            return peer
        for hop in reversed(hops):
            ip = _ip(hop)
            if ip is None:  # garbage in the chain: stop believing it here
                return peer
            if not self.trusts(str(ip)):
                return str(ip)
        return str(_ip(hops[0]))  # every hop is ours: the client is one of our own machines


def client_address(connection: HTTPConnection) -> str:
    """The address a request (or a WebSocket) comes from, as limits and the audit log count it."""
    peer = connection.client.host if connection.client else None
    arena = getattr(connection.app.state, "arena", None)
    trusted: TrustedProxies = arena.trusted_proxies if arena is not None else TrustedProxies()
    return trusted.client(peer, connection.headers.getlist("x-forwarded-for"))
