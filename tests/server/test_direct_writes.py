"""Direct writes through the real gateway and nodes: clients put chunk bytes on the nodes
under the gateway's write grants; every misuse of a grant or a receipt stores nothing."""

from __future__ import annotations

import hashlib
import io
import os
import time

import grpc
import pytest

from cloudgrpc_proto import cloud_storage_pb2 as pb
from cloudgrpc_proto import cloud_storage_pb2_grpc as pb_grpc
from cloudgrpc_proto import write_grants
from cloudgrpc_proto.client import CloudClient
from cloudgrpc_proto.transfer import UploadStats
from tests.cluster import ADMIN_KEY, CLUSTER_SECRET, Account, Cluster, MiB

CHUNK = 4 * MiB


def _client(c: Cluster, acct: Account) -> CloudClient:
    return CloudClient(c.address, session_token=acct.token, timeout=30)


def _holds(c: Cluster, sha: str) -> bool:
    return any(any(c.node_dir(n).rglob(sha + "*")) for n in c.nodes)


def _grant(c: Cluster, acct: Account, data: bytes, upload_id: str = "u1"
           ) -> tuple[pb.ChunkWriteGrant, str]:
    sha = hashlib.sha256(data).hexdigest()
    reply = c.files.PrepareChunkWrites(pb.PrepareChunkWritesRequest(
        session_token=acct.token, upload_id=upload_id,
        chunks=[pb.ChunkRef(sha256=sha, size=len(data))]), timeout=10)
    assert len(reply.grants) == 1 and len(reply.grants[0].targets) == 2
    return reply.grants[0], sha


def _put(target: pb.ChunkWriteTarget, sha: str, data: bytes, token: str | None = None
         ) -> pb.PutChunkResponse:
    with grpc.insecure_channel(target.address) as channel:
        return pb_grpc.ChunkServiceStub(channel).PutChunk(pb.PutChunkRequest(
            sha256=sha, data=data, write_token=target.write_token if token is None else token),
            timeout=10)


def _refused(call, *args) -> grpc.StatusCode:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as err:
        call(*args)
    return err.value.code()


def _commit(c: Cluster, acct: Account, name: str, refs: list[pb.ChunkRef],
            upload_id: str = "") -> pb.UploadFileResponse:
    """Commit a file of chunk references (the end of an upload releases its grants: the
    attempts meant to fail run under another upload id than the grant's)."""
    def requests():  # type: ignore[no-untyped-def]
        yield pb.UploadFileRequest(metadata=pb.FileMetadata(
            session_token=acct.token, filename=name, upload_id=upload_id or name,
            file_size=sum(r.size for r in refs)))
        for ref in refs:
            yield pb.UploadFileRequest(chunk_ref=ref)
    return c.files.UploadFile(requests(), timeout=30)


def test_client_upload_writes_chunks_to_the_nodes(shared_cluster: Cluster) -> None:
    c = shared_cluster
    acct = c.sign_up()
    data = os.urandom(2 * CHUNK + 17)
    stats = UploadStats()
    with _client(c, acct) as client:
        reply = client.upload(io.BytesIO(data), filename="direct.bin", file_size=len(data),
                              stats=stats)
    assert reply.success
    assert stats.chunks_direct == 3 and stats.chunks_sent == 3
    assert acct.download(reply.file_id) == data
    assert acct.storage().used_bytes == len(data)  # counted once, grants released
    for i in range(0, len(data), CHUNK):
        sha = hashlib.sha256(data[i:i + CHUNK]).hexdigest()
        assert sum(any(c.node_dir(n).rglob(sha + "*")) for n in c.nodes) == 2


def test_repeated_chunks_are_written_once(shared_cluster: Cluster) -> None:
    c = shared_cluster
    acct = c.sign_up()
    data = bytes(3 * CHUNK) + b"tail"  # three identical chunks of zeros
    stats = UploadStats()
    with _client(c, acct) as client:
        reply = client.upload(io.BytesIO(data), filename="zeros.bin", file_size=len(data),
                              stats=stats)
    # every chunk went straight to the nodes: the repeats reuse the first write's receipts
    # (a write token is honoured once), none fell back to the gateway
    assert stats.chunks_direct == 4 and stats.chunks_sent == 4
    assert acct.download(reply.file_id) == data
    assert acct.storage().used_bytes == len(data)


