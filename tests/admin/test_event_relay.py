"""Two gateways on one PostgreSQL: a monitor on either sees the events of both."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from cloudgrpc_proto import cloud_storage_pb2 as pb
from tests.admin.conftest import LiveCli, stream_events, wait_event
from tests.cluster import Cluster

pytestmark = pytest.mark.postgres


@pytest.fixture
def second_gateway(cluster: Cluster, tmp_path: Path) -> Iterator[Cluster]:
    """Another gateway (no nodes of its own) on the first one's database."""
    other = Cluster(tmp_path / "gateway-b", database_url=cluster.database_url, nodes=0)
    try:
        other.start_gateway()
        yield other
    finally:
        other.stop()


def _denied(gateway: Cluster, marker: str) -> None:
    try:
        gateway.admin.GetSystemStatus(pb.SystemStatusRequest(admin_key=marker), timeout=5)
    except Exception:  # noqa: BLE001 - refused on purpose: it makes an admin_denied event
        pass


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_two_gateways_deliver_events_to_one_monitor(cluster: Cluster,
                                                    second_gateway: Cluster) -> None:
    a, b = cluster, second_gateway
    _, on_a, _ = stream_events(a, history=-1)
    _, on_b, _ = stream_events(b, history=-1)
    _denied(a, "probe")
    wait_event(on_a, lambda e: e.event_type == "admin_denied")
    wait_event(on_b, lambda e: e.event_type == "admin_denied")  # A's event reached B

    # A user served by gateway B only; the monitor on A sees it all, within a second.
    user = b.sign_up("via-b@example.com", "Via B")
    wait_event(on_a, lambda e: e.event_type == "enrollment" and e.user_id == user.user_id)
    t0 = time.monotonic()
    user.upload(os.urandom(300 * 1024), name="through-b.bin")
    wait_event(on_a, lambda e: e.event_type == "upload" and "through-b.bin" in e.message,
               timeout=1.0)
    assert time.monotonic() - t0 < 1.5

    # Each event exactly once on each monitor, own events included.
    _denied(a, "last")
    _denied(b, "last")
    for received in (on_a, on_b):
        deadline = time.monotonic() + 5
        while sum(e.event_type == "admin_denied" for e in received) < 3 and \
                time.monotonic() < deadline:
            time.sleep(0.05)
    ids_a = [e.event_id for e in on_a]
    ids_b = [e.event_id for e in on_b]
    assert len(ids_a) == len(set(ids_a)) and len(ids_b) == len(set(ids_b))
    assert set(ids_a) == set(ids_b)
    with sa.create_engine(a.database_url).connect() as conn:
        stored = set(conn.execute(sa.text("SELECT id FROM events WHERE id >= :first"),
                                  {"first": min(ids_a)}).scalars())
    assert stored == set(ids_a)


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_relay_survives_a_lost_listen_connection(cluster: Cluster,
                                                 second_gateway: Cluster) -> None:
    a, b = cluster, second_gateway
    _, on_a, _ = stream_events(a, history=-1)
    cli = LiveCli(a, "--monitor", "--json", "--history", "0", "--type", "admin_denied")
    try:
        deadline = time.monotonic() + 15
        while not cli.lines and time.monotonic() < deadline:  # until the CLI is live
            _denied(b, "before")
            time.sleep(0.3)
        wait_event(on_a, lambda e: e.event_type == "admin_denied")
        cli.wait_for(lambda line: "admin_denied" in line, timeout=5)
        shown = len(cli.lines)
        # Cut every LISTEN connection to the database (as a restart or a network cut would).
        engine = sa.create_engine(a.database_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            cut = conn.execute(sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND query ILIKE 'LISTEN%'")).all()
        engine.dispose()
        assert len(cut) == 2
        # Events of B still reach the monitor on A (live after the reconnect, or caught up).
        _denied(b, "after")
        user = b.sign_up("after-cut@example.com")
        wait_event(on_a, lambda e: e.event_type == "enrollment" and e.user_id == user.user_id,
                   timeout=15)
        deadline = time.monotonic() + 15
        while len(cli.lines) <= shown and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(cli.lines) > shown, cli.errors
        ids = [e.event_id for e in on_a]
        assert len(ids) == len(set(ids))
    finally:
        cli.kill()
