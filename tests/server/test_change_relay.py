"""The change relay's NOTIFY payloads: under PostgreSQL's 8000 bytes, in order, lossless.

The cross-gateway behaviour itself (a change through one gateway on a stream of another)
is tested with real processes in test_gateways_behind_haproxy.py.
"""

from __future__ import annotations

from cloudgrpc_server.change_feed import Change, ChangeFeed
from cloudgrpc_server.change_relay import PAYLOAD_LIMIT, pack, unpack

LONGEST = "\U0001F600" * 63 + "abc"  # 255 bytes of UTF-8, the longest name allowed


def _change(i: int, name: str = "f.txt", user: str = "u1") -> Change:
    return Change("moved", user, f"entry-{i}", "parent-new", name, "parent-old",
                  name + ".old" if len(name) < 250 else name, False, False,
                  "2026-12-07T10:00:00Z", "origin-xyz")


def test_many_changes_are_packed_under_the_limit_in_order_and_lossless() -> None:
    changes = [_change(i, LONGEST if i % 3 == 0 else f"name-{i}") for i in range(400)]
    payloads = list(pack("gw-1", changes))
    assert len(payloads) > 1
    assert all(len(p.encode()) <= PAYLOAD_LIMIT < 8000 for p in payloads)
    back: list[Change] = []
    for payload in payloads:
        sender, got = unpack(payload)
        assert sender == "gw-1"
        back += got
    assert back == changes


def test_control_characters_in_names_still_fit() -> None:
    # The worst JSON escaping: every byte of both names becomes \\u00XX (6 bytes each).
    name = "\x01" * 255
    payloads = list(pack("gw", [_change(0, name)]))
    assert len(payloads) == 1 and len(payloads[0].encode()) <= PAYLOAD_LIMIT
    assert unpack(payloads[0])[1][0].name == name


def test_a_change_that_cannot_fit_travels_without_its_names() -> None:
    huge = _change(0, "x" * 9000)
    (payload,) = list(pack("gw", [huge]))
    (got,) = unpack(payload)[1]
    assert (got.entry_id, got.user_id, got.name, got.old_name) == ("entry-0", "u1", "", "")


def test_a_delivered_change_reaches_only_its_accounts_subscribers() -> None:
    feed = ChangeFeed()
    mine, other = feed.subscribe("u1"), feed.subscribe("u2")
    _, got = unpack(next(pack("gw-2", [_change(7)])))
    feed.deliver(got[0])
    assert mine.get(timeout=1.0) == got[0]
    assert other.get(timeout=0.1) is None


def test_ended_streams_are_told() -> None:
    feed = ChangeFeed()
    sub = feed.subscribe("u1")
    feed.end_streams()
    assert sub.ended
    feed.deliver(_change(1))
    assert sub.get(timeout=0.1) is None  # no longer subscribed
