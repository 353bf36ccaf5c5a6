"""ChunkService over a real in-process gRPC server, driven with the real stub."""

from __future__ import annotations

import socket

import grpc
import pytest

from cloudgrpc_proto import cloud_storage_pb2 as pb
from cloudgrpc_proto import errors
from tests.cluster import free_port
from tests.node.node_testkit import chunk

SECRET = "s3cret"
TIMEOUT = 10



def rpc_error(call, *args, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        result = call(*args, timeout=TIMEOUT, **kwargs)
        if hasattr(result, "__next__"):  # a server stream: errors surface while iterating
            list(result)
    return info.value


def test_put_get_roundtrip_range_and_dedup(start_node) -> None:
    node = start_node()
    sha, data = chunk(1, 100_000)
    reply = node.stub.PutChunk(
        pb.PutChunkRequest(sha256=sha, data=data, cluster_secret=SECRET, upload_id="up-1"),
        timeout=TIMEOUT,
    )
    assert reply.success and not reply.already_present and reply.used_bytes == len(data)
    again = node.stub.PutChunk(
        pb.PutChunkRequest(sha256=sha, data=data, cluster_secret=SECRET), timeout=TIMEOUT
    )
    assert again.success and again.already_present

    whole = node.stub.GetChunk(pb.GetChunkRequest(sha256=sha, cluster_secret=SECRET))
    assert whole.data == data and whole.chunk_size == len(data)
    part = node.stub.GetChunk(
        pb.GetChunkRequest(sha256=sha, offset=1_000, length=500, cluster_secret=SECRET)
    )
    assert part.data == data[1_000:1_500] and part.chunk_size == len(data)


def test_large_chunk_over_the_wire(start_node) -> None:
    node = start_node()
    sha, data = chunk(2, 8 * 1024 * 1024)
    node.stub.PutChunk(
        pb.PutChunkRequest(sha256=sha, data=data, cluster_secret=SECRET), timeout=TIMEOUT
    )
    got = node.stub.GetChunk(pb.GetChunkRequest(sha256=sha, cluster_secret=SECRET))
    assert got.data == data


@pytest.mark.parametrize(
    "method,request_",
    [
        ("PutChunk", pb.PutChunkRequest(sha256=chunk(1)[0], data=chunk(1)[1])),
        ("GetChunk", pb.GetChunkRequest(sha256=chunk(1)[0])),
        ("DeleteChunks", pb.DeleteChunksRequest(sha256=[chunk(1)[0]])),
        ("HasChunks", pb.HasChunksRequest(sha256=[chunk(1)[0]])),
        ("ListChunks", pb.ListChunksRequest()),
        ("VerifyChunk", pb.VerifyChunkRequest(sha256=chunk(1)[0])),
        ("FetchChunkFrom", pb.FetchChunkFromRequest(sha256=chunk(1)[0], source_address="x:1")),
    ],
)
@pytest.mark.parametrize("presented", ["", "wrong", SECRET + "x"])
def test_wrong_secret_is_permission_denied(start_node, method, request_, presented) -> None:
    node = start_node()
    request = type(request_)()
    request.CopyFrom(request_)
    request.cluster_secret = presented
    err = rpc_error(getattr(node.stub, method), request)
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert node.store.chunk_count == 0


def test_open_cluster_only_with_the_explicit_opt_in(start_node) -> None:
    sha, data = chunk(3)
    closed = start_node("closed", secret="")  # no secret and no opt-in: nobody gets in
    for presented in ("", "anything"):
        err = rpc_error(
            closed.stub.PutChunk,
            pb.PutChunkRequest(sha256=sha, data=data, cluster_secret=presented),
        )
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert rpc_error(closed.stub.GetChunk, pb.GetChunkRequest(sha256=sha)).code() == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    assert closed.store.chunk_count == 0
    opened = start_node("open", secret="", insecure=True)
    reply = opened.stub.PutChunk(
        pb.PutChunkRequest(sha256=sha, data=data, cluster_secret="anything"), timeout=TIMEOUT
    )
    assert reply.success


def test_get_chunk_with_empty_or_foreign_token_needs_the_secret(start_node) -> None:
    from cloudgrpc_proto import read_tokens

    node = start_node()
    sha, data = chunk(30)
    other, _ = chunk(31)
    node.store.put(sha, data)
    for token in ("", "v1.9999999999.00", read_tokens.issue(SECRET, other, 2**31),
                  read_tokens.issue("not-the-secret", sha, 2**31),
                  read_tokens.issue(SECRET, sha, 1)):  # expired long ago
        err = rpc_error(node.stub.GetChunk, pb.GetChunkRequest(sha256=sha, read_token=token))
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED, token
    good = read_tokens.issue(SECRET, sha, 2**31)
    assert node.stub.GetChunk(pb.GetChunkRequest(sha256=sha, read_token=good)).data == data


@pytest.mark.parametrize(
    "address", ["", "x", "host:", ":80", "host:0", "host:70000", "unix:/tmp/s", "a b:1",
                "dns:///h:1", "http://h:1", "h:1/path", "ipv4:127.0.0.1:1,127.0.0.1:2"]
)
def test_fetch_chunk_from_wants_host_port(start_node, address: str) -> None:
    node = start_node()
    err = rpc_error(
        node.stub.FetchChunkFrom,
        pb.FetchChunkFromRequest(sha256=chunk(1)[0], source_address=address,
                                 cluster_secret=SECRET),
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_fetch_chunk_from_does_not_describe_the_target(start_node) -> None:
    """A failed fetch says only that it failed: not what answered at that address."""
    node = start_node()
    with socket.socket() as listener:  # something that is not a node, listening
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        open_port = listener.getsockname()[1]
        replies = {}
        for port in (open_port, free_port()):
            err = rpc_error(
                node.stub.FetchChunkFrom,
                pb.FetchChunkFromRequest(sha256=chunk(1)[0], source_address=f"127.0.0.1:{port}",
                                         cluster_secret=SECRET),
            )
            replies[port] = (err.code(), err.details())
    assert len(set(replies.values())) == 1, replies
    assert str(open_port) not in replies[open_port][1]
    assert node.store.chunk_count == 0


def test_typed_errors_on_the_wire(start_node) -> None:
    node = start_node(capacity=10_000)
    sha, data = chunk(4, 6_000)
    err = rpc_error(
        node.stub.PutChunk, pb.PutChunkRequest(sha256=sha, data=data + b"!", cluster_secret=SECRET)
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT

    err = rpc_error(node.stub.GetChunk, pb.GetChunkRequest(sha256=sha, cluster_secret=SECRET))
    assert err.code() == grpc.StatusCode.NOT_FOUND

    node.stub.PutChunk(pb.PutChunkRequest(sha256=sha, data=data, cluster_secret=SECRET))
    sha2, data2 = chunk(5, 6_000)
    err = rpc_error(
        node.stub.PutChunk, pb.PutChunkRequest(sha256=sha2, data=data2, cluster_secret=SECRET)
    )
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    typed = errors.from_rpc_error(err)
    assert isinstance(typed, errors.QuotaExceeded) and "node full" in typed.message


def test_corrupt_chunk_is_data_loss(start_node) -> None:
    node = start_node()
    sha, data = chunk(6)
    node.stub.PutChunk(pb.PutChunkRequest(sha256=sha, data=data, cluster_secret=SECRET))
    path = node.store.path_for(sha)
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0x01
    path.write_bytes(bytes(raw))

    err = rpc_error(node.stub.GetChunk, pb.GetChunkRequest(sha256=sha, cluster_secret=SECRET))
    assert err.code() == grpc.StatusCode.DATA_LOSS
    verdict = node.stub.VerifyChunk(pb.VerifyChunkRequest(sha256=sha, cluster_secret=SECRET))
    assert verdict.present and not verdict.valid
    # A fresh put of the right bytes repairs it in place.
    node.stub.PutChunk(pb.PutChunkRequest(sha256=sha, data=data, cluster_secret=SECRET))
    verdict = node.stub.VerifyChunk(pb.VerifyChunkRequest(sha256=sha, cluster_secret=SECRET))
    assert verdict.present and verdict.valid


def test_delete_has_verify(start_node) -> None:
    node = start_node()
    stored = [chunk(10 + i) for i in range(3)]
    for sha, data in stored:
        node.stub.PutChunk(pb.PutChunkRequest(sha256=sha, data=data, cluster_secret=SECRET))
    shas = [s for s, _ in stored]
    missing = chunk(99)[0]
    has = node.stub.HasChunks(pb.HasChunksRequest(sha256=[missing, *shas], cluster_secret=SECRET))
    assert list(has.present) == shas
    deleted = node.stub.DeleteChunks(
        pb.DeleteChunksRequest(sha256=[shas[0], missing], cluster_secret=SECRET)
    )
    assert deleted.deleted == 1 and deleted.used_bytes == 2 * len(stored[1][1])
    gone = node.stub.VerifyChunk(pb.VerifyChunkRequest(sha256=shas[0], cluster_secret=SECRET))
    assert not gone.present and not gone.valid


def test_list_chunks_streams_batches(start_node) -> None:
    node = start_node()
    expected = {}
    for i in range(2_345):
        sha, data = chunk(1_000 + i, 16 + i % 7)
        node.store.put(sha, data)
        expected[sha] = len(data)
    batches = list(
        node.stub.ListChunks(pb.ListChunksRequest(cluster_secret=SECRET), timeout=TIMEOUT)
    )
    assert [len(b.sha256) for b in batches] == [1_000, 1_000, 345]
    listed = {s: n for b in batches for s, n in zip(b.sha256, b.sizes, strict=True)}
    assert listed == expected


def test_list_chunks_of_empty_node(start_node) -> None:
    node = start_node()
    assert list(node.stub.ListChunks(pb.ListChunksRequest(cluster_secret=SECRET))) == []


def test_fetch_chunk_from_another_node(start_node) -> None:
    source = start_node("a")
    target = start_node("b")
    sha, data = chunk(7, 300_000)
    source.store.put(sha, data)

    reply = target.stub.FetchChunkFrom(
        pb.FetchChunkFromRequest(sha256=sha, source_address=source.address, cluster_secret=SECRET),
        timeout=TIMEOUT,
    )
    assert reply.success and not reply.already_present and reply.used_bytes == len(data)
    assert target.store.get(sha) == data

    again = target.stub.FetchChunkFrom(
        pb.FetchChunkFromRequest(sha256=sha, source_address=source.address, cluster_secret=SECRET),
        timeout=TIMEOUT,
    )
    assert again.already_present


def test_fetch_chunk_failures(start_node) -> None:
    source = start_node("a")
    target = start_node("b")
    sha, data = chunk(8)

    def fetch(address: str) -> grpc.RpcError:
        return rpc_error(
            target.stub.FetchChunkFrom,
            pb.FetchChunkFromRequest(sha256=sha, source_address=address, cluster_secret=SECRET),
        )

    assert fetch(source.address).code() == grpc.StatusCode.NOT_FOUND

    source.store.put(sha, data)
    path = source.store.path_for(sha)
    raw = bytearray(path.read_bytes())
    raw[0] ^= 0xFF
    path.write_bytes(bytes(raw))
    assert fetch(source.address).code() == grpc.StatusCode.DATA_LOSS

    source.server.stop(grace=None)
    assert fetch(source.address).code() == grpc.StatusCode.UNAVAILABLE
    assert target.store.chunk_count == 0


def test_fetch_chunk_repairs_a_corrupt_local_copy(start_node) -> None:
    source = start_node("a")
    target = start_node("b")
    sha, data = chunk(9)
    source.store.put(sha, data)
    target.store.put(sha, data)
    path = target.store.path_for(sha)
    raw = bytearray(path.read_bytes())
    raw[10] ^= 0x10  # bit rot: same size, wrong content
    path.write_bytes(bytes(raw))
    reply = target.stub.FetchChunkFrom(
        pb.FetchChunkFromRequest(sha256=sha, source_address=source.address, cluster_secret=SECRET),
        timeout=TIMEOUT,
    )
    assert reply.success and not reply.already_present
    assert target.store.verify(sha) == (True, True)
    assert target.store.used_bytes == len(data)


def test_put_chunks_judges_each_chunk(start_node) -> None:
    node = start_node(capacity=20_000)
    # sha3 cannot fit even alone: the chunks of one call are written in parallel
    (sha1, data1), (sha2, data2), (sha3, data3) = chunk(6, 6_000), chunk(7, 6_000), chunk(8, 15_000)
    node.stub.PutChunk(pb.PutChunkRequest(sha256=sha1, data=data1, cluster_secret=SECRET))
    reply = node.stub.PutChunks(pb.PutChunksRequest(cluster_secret=SECRET, upload_id="b-1", chunks=[
        pb.PutChunkRequest(sha256=sha1, data=data1),  # already there
        pb.PutChunkRequest(sha256=sha2, data=data2 + b"!"),  # does not match its hash
        pb.PutChunkRequest(sha256=sha2, data=data2),
        pb.PutChunkRequest(sha256=sha3, data=data3),  # no room left
    ]), timeout=TIMEOUT)
    got = [(r.sha256, r.success, r.already_present, r.error_code) for r in reply.results]
    assert got == [(sha1, True, True, ""), (sha2, False, False, "INVALID_ARGUMENT"),
                   (sha2, True, False, ""), (sha3, False, False, "RESOURCE_EXHAUSTED")]
    assert reply.used_bytes == 12_000
    assert node.stub.GetChunk(pb.GetChunkRequest(sha256=sha2, cluster_secret=SECRET),
                              timeout=TIMEOUT).data == data2
    err = rpc_error(node.stub.PutChunks, pb.PutChunksRequest(
        cluster_secret="wrong", chunks=[pb.PutChunkRequest(sha256=sha3, data=data3)]))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED


def test_read_token_reads_its_chunk_and_nothing_else(start_node) -> None:
    """A client with the gateway's read token gets that one chunk; other calls and other
    chunks, forged, expired or foreign-secret tokens are refused."""
    import time

    from cloudgrpc_proto import read_tokens

    node = start_node()
    sha, data = chunk(7, 50_000)
    other, other_data = chunk(8, 1_000)
    for h, d in ((sha, data), (other, other_data)):
        node.stub.PutChunk(pb.PutChunkRequest(sha256=h, data=d, cluster_secret=SECRET),
                           timeout=TIMEOUT)
    token = read_tokens.issue(SECRET, sha, int(time.time()) + 60)

    got = node.stub.GetChunk(pb.GetChunkRequest(sha256=sha, read_token=token), timeout=TIMEOUT)
    assert got.data == data

    expired = read_tokens.issue(SECRET, sha, int(time.time()) - 1)
    forged = token[:-4] + ("0000" if not token.endswith("0000") else "1111")
    foreign = read_tokens.issue("another-cluster", sha, int(time.time()) + 60)
    longer = token.replace(token.split(".")[1], str(int(token.split(".")[1]) + 3600))
    for bad_sha, bad in ((other, token), (sha, expired), (sha, forged), (sha, foreign),
                         (sha, longer), (sha, "v1.x.y"), (sha, "garbage")):
        err = rpc_error(node.stub.GetChunk, pb.GetChunkRequest(sha256=bad_sha, read_token=bad))
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED, bad

    # a read token is no cluster secret: writes and deletes still need the secret
    err = rpc_error(node.stub.DeleteChunks,
                    pb.DeleteChunksRequest(sha256=[sha], cluster_secret=token))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert node.store.chunk_count == 2


def test_get_chunks_answers_each_chunk_on_its_own(start_node) -> None:
    node = start_node()
    good = [chunk(20 + i, 3_000) for i in range(5)]
    bad_sha, bad_data = chunk(30, 3_000)
    for sha, data in [*good, (bad_sha, bad_data)]:
        node.stub.PutChunk(pb.PutChunkRequest(sha256=sha, data=data, cluster_secret=SECRET))
    node.store.path_for(bad_sha).write_bytes(b"x" + bad_data[1:])  # rotted on disk
    missing, _ = chunk(31)
    asked = [good[0][0], missing, good[1][0], bad_sha, *[sha for sha, _ in good[2:]]]
    reply = node.stub.GetChunks(pb.GetChunksRequest(sha256=asked, cluster_secret=SECRET),
                                timeout=TIMEOUT)
    got = [(r.sha256, r.error_code, r.data) for r in reply.results]
    assert got == [(good[0][0], "", good[0][1]), (missing, "NOT_FOUND", b""),
                   (good[1][0], "", good[1][1]), (bad_sha, "DATA_LOSS", b""),
                   *[(sha, "", data) for sha, data in good[2:]]]
    err = rpc_error(node.stub.GetChunks, pb.GetChunksRequest(sha256=asked,
                                                             cluster_secret="wrong"))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    err = rpc_error(node.stub.GetChunks, pb.GetChunksRequest(
        sha256=[good[0][0]] * 1001, cluster_secret=SECRET))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_get_chunks_reply_stops_taking_data_when_full(start_node) -> None:
    node = start_node(capacity=64 * 1024 * 1024)
    big = [chunk(40 + i, 4 * 1024 * 1024) for i in range(6)]
    for sha, data in big:
        node.stub.PutChunk(pb.PutChunkRequest(sha256=sha, data=data, cluster_secret=SECRET),
                           timeout=TIMEOUT)
    asked = [sha for sha, _ in big] * 4  # 96 MiB asked for: more than one reply holds
    reply = node.stub.GetChunks(pb.GetChunksRequest(sha256=asked, cluster_secret=SECRET),
                                timeout=TIMEOUT)
    assert [r.sha256 for r in reply.results] == asked
    served = [r for r in reply.results if not r.error_code]
    assert 4 <= len(served) < len(asked)  # at least 16 MiB, never the whole 96
    assert all(r.data == dict(big)[r.sha256] for r in served)
    assert {r.error_code for r in reply.results[len(served):]} == {"RESOURCE_EXHAUSTED"}
