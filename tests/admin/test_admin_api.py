"""AdminService through the API and the CLI, on a real cluster (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import time
import uuid

import grpc
import pytest
from sqlalchemy import func, select

from cloudgrpc_proto import cloud_storage_pb2 as pb
from cloudgrpc_server.models import Payment, Replica, StorageNode
from tests.admin.conftest import cli_json, db_session, run_cli, stream_events, wait_event
from tests.cluster import ADMIN_KEY, Cluster

MiB = 1024 * 1024
GiB = 1024 * MiB


def _chunks(data: bytes, size: int) -> set[str]:
    return {hashlib.sha256(data[i:i + size]).hexdigest() for i in range(0, len(data), size)}


def test_status_matches_what_was_uploaded(cluster: Cluster) -> None:
    ada = cluster.sign_up("ada@example.com", "Ada Lovelace")
    bob = cluster.sign_up("bob@example.com", "Bob")
    chunk = ada.storage().chunk_size
    big = os.urandom(chunk + chunk // 2)  # two chunks
    small = os.urandom(100 * 1024)
    ada.upload(big, name="big.bin")
    ada.upload(small, name="small.bin")
    bob.upload(big, name="same-bytes.bin")  # deduplicated: no new chunk
    chunks = _chunks(big, chunk) | _chunks(small, chunk)

    st = cluster.status()
    assert st.total_users == 2
    assert st.total_files == 3
    assert st.global_used_bytes == 2 * len(big) + len(small)
    assert st.total_chunks == len(chunks)
    assert st.global_allocated_bytes == 2 * ada.storage().allocated_bytes
    assert st.total_nodes == st.online_nodes == 3
    assert st.global_capacity_bytes == 3 * 2 * GiB
    assert st.under_replicated_chunks == 0 and st.system_health == 100.0
    assert st.replication_factor == 2

    # The operator's view says the same.
    data = cli_json(cluster, "--status")
    for field in ("total_users", "total_files", "global_used_bytes", "total_chunks",
                  "online_nodes", "global_capacity_bytes"):
        assert data[field] == getattr(st, field), field
    users = {u["email"]: u for u in cli_json(cluster, "--users")}
    assert users["ada@example.com"]["storage_used"] == len(big) + len(small)
    assert users["ada@example.com"]["file_count"] == 2
    assert users["bob@example.com"]["file_count"] == 1
    table = run_cli(cluster, "--status")
    assert table.returncode == 0, table.stderr
    assert "3 online / 3 total" in table.stdout and "100.0%" in table.stdout
    listing = run_cli(cluster, "--users")
    assert "ada@example.com" in listing.stdout and "Ada Lovelace" in listing.stdout
    assert all(len(line) <= 80 for line in listing.stdout.splitlines())
    details = cli_json(cluster, "--user", "ada@example.com")
    assert details["user"]["file_count"] == 2 and details["active_sessions"] >= 1


def test_wrong_admin_key_gets_nothing(cluster: Cluster) -> None:
    admin = cluster.admin
    for key in ("wrong-key", "", ADMIN_KEY + "x", ADMIN_KEY[:-1]):
        calls = [
            lambda k=key: admin.GetSystemStatus(pb.SystemStatusRequest(admin_key=k), timeout=10),
            lambda k=key: admin.ListAllUsers(pb.ListUsersRequest(admin_key=k), timeout=10),
            lambda k=key: admin.ListNodes(pb.ListNodesRequest(admin_key=k), timeout=10),
            lambda k=key: admin.GetUserDetails(pb.GetUserDetailsRequest(
                admin_key=k, email="x@example.com"), timeout=10),
            lambda k=key: admin.SetUserQuota(pb.SetUserQuotaRequest(
                admin_key=k, email="x@example.com", storage_bytes=1), timeout=10),
            lambda k=key: admin.UpsertTier(pb.UpsertTierRequest(
                admin_key=k, tier=pb.StorageTier(name="evil", storage_bytes=1, price_xaf=1)),
                timeout=10),
            lambda k=key: admin.GetPaymentAnalytics(pb.PaymentAnalyticsRequest(admin_key=k),
                                                    timeout=10),
            lambda k=key: admin.DrainNode(pb.DrainNodeRequest(admin_key=k, node_name="node1"),
                                          timeout=10),
        ]
        for call in calls:
            with pytest.raises(grpc.RpcError) as err:
                call()
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # The stream gives nothing, not even history.
    stream = admin.StreamSystemEvents(pb.StreamEventsRequest(admin_key="wrong", history=50),
                                      timeout=10)
    with pytest.raises(grpc.RpcError) as err:
        got = list(stream)
        assert not got
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # Nothing changed, and the attempts are on record.
    assert cluster.status().online_nodes == 3
    _, received, _ = stream_events(cluster, history=100, types=("admin_denied",))
    deadline = time.monotonic() + 5
    while len(received) < 4 * 8 + 1 and time.monotonic() < deadline:  # one per refused call
        time.sleep(0.05)
    assert len(received) == 4 * 8 + 1

    done = run_cli(cluster, "--users", "--admin-key", "wrong")
    assert done.returncode == 6
    assert done.stdout == "" and "admin key" in done.stderr
    done = run_cli(cluster, "--monitor", "--count", "1", ADMIN_KEY="nope")
    assert done.returncode == 6 and done.stdout == ""


def _tier(cluster: Cluster, name: str, size: int, price: int) -> pb.StorageTier:
    return cluster.admin.UpsertTier(pb.UpsertTierRequest(admin_key=ADMIN_KEY, tier=pb.StorageTier(
        name=name, display_name=name.title(), storage_bytes=size, price_xaf=price, active=True)),
        timeout=10).tier


def test_payment_analytics_add_up(cluster: Cluster) -> None:
    ada = cluster.sign_up("payer@example.com", "Payer")
    small = _tier(cluster, "t-small", 100 * MiB, 500)
    big = _tier(cluster, "t-big", GiB, 2000)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    script = [  # tier, provider, status, age in days
        (small, "mtn_momo", "completed", 1), (small, "mtn_momo", "completed", 2),
        (small, "orange_money", "failed", 1), (small, "mtn_momo", "pending", 0),
        (big, "orange_money", "completed", 3), (big, "mtn_momo", "failed", 1),
        (big, "orange_money", "processing", 0), (big, "orange_money", "completed", 10),
    ]
    with db_session(cluster) as s:
        for tier, provider, status, days in script:
            created = now - dt.timedelta(days=days, minutes=5)
            s.add(Payment(
                user_id=ada.user_id, tier_id=tier.tier_id, provider=provider,
                phone_number="237670000000", amount_xaf=tier.price_xaf,
                charged_xaf=tier.price_xaf, storage_bytes=tier.storage_bytes, status=status,
                external_reference=uuid.uuid4().hex, created_at=created, updated_at=created,
                completed_at=created if status == "completed" else None))

    a = cluster.admin.GetPaymentAnalytics(pb.PaymentAnalyticsRequest(admin_key=ADMIN_KEY),
                                          timeout=10)
    assert (a.total_payments, a.completed, a.failed, a.pending) == (8, 4, 2, 2)
    assert a.revenue_xaf == 2 * 500 + 2 * 2000
    assert a.success_rate == pytest.approx(100 * 4 / 6, abs=0.01)
    tiers = {b.key: b for b in a.by_tier}
    assert set(tiers) == {"t-small", "t-big"}
    assert (tiers["t-small"].count, tiers["t-small"].completed, tiers["t-small"].failed,
            tiers["t-small"].pending, tiers["t-small"].revenue_xaf) == (4, 2, 1, 1, 1000)
    assert tiers["t-small"].storage_sold_bytes == 200 * MiB
    assert (tiers["t-big"].count, tiers["t-big"].revenue_xaf) == (4, 4000)
    providers = {b.key: b for b in a.by_provider}
    assert (providers["mtn_momo"].count, providers["mtn_momo"].completed,
            providers["mtn_momo"].failed, providers["mtn_momo"].revenue_xaf) == (4, 2, 1, 1000)
    assert (providers["orange_money"].count, providers["orange_money"].revenue_xaf) == (4, 4000)
    assert providers["orange_money"].success_rate == pytest.approx(100 * 2 / 3, abs=0.01)
    for parts in (a.by_tier, a.by_provider):
        assert sum(b.count for b in parts) == a.total_payments
        assert sum(b.revenue_xaf for b in parts) == a.revenue_xaf
        assert sum(b.completed for b in parts) == a.completed
    assert a.by_tier[0].key == "t-big"  # highest revenue first

    # A period: the last week leaves out the payment of ten days ago.
    week = cli_json(cluster, "--payments", "--since", "7d")
    assert (week["total_payments"], week["completed"], week["revenue_xaf"]) == (7, 3, 3000)
    assert week["success_rate"] == pytest.approx(60.0)
    until = int((dt.datetime.now(dt.UTC) - dt.timedelta(days=7)).timestamp())
    old = cluster.admin.GetPaymentAnalytics(pb.PaymentAnalyticsRequest(
        admin_key=ADMIN_KEY, until=until), timeout=10)
    assert (old.total_payments, old.revenue_xaf) == (1, 2000)
    table = run_cli(cluster, "--payments")
    assert table.returncode == 0, table.stderr
    assert "5,000 XAF" in table.stdout and "t-small" in table.stdout
    assert "orange_money" in table.stdout

    # The user's details list the payments, newest first, with their tier's name.
    details = cluster.admin.GetUserDetails(pb.GetUserDetailsRequest(
        admin_key=ADMIN_KEY, email="PAYER@example.com"), timeout=10)
    assert len(details.payments) == 8
    assert {p.tier_name for p in details.payments} == {"t-small", "t-big"}
    assert details.payments[0].created_at >= details.payments[-1].created_at
    assert run_cli(cluster, "--payments", "--since", "last tuesday").returncode == 2


def test_quota_and_tiers(cluster: Cluster) -> None:
    ada = cluster.sign_up("quota@example.com", "Quota")
    done = run_cli(cluster, "--set-quota", "quota@example.com", "5GB")
    assert done.returncode == 0, done.stderr
    assert "5.00 GB" in done.stdout
    assert ada.storage().allocated_bytes == 5 * GiB
    assert cli_json(cluster, "--set-quota", "quota@example.com", "500MB")[
        "storage_allocated"] == 500 * MiB
    assert ada.storage().allocated_bytes == 500 * MiB
    assert run_cli(cluster, "--set-quota", "nobody@example.com", "1GB").returncode == 4
    assert run_cli(cluster, "--set-quota", "quota@example.com", "lots").returncode == 2
    assert run_cli(cluster, "--user", "nobody@example.com").returncode == 4

    made = cli_json(cluster, "--set-tier", "t-gold", "--storage", "3GB", "--price", "5000",
                    "--display-name", "Gold")
    assert made["message"] == "tier created"
    assert made["tier"]["storage_bytes"] == 3 * GiB and made["tier"]["active"]
    changed = cluster.admin.UpsertTier(pb.UpsertTierRequest(
        admin_key=ADMIN_KEY, tier=pb.StorageTier(name="T-Gold", price_xaf=4500, active=True)),
        timeout=10)
    assert changed.message == "tier updated"
    assert changed.tier.tier_id == made["tier"]["tier_id"]
    assert (changed.tier.price_xaf, changed.tier.storage_bytes) == (4500, 3 * GiB)
    assert changed.tier.display_name == "Gold"
    retired = cli_json(cluster, "--set-tier", "t-gold", "--inactive")
    assert not retired["tier"]["active"] and retired["tier"]["price_xaf"] == 4500
    # A new tier needs a size and a price.
    assert run_cli(cluster, "--set-tier", "t-empty").returncode == 2
    _, received, _ = stream_events(cluster, history=50, types=("tier_changed",
                                                                "quota_changed"))
    wait_event(received, lambda e: e.event_type == "tier_changed" and "t-gold" in e.message)
    wait_event(received, lambda e: e.event_type == "quota_changed" and e.user_id == ada.user_id)


def test_drain_node(sqlite_cluster: Cluster) -> None:
    cluster = sqlite_cluster
    ada = cluster.sign_up()
    ada.upload(os.urandom(200 * 1024), name="one-chunk.bin")
    with db_session(cluster) as s:
        held = dict(s.execute(select(StorageNode.name, func.count(Replica.chunk_sha256))
                              .outerjoin(Replica, Replica.node_id == StorageNode.id)
                              .group_by(StorageNode.name)).all())
    full = next(name for name, n in held.items() if n > 0)
    _, received, _ = stream_events(cluster)

    reply = cli_json(cluster, "--drain", full)
    assert "draining" in reply["message"]
    nodes = {n["name"]: n for n in cli_json(cluster, "--nodes")}
    assert nodes[full]["status"] == "draining" and nodes[full]["online"]
    wait_event(received, lambda e: e.event_type == "node_draining" and full in e.message)
    assert cluster.status().online_nodes == 3

    # Placement leaves a draining node alone.
    before = held[full]
    for _ in range(4):
        ada.upload(os.urandom(100 * 1024))
    with db_session(cluster) as s:
        node_id = s.scalar(select(StorageNode.id).where(StorageNode.name == full))
        now_held = s.scalar(select(func.count()).select_from(Replica).where(
            Replica.node_id == node_id))
    assert now_held == before

    # A node that holds nothing is drained at once.
    empty = "node4"
    cluster.start_node(empty)
    cluster.wait_nodes_online(4)
    reply = cluster.admin.DrainNode(pb.DrainNodeRequest(admin_key=ADMIN_KEY, node_name=empty),
                                    timeout=10)
    assert "drained" in reply.message
    nodes = {n.name: n for n in cluster.admin.ListNodes(pb.ListNodesRequest(
        admin_key=ADMIN_KEY), timeout=10).nodes}
    assert nodes[empty].status == "drained" and nodes[empty].health_score == 0
    wait_event(received, lambda e: e.event_type == "node_drained" and empty in e.message)
    assert cluster.status().total_nodes == 3
    with pytest.raises(grpc.RpcError) as err:
        cluster.admin.DrainNode(pb.DrainNodeRequest(admin_key=ADMIN_KEY, node_name="nope"),
                                timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert run_cli(cluster, "--drain", "nope").returncode == 4
    assert json.loads(run_cli(cluster, "--nodes", "--json").stdout)
