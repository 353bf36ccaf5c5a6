"""The CLI's parsing and rendering, without a cluster."""

from __future__ import annotations

import datetime as dt
import io
import json

import pytest
from rich.console import Console

from cloudgrpc_admin import render
from cloudgrpc_admin.cli import build_parser
from cloudgrpc_admin.keys import resolve_admin_key
from cloudgrpc_admin.units import ago, human_size, parse_size, parse_when
from cloudgrpc_proto import cloud_storage_pb2 as pb
from cloudgrpc_proto.errors import PermissionDenied

GB = 1024**3
MB = 1024**2


@pytest.mark.parametrize("text,expected", [
    ("5GB", 5 * GB), ("5 GB", 5 * GB), ("5gib", 5 * GB), ("5G", 5 * GB), ("500MB", 500 * MB),
    ("1.5GB", int(1.5 * GB)), ("1048576", 1048576), ("10b", 10), ("2TB", 2 * 1024 * GB),
])
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "GB", "5XB", "-5GB", "5 i", "five"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


def test_human_size() -> None:
    assert human_size(0) == "0 B"
    assert human_size(512) == "512 B"
    assert human_size(1536) == "1.5 KB"
    assert human_size(250 * MB) == "250.0 MB"
    assert human_size(2 * GB) == "2.00 GB"


def test_parse_when() -> None:
    now = dt.datetime(2026, 1, 31, 12, 0, tzinfo=dt.UTC)
    assert parse_when("", now) == 0
    assert parse_when("7d", now) == int(now.timestamp()) - 7 * 86400
    assert parse_when("24h", now) == int(now.timestamp()) - 86400
    assert parse_when("2026-01-30", now) == int(dt.datetime(2026, 1, 30, tzinfo=dt.UTC)
                                                .timestamp())
    assert parse_when("1767168000", now) == 1767168000
    with pytest.raises(ValueError):
        parse_when("yesterday", now)


def test_ago() -> None:
    now = dt.datetime(2026, 1, 31, 12, 0, tzinfo=dt.UTC)
    assert ago("2026-01-31T11:59:55Z", now) == "5s ago"
    assert ago("2026-01-31T10:00:00Z", now) == "2h ago"
    assert ago("", now) == "never"


def _render(*views: object) -> list[str]:
    buf = io.StringIO()
    console = Console(file=buf, width=80, force_terminal=False, color_system=None)
    for view in views:
        console.print(view)
    return buf.getvalue().splitlines()


def test_tables_fit_80_columns_and_have_no_colour() -> None:
    users = [pb.UserInfo(user_id=f"u{i}", email=f"a-very-long-address-number-{i}@example.com",
                         full_name="Ada Augusta King, Countess of Lovelace",
                         storage_allocated=5 * GB, storage_used=3 * GB + i, file_count=12345,
                         last_login="2026-01-31T11:59:55Z", is_active=True) for i in range(3)]
    nodes = [pb.NodeInfo(name="storage-node-with-a-long-name", host="203.0.113.200",
                         port=65535, capacity_bytes=1024 * GB, used_bytes=999 * GB,
                         chunk_count=123456789, health_score=87.5, status="draining",
                         online=True, last_heartbeat="2026-01-31T11:59:55Z",
                         logical_bytes=2500 * GB)]
    details = pb.GetUserDetailsResponse(user=users[0], payments=[pb.PaymentRecord(
        tier_name="premium-plus", provider="orange_money", amount_xaf=250000,
        status="completed", storage_bytes=2 * GB, created_at="2026-01-31T11:59:55Z")])
    analytics = pb.PaymentAnalyticsResponse(total_payments=3, by_tier=[pb.PaymentBreakdown(
        key="premium", count=123456, completed=100000, failed=20000, pending=3456,
        revenue_xaf=1_000_000_000, success_rate=83.33, storage_sold_bytes=200 * 1024 * GB)])
    status = pb.SystemStatusResponse(global_capacity_bytes=6 * 1024 * GB, total_nodes=3,
                                     online_nodes=2, system_health=66.7,
                                     stored_bytes=999 * GB, logical_bytes=2500 * GB)
    lines = _render(render.users_view(users), render.nodes_view(nodes),
                    *render.user_view(details), *render.payments_view(analytics, "all time"),
                    render.status_view(status))
    assert lines
    too_wide = [line for line in lines if len(line) > 80]
    assert not too_wide, too_wide
    text = "\n".join(lines)
    assert "\x1b[" not in text
    assert "draining" in text and "1,000,000,000" in text
    assert "60% saved" in text  # the status's compression line
    node_row = next(line for line in lines if "draining" in line)
    assert "60%" in node_row  # the node's SAVED column


def test_compression_line_says_what_was_saved() -> None:
    assert render.compression_line(4 * GB, GB) == "4.00 GB of chunks in 1.00 GB on disk (75% saved)"
    assert render.compression_line(GB, GB) == "1.00 GB on disk, nothing saved"
    assert render.compression_line(0, 0) == "0 B on disk, nothing saved"
    assert render.saved_fraction(0, 5) == 0.0  # an old node that reports no logical size


def test_json_keeps_numbers_and_every_field() -> None:
    st = pb.SystemStatusResponse(success=True, global_capacity_bytes=6 * GB)
    data = render.to_dict(st)
    assert data["global_capacity_bytes"] == 6 * GB and data["total_files"] == 0
    ev = pb.SystemEvent(event_type="upload", details=json.dumps({"size": 5}), event_id=7)
    assert render.event_dict(ev)["details"] == {"size": 5}
    listed = render.to_dict(pb.ListUsersResponse(users=[pb.UserInfo(email="a@b.c")]))
    assert listed["users"][0]["email"] == "a@b.c"


def test_admin_key_sources(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("ADMIN_KEY", raising=False)
    monkeypatch.setenv("CLOUDGRPC_ENV_FILE", str(tmp_path / "no.env"))
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    with pytest.raises(PermissionDenied) as err:
        resolve_admin_key(None)
    assert err.value.exit_code == 6
    (tmp_path / "admin_key").write_text("from-file\n")
    assert resolve_admin_key(None) == "from-file"
    monkeypatch.setenv("ADMIN_KEY", "from-env")
    assert resolve_admin_key(None) == "from-env"
    assert resolve_admin_key("explicit") == "explicit"


def test_actions_are_exclusive() -> None:
    with pytest.raises(SystemExit) as err:
        build_parser().parse_args(["--status", "--users"])
    assert err.value.code == 2
