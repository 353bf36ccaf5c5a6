"""The address of the client behind a call, through a trusted load balancer.

Behind HAProxy every call comes from HAProxy's address, so the per-address fences (code
requests and checks per address and hour, calls of one address waiting for their request)
would count every client as one, and the devices list would show the balancer's address.
HAProxy's ``option forwardfor`` appends the address it accepted the connection from to
``x-forwarded-for``; the gateway believes that header only from the proxies named in
``TRUSTED_PROXIES`` (addresses or networks, comma-separated; none by default), and only its
last entry, the one that trusted proxy wrote: anything earlier came from the client.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable

import grpc

from .address_limits import peer_address

log = logging.getLogger(__name__)

FORWARDED_HEADER = "x-forwarded-for"
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(spec: str) -> tuple[Network, ...]:
    """``"10.0.0.5, 10.1.0.0/16"`` -> networks (ValueError naming a bad entry)."""
    networks = []
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"not an address or network: {item!r}") from None
    return tuple(networks)


class ClientAddresses:
    """Finds a call's client address, believing ``x-forwarded-for`` only from ``trusted``."""

    def __init__(self, trusted: Iterable[Network] = ()) -> None:
        self.trusted = tuple(trusted)

    def _is_trusted(self, address: str) -> bool:
        if not self.trusted:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.trusted if net.version == ip.version)

    def of(self, context: grpc.ServicerContext) -> str:
        """The client's address (no port): the peer's, or the one a trusted proxy forwarded."""
        peer = peer_address(context.peer())
        if not self._is_trusted(peer):
            return peer
        forwarded = ""
        for key, value in context.invocation_metadata() or ():
            if key == FORWARDED_HEADER:
                forwarded = str(value)  # the last header: the one our proxy added
        last = forwarded.rsplit(",", 1)[-1].strip()[:64]
        try:
            return str(ipaddress.ip_address(last))
        except ValueError:
            return peer  # a trusted proxy that forwarded nothing usable: itself