def test_a_client_that_cannot_reach_the_nodes_sends_through_the_gateway(
        shared_cluster: Cluster) -> None:
    c = shared_cluster
    acct = c.sign_up()
    data = os.urandom(CHUNK + 5)
    stats = UploadStats()
    with _client(c, acct) as client:
        client._node_writes()  # the shared channels exist: mark every node unreachable
        assert client.node_reads is not None
        for port in c.node_ports.values():
            client.node_reads.mark_down(f"127.0.0.1:{port}", "test: no route")
        reply = client.upload(io.BytesIO(data), filename="via-gateway.bin", file_size=len(data),
                              stats=stats)
    assert reply.success and stats.chunks_direct == 0 and stats.chunks_sent == 2
    assert acct.download(reply.file_id) == data


def test_grants_refused_when_forged_expired_replayed_or_for_another_chunk_or_node(
        shared_cluster: Cluster) -> None:
    c = shared_cluster
    acct = c.sign_up()
    data, other = os.urandom(1000), os.urandom(1000)
    grant, sha = _grant(c, acct, data)
    first, second = grant.targets
    denied = grpc.StatusCode.PERMISSION_DENIED
    # forged: the token's signature changed
    forged = first.write_token[:-4] + ("0000" if not first.write_token.endswith("0000")
                                       else "1111")
    assert _refused(_put, first, sha, data, forged) == denied
    # another chunk's bytes (under its own name) with this chunk's token
    other_sha = hashlib.sha256(other).hexdigest()
    assert _refused(_put, first, other_sha, other) == denied
    # another node: the token for the first node presented to the second
    assert _refused(_put, second, sha, data, first.write_token) == denied
    # expired: well signed, but past its time
    expired = write_grants.issue_token(CLUSTER_SECRET, sha, len(data), first.node_id,
                                       first.write_token.split(".")[2], int(time.time()) - 1)
    assert _refused(_put, first, sha, data, expired) == denied
    # nothing was stored by any of those
    assert not _holds(c, sha) and not _holds(c, other_sha)
    # the real grant works once, and only once
    receipt = _put(first, sha, data)
    assert receipt.receipt and receipt.node_id == first.node_id
    assert _refused(_put, first, sha, data) == denied


def test_receipts_forged_or_from_another_users_grant_commit_nothing(
        shared_cluster: Cluster) -> None:
    c = shared_cluster
    alice, mallory = c.sign_up(), c.sign_up()
    data = os.urandom(2000)
    grant, sha = _grant(c, alice, data)
    receipts = [pb.ChunkReceipt(node_id=t.node_id, receipt=_put(t, sha, data).receipt)
                for t in grant.targets]
    ref = pb.ChunkRef(sha256=sha, size=len(data), receipts=receipts)
    # someone else's receipts: the grant is not theirs
    err = _refused(_commit, c, mallory, "stolen.bin", [ref])
    assert err == grpc.StatusCode.PERMISSION_DENIED
    assert not [f for f in mallory.ls().files if f.name == "stolen.bin"]
    # a forged receipt, and a receipt naming another node
    bad = pb.ChunkRef(sha256=sha, size=len(data), receipts=[
        pb.ChunkReceipt(node_id=receipts[0].node_id, receipt=receipts[0].receipt[:-4] + "abcd"),
        receipts[1]])
    assert _refused(_commit, c, alice, "forged.bin", [bad]) == grpc.StatusCode.PERMISSION_DENIED
    swapped = pb.ChunkRef(sha256=sha, size=len(data), receipts=[
        pb.ChunkReceipt(node_id=receipts[1].node_id, receipt=receipts[0].receipt)])
    assert _refused(_commit, c, alice, "swapped.bin", [swapped]) == \
        grpc.StatusCode.PERMISSION_DENIED
    # fewer copies than the replication target: refused, never committed short
    one = pb.ChunkRef(sha256=sha, size=len(data), receipts=receipts[:1])
    assert _refused(_commit, c, alice, "short.bin", [one]) == grpc.StatusCode.UNAVAILABLE
    assert not [f for f in alice.ls().files if f.name.endswith(".bin")]
    # the true receipts commit the file, which reads back
    done = _commit(c, alice, "real.bin", [ref], upload_id="u1")
    assert done.success and alice.download(done.file_id) == data


