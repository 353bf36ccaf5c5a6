"""Under-replication is visible and explained (issue 15): the admin status says how many
chunks are short of REPLICATION_FACTOR and why, repair says so in one event (not one per
chunk or per pass), and chunks no file references are garbage, never "under-replicated".

One cluster per database: two nodes with REPLICATION_FACTOR=3, so every stored chunk is
short of its third copy because there are too few nodes; 1 MiB chunks keep files small.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator

import grpc
import pytest

from cloudgrpc_admin import render
from cloudgrpc_proto import cloud_storage_pb2 as pb
from cloudgrpc_server import shortfall
from tests.cluster import ADMIN_KEY, Cluster, MiB
from tests.conftest import cluster_on

CHUNK = MiB
SHORT_CLUSTER = {
    "REPLICATION_FACTOR": "3",
    "CHUNK_SIZE": str(CHUNK),
    "NODE_TIMEOUT_S": "2",
    "REPAIR_GRACE_S": "1",
    "REPAIR_INTERVAL_S": "0.3",
    "NODE_CALL_TIMEOUT_S": "3",
    "GC_GRACE_S": "3600",  # garbage stays for the test to see
}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def short_cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[Cluster]:
    with cluster_on(request.param, tmp_path_factory.mktemp(f"short-{request.param}"),
                    nodes=2, env=SHORT_CLUSTER) as c:
        yield c


def _wait(cond: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _events(c: Cluster, event_type: str) -> list[pb.SystemEvent]:
    """Every stored event of one type (the stream's history, read for half a second)."""
    out: list[pb.SystemEvent] = []
    stream = c.admin.StreamSystemEvents(pb.StreamEventsRequest(
        admin_key=ADMIN_KEY, history=1000, event_types=[event_type]), timeout=0.5)
    try:
        for event in stream:
            out.append(event)
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED, exc
    return out


def test_too_few_nodes_is_counted_and_told_once(short_cluster: Cluster) -> None:
    c = short_cluster
    acct = c.sign_up()
    before = c.status().under_replicated_chunks
    data = os.urandom(3 * CHUNK)  # three distinct chunks, committed together
    fid = acct.upload(data, "three.bin").file_id
    _wait(lambda: c.status().chunks_short_too_few_nodes == before + 3,
          what="three chunks short for too few nodes")
    st = c.status()
    assert st.under_replicated_chunks == before + 3
    assert st.chunks_short_no_room == 0
    assert st.online_nodes == 2 and st.replication_factor == 3
    assert 0 < st.system_health < 100  # two of three copies: lower, not zero
    line = render.shortfall_line(st)
    assert "too few nodes (2 online, replication 3)" in line
    # Repair runs every 0.3 s: let five passes go by; the event is told once, not per
    # chunk and not per pass, and names the chunks and the cause.
    _wait(lambda: any(json.loads(e.details).get("too_few_nodes") == before + 3
                      for e in _events(c, "under_replicated")), what="the event")
    time.sleep(1.5)
    told = [json.loads(e.details) for e in _events(c, "under_replicated")]
    assert [t for t in told if t["too_few_nodes"] == before + 3] == [
        {"chunks": before + 3, "no_room": 0, "too_few_nodes": before + 3,
         "online_nodes": 2, "replication_factor": 3}]
    assert len(told) <= 2  # at most this file's and an earlier test's count
    assert acct.download(fid) == data  # short of the promise, still readable


def test_garbage_is_not_under_replicated(short_cluster: Cluster) -> None:
    c = short_cluster
    acct = c.sign_up()
    before = c.status()
    data = os.urandom(2 * CHUNK)

    def refused() -> Iterator[pb.UploadFileRequest]:
        yield pb.UploadFileRequest(metadata=pb.FileMetadata(
            session_token=acct.token, filename="refused.bin", file_size=len(data) + 1))
        for i in range(0, len(data), CHUNK):
            yield pb.UploadFileRequest(chunk_data=data[i:i + CHUNK])

    with pytest.raises(grpc.RpcError):
        c.files.UploadFile(refused(), timeout=60)  # announced one byte more than it sends
    assert acct.ls().files == []
    after = c.status()
    # Its two chunks are stored (on 2 nodes, short of 3) but no file references them.
    assert after.total_chunks == before.total_chunks + 2
    assert after.garbage_chunks == before.garbage_chunks + 2
    assert after.under_replicated_chunks == before.under_replicated_chunks
    assert after.chunks_short_too_few_nodes == before.chunks_short_too_few_nodes
    assert after.system_health == before.system_health
    if before.total_chunks == 0:
        assert after.system_health == 100.0


def test_cause_names_what_blocks_the_copy() -> None:
    big = 10 * MiB
    # Two nodes for a factor of three: a copy on each still leaves one short.
    assert shortfall.reason(2, [], MiB, 3) == shortfall.TOO_FEW_NODES
    # A third node exists but is full: no room, not too few nodes.
    assert shortfall.reason(2, [MiB // 2], MiB, 3) == shortfall.NO_ROOM
    # A node with room: repair copies it.
    assert shortfall.reason(1, [big, big], MiB, 3) == shortfall.PENDING
    assert shortfall.reason(3, [], MiB, 3) is None
    notice = shortfall.ShortfallNotice(repeat_s=60)
    tally = shortfall.Tally()
    tally.add(shortfall.TOO_FEW_NODES, 1)
    assert notice.due(tally, 0.0) and not notice.due(tally, 30.0)  # once, not per pass
    assert notice.due(tally, 61.0)  # repeated rarely while it lasts
    assert notice.due(shortfall.Tally(), 62.0)  # and told when it clears
    assert not notice.due(shortfall.Tally(), 200.0)
