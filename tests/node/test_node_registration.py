"""The registrar against a fake gateway NodeService (real gRPC, in-process)."""

from __future__ import annotations

from dataclasses import dataclass

from cloudgrpc_node.registration import NodeIdentity, Registrar
from tests.cluster import free_port
from tests.node.node_testkit import FakeGateway, wait_for


@dataclass
class Usage:
    used_bytes: int = 0
    chunk_count: int = 0
    logical_bytes: int = 0


IDENTITY = NodeIdentity(
    name="n1", host="127.0.0.1", port=41234, capacity_bytes=10**9, cpu_cores=2, cluster_secret="k"
)


def make(address: str, usage: Usage | None = None, interval: float = 0.1) -> Registrar:
    return Registrar(
        IDENTITY, usage or Usage(), address, heartbeat_interval_s=interval, call_timeout_s=2.0
    )



def test_registers_heartbeats_with_usage_and_deregisters(start_gateway) -> None:
    gw = start_gateway()
    usage = Usage(used_bytes=123, chunk_count=4)
    seen: list[str] = []
    reg = Registrar(
        IDENTITY, usage, gw.address, heartbeat_interval_s=0.1, on_registered=seen.append
    )
    reg.start()
    try:
        assert reg.wait_registered(5)
        assert reg.node_id == "node-id-1" and seen == ["node-id-1"]
        first = gw.fake.registers[0]
        assert (first.name, first.host, first.port) == ("n1", "127.0.0.1", 41234)
        assert (first.capacity_bytes, first.used_bytes, first.chunk_count) == (10**9, 123, 4)
        assert first.cpu_cores == 2 and first.cluster_secret == "k"
        usage.used_bytes, usage.chunk_count, usage.logical_bytes = 456, 5, 900
        wait_for(lambda: any(h.used_bytes == 456 for h in gw.fake.heartbeats), what="heartbeat")
        hb = gw.fake.heartbeats[-1]
        assert hb.node_id == "node-id-1" and hb.chunk_count == 5 and hb.cluster_secret == "k"
        assert hb.logical_bytes == 900  # before compression, beside used_bytes on disk
        assert hb.capacity_bytes == 10**9
    finally:
        reg.stop()
    assert [d.node_id for d in gw.fake.deregisters] == ["node-id-1"]
    assert gw.fake.deregisters[0].cluster_secret == "k"


def test_gateway_interval_overrides_default(start_gateway) -> None:
    gw = start_gateway(FakeGateway(interval_s=7))
    reg = make(gw.address, interval=0.1)
    reg.start()
    try:
        assert reg.wait_registered(5)
        assert reg.heartbeat_interval_s == 7.0
    finally:
        reg.stop()


def test_retries_until_the_gateway_comes_up(start_gateway) -> None:
    port = free_port()
    reg = make(f"127.0.0.1:{port}")
    reg.start()
    try:
        assert not reg.wait_registered(1.0)
        gw = start_gateway(port=port)
        assert reg.wait_registered(10), "registrar never retried"
        assert len(gw.fake.registers) == 1
    finally:
        reg.stop()


def test_refused_registration_is_retried(start_gateway) -> None:
    fake = FakeGateway(refuse=True)
    gw = start_gateway(fake)
    reg = make(gw.address)
    reg.start()
    try:
        wait_for(lambda: len(fake.registers) >= 2, what="a second attempt")
        assert reg.node_id is None
        fake.refuse = False
        assert reg.wait_registered(10)
    finally:
        reg.stop()


def test_reregisters_when_asked(start_gateway) -> None:
    fake = FakeGateway(forget_after_heartbeats=2)
    gw = start_gateway(fake)
    reg = make(gw.address)
    reg.start()
    try:
        wait_for(lambda: reg.node_id == "node-id-2", what="re-registration")
        wait_for(lambda: fake.heartbeats[-1].node_id == "node-id-2", what="heartbeat as new id")
    finally:
        reg.stop()


def test_reregisters_on_not_found(start_gateway) -> None:
    fake = FakeGateway(not_found_after_heartbeats=1)
    gw = start_gateway(fake)
    reg = make(gw.address)
    reg.start()
    try:
        wait_for(lambda: reg.node_id == "node-id-2", what="re-registration")
    finally:
        reg.stop()


def test_stop_with_gateway_down_is_quick() -> None:
    reg = make(f"127.0.0.1:{free_port()}")
    reg.start()
    reg.stop()  # never registered: nothing to deregister, must not hang
    assert reg.node_id is None