def test_grants_hold_quota(shared_cluster: Cluster) -> None:
    c = shared_cluster
    acct = c.sign_up()
    c.admin.SetUserQuota(pb.SetUserQuotaRequest(admin_key=ADMIN_KEY, email=acct.email,
                                                storage_bytes=3 * CHUNK), timeout=10)
    too_big = [pb.ChunkRef(sha256=hashlib.sha256(str(i).encode()).hexdigest(), size=CHUNK)
               for i in range(4)]
    err = _refused(c.files.PrepareChunkWrites, pb.PrepareChunkWritesRequest(
        session_token=acct.token, upload_id="q", chunks=too_big))
    assert err == grpc.StatusCode.RESOURCE_EXHAUSTED
    # what fits is granted, and counts: the grants above it are refused
    assert c.files.PrepareChunkWrites(pb.PrepareChunkWritesRequest(
        session_token=acct.token, upload_id="q", chunks=too_big[:3]), timeout=10).grants
    err = _refused(c.files.PrepareChunkWrites, pb.PrepareChunkWritesRequest(
        session_token=acct.token, upload_id="q2", chunks=too_big[3:]))
    assert err == grpc.StatusCode.RESOURCE_EXHAUSTED
    # a refused call under the same upload does not drop what that upload was granted
    err = _refused(c.files.PrepareChunkWrites, pb.PrepareChunkWritesRequest(
        session_token=acct.token, upload_id="q", chunks=too_big[3:]))
    assert err == grpc.StatusCode.RESOURCE_EXHAUSTED
    err = _refused(c.files.PrepareChunkWrites, pb.PrepareChunkWritesRequest(
        session_token=acct.token, upload_id="q4", chunks=too_big[3:]))
    assert err == grpc.StatusCode.RESOURCE_EXHAUSTED
    # giving the upload up does not give the quota back: chunks may have been written
    # under those grants, and they stay counted until garbage collection could take them
    assert _commit(c, acct, "given-up.bin", [], upload_id="q").success
    err = _refused(c.files.PrepareChunkWrites, pb.PrepareChunkWritesRequest(
        session_token=acct.token, upload_id="q3", chunks=too_big[3:]))
    assert err == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_a_fast_upload_asks_for_grants_in_growing_batches(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """GRANT_BATCH chunks at first, then as many as the upload writes in half a grant's
    life (up to the gateway's 64): fewer PrepareChunkWrites calls, every chunk direct."""
    from tests.conftest import cluster_on

    with cluster_on("sqlite", tmp_path, env={"CHUNK_SIZE": str(64 * 1024)}) as c:
        acct = c.sign_up()
        data = os.urandom(96 * 64 * 1024)  # 96 chunks
        asked: list[int] = []
        stats = UploadStats()
        with _client(c, acct) as client:
            granter = client._granter

            def counting(token: str, upload_id: str):  # type: ignore[no-untyped-def]
                prepare = granter(token, upload_id)

                def ask(batch):  # type: ignore[no-untyped-def]
                    asked.append(len(batch))
                    return prepare(batch)
                return ask

            client._granter = counting  # type: ignore[method-assign]
            reply = client.upload(io.BytesIO(data), filename="many.bin",
                                  file_size=len(data), stats=stats)
        assert reply.success and stats.chunks_direct == 96
        assert asked[0] == 16 and sum(asked) == 96 and len(asked) <= 4, asked
        assert acct.download(reply.file_id) == data


def test_write_ahead_stopped_midway_keeps_the_sends_on_their_way(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Write-behind stops when the file's upload starts: the chunks already on their way
    still hand in their receipts (a node honours a token once, so a lost receipt would
    cost the upload its direct writes), and the upload then writes the rest directly."""
    from cloudgrpc_proto.direct_writes import StopAhead
    from cloudgrpc_proto.transfer import ChunkPlanEntry
    from tests.conftest import cluster_on

    chunk = 64 * 1024
    with cluster_on("sqlite", tmp_path, env={"CHUNK_SIZE": str(chunk)}) as c:
        acct = c.sign_up()
        data = os.urandom(12 * chunk)
        entries = [ChunkPlanEntry(i * chunk, chunk,
                                  hashlib.sha256(data[i * chunk:(i + 1) * chunk]).hexdigest())
                   for i in range(12)]
        reads: list[int] = []

        def read(entry: ChunkPlanEntry) -> bytes:
            if len(reads) == 6:
                raise StopAhead  # the upload starts now
            reads.append(entry.offset)
            return data[entry.offset:entry.offset + chunk]

        stats = UploadStats()
        with _client(c, acct) as client:
            ahead = client.write_ahead("ahead-stop-1", entries, read)
            assert len(ahead) == 6 and all(len(r) == 2 for r in ahead.values())
            reply = client.upload(io.BytesIO(data), filename="stopped.bin",
                                  file_size=len(data), stats=stats, upload_id="ahead-stop-1",
                                  ahead=ahead)
        assert reply.success and acct.download(reply.file_id) == data
        assert stats.chunks_direct == 12, stats  # every chunk direct, none through the gateway
