"""The traffic counts behind the admin status's speeds: several gateways add to one table.

Two meters with their own gateway ids stand for two gateways on one database (SQLite and
PostgreSQL): their flushes, also at the same time and for the same minute, must add up
exactly, a failed flush must keep its counts, and old minutes are pruned.
"""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa

from cloudgrpc_server.db import Database
from cloudgrpc_server.models import TrafficMinute
from cloudgrpc_server.traffic import KEEP_MINUTES, TrafficMeter, new_gateway_id


@pytest.fixture
def db(database_url: str):  # type: ignore[no-untyped-def]
    database = Database(database_url)
    database.migrate()
    yield database
    database.dispose()


def _rows(db: Database) -> dict[tuple[str, int], tuple[int, int]]:
    with db.read() as s:
        return {(r.gateway_id, r.minute): (r.bytes_in, r.bytes_out)
                for r in s.scalars(sa.select(TrafficMinute))}


def test_two_gateways_flushes_add_up(db: Database) -> None:
    now = time.time()
    minute = int(now // 60)
    one, two = TrafficMeter(db, gateway_id="gw-one"), TrafficMeter(db, gateway_id="gw-two")
    one.received(1000, now)
    one.sent(10, now)
    two.received(5, now)
    one.flush()
    two.flush()
    one.received(234, now)  # the same minute again: added to the row, not replacing it
    one.sent(1, now - 60)  # the minute before
    one.flush()
    assert _rows(db) == {("gw-one", minute): (1234, 10), ("gw-one", minute - 1): (0, 1),
                         ("gw-two", minute): (5, 0)}
    speeds = one.speeds(300, now)
    assert (speeds.bytes_in, speeds.bytes_out) == (1239, 11)
    assert 240 < speeds.window_s <= 300
    assert speeds.upload_bytes_per_s == pytest.approx(1239 / speeds.window_s)
    # a minute outside the window is not counted
    two.sent(99, now - 600)
    assert two.speeds(300, now).bytes_out == 11


def test_concurrent_flushes_of_two_gateways_lose_nothing(db: Database) -> None:
    # two gateways, and a second meter under the first one's id: its flushes race to
    # insert the same new rows, which the upsert must add, not drop or duplicate
    meters = [TrafficMeter(db, gateway_id=f"gw-{i % 2}") for i in range(3)]
    rounds, per_round = 20, 3
    barrier = threading.Barrier(len(meters))
    errors: list[BaseException] = []

    def run(meter: TrafficMeter) -> None:
        try:
            barrier.wait()
            for _ in range(rounds):
                for _ in range(per_round):
                    meter.received(7)
                    meter.sent(3)
                meter.flush()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(m,)) for m in meters]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    speeds = meters[0].speeds(300)
    assert (speeds.bytes_in, speeds.bytes_out) == (3 * rounds * per_round * 7,
                                                   3 * rounds * per_round * 3)
    assert {gw for gw, _ in _rows(db)} == {"gw-0", "gw-1"}


def test_a_failed_flush_keeps_its_counts_and_old_rows_are_pruned(db: Database) -> None:
    now = time.time()
    meter = TrafficMeter(db, gateway_id=new_gateway_id())
    assert len(meter.gateway_id) <= 64 and meter.gateway_id != new_gateway_id()
    meter.received(50, now)
    meter.received(8, now - (KEEP_MINUTES + 5) * 60)  # an hour and more ago
    with db.write() as s:  # the table is gone for a moment: the flush fails
        s.execute(sa.text("ALTER TABLE traffic_minutes RENAME TO traffic_minutes_away"))
    with pytest.raises(Exception):  # noqa: B017 - whichever driver error
        meter.flush()
    with db.write() as s:
        s.execute(sa.text("ALTER TABLE traffic_minutes_away RENAME TO traffic_minutes"))
    meter._pruned_at = 0.0  # due for pruning
    meter.flush()
    assert list(_rows(db).values()) == [(50, 0)]  # kept, then the old minute pruned
