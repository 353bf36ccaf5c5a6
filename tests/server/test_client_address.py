"""Whose address a call has: the peer's, or the one a trusted load balancer forwarded.

The same through real HAProxy (a client's own header dropped, HAProxy's believed) is in
test_gateways_behind_haproxy.py; here the rules, with a call's two inputs.
"""

from __future__ import annotations

import pytest

from cloudgrpc_proto.environment import ConfigError
from cloudgrpc_server.client_address import ClientAddresses, parse_networks
from cloudgrpc_server.config import load_settings


class Call:
    """What a gRPC servicer context tells about its caller: peer and metadata."""

    def __init__(self, peer: str, *headers: tuple[str, str]) -> None:
        self._peer, self._headers = peer, headers

    def peer(self) -> str:
        return self._peer

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._headers


PROXIES = ClientAddresses(parse_networks("10.0.0.5, fd00::/64"))


def test_the_header_is_believed_only_from_a_trusted_proxy() -> None:
    spoof = ("x-forwarded-for", "203.0.113.9")
    assert PROXIES.of(Call("ipv4:198.51.100.1:4000", spoof)) == "198.51.100.1"
    assert PROXIES.of(Call("ipv4:10.0.0.5:4000", spoof)) == "203.0.113.9"
    assert PROXIES.of(Call("ipv6:[fd00::7]:4000", spoof)) == "203.0.113.9"
    assert ClientAddresses().of(Call("ipv4:10.0.0.5:4000", spoof)) == "10.0.0.5"


def test_only_the_entry_the_proxy_wrote_counts() -> None:
    # A client's own entries come first; the proxy's header (or entry) is the last.
    call = Call("ipv4:10.0.0.5:1", ("x-forwarded-for", "1.1.1.1, 2.2.2.2"),
                ("x-forwarded-for", "192.0.2.44"))
    assert PROXIES.of(call) == "192.0.2.44"
    assert PROXIES.of(Call("ipv4:10.0.0.5:1", ("x-forwarded-for", "1.1.1.1, 192.0.2.45"))) \
        == "192.0.2.45"


def test_nothing_usable_forwarded_is_the_proxy_itself() -> None:
    assert PROXIES.of(Call("ipv4:10.0.0.5:1")) == "10.0.0.5"
    assert PROXIES.of(Call("ipv4:10.0.0.5:1", ("x-forwarded-for", "not-an-ip"))) == "10.0.0.5"


def test_a_bad_setting_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRUSTED_PROXIES", "10.0.0.5, haproxy.local")
    with pytest.raises(ConfigError, match="haproxy.local"):
        load_settings()
    monkeypatch.setenv("TRUSTED_PROXIES", "10.0.0.0/8")
    assert [str(n) for n in load_settings().trusted_proxies] == ["10.0.0.0/8"]
