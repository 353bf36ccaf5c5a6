"""Unit tests of the on-disk chunk store (no gRPC)."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import grpc
import pytest

from cloudgrpc_node.chunk_store import ChunkCorrupt, ChunkStore
from cloudgrpc_proto import errors
from tests.node.node_testkit import chunk

MIB = 1024 * 1024


@pytest.fixture
def store(tmp_path: Path) -> ChunkStore:
    return ChunkStore(tmp_path / "store", 16 * MIB)


def flip_byte(path: Path, index: int = 0) -> None:
    raw = bytearray(path.read_bytes())
    raw[index] ^= 0xFF
    path.write_bytes(bytes(raw))


def test_put_get_roundtrip_and_layout(store: ChunkStore) -> None:
    sha, data = chunk(1)
    result = store.put(sha, data)
    assert not result.already_present
    assert result.used_bytes == len(data)
    assert store.get(sha) == data
    path = store.root / "chunks" / sha[:2] / sha[2:4] / sha
    assert path.read_bytes() == data
    assert store.used_bytes == len(data)
    assert store.chunk_count == 1
    assert list((store.root / "tmp").iterdir()) == []


def test_range_reads(store: ChunkStore) -> None:
    sha, data = chunk(2, 10_000)
    store.put(sha, data)
    assert store.get(sha, 100, 50) == data[100:150]
    assert store.get(sha, 9_990) == data[9_990:]
    assert store.get(sha, 9_990, 1_000) == data[9_990:]  # clipped at the end
    assert store.get(sha, 10_000) == b""
    assert store.read(sha, 5, 5) == (data[5:10], 10_000)
    with pytest.raises(errors.InvalidArgument):
        store.get(sha, 10_001)
    with pytest.raises(errors.InvalidArgument):
        store.get(sha, -1)
    with pytest.raises(errors.InvalidArgument):
        store.get(sha, 0, -5)


def test_dedup_second_put_is_already_present(store: ChunkStore) -> None:
    sha, data = chunk(3)
    store.put(sha, data)
    again = store.put(sha, data)
    assert again.already_present
    assert store.used_bytes == len(data)
    assert store.chunk_count == 1


def test_hash_mismatch_and_malformed_ids_are_refused(store: ChunkStore) -> None:
    sha, data = chunk(4)
    with pytest.raises(errors.InvalidArgument):
        store.put(sha, data + b"x")
    for bad in ("../../etc/passwd", sha.upper(), sha[:-1], ""):
        with pytest.raises(errors.InvalidArgument):
            store.put(bad, data)
        with pytest.raises(errors.InvalidArgument):
            store.get(bad)
    assert store.chunk_count == 0
    assert store.used_bytes == 0


def test_missing_chunk_is_not_found(store: ChunkStore) -> None:
    sha, _ = chunk(5)
    with pytest.raises(errors.NotFound):
        store.get(sha)
    assert store.verify(sha) == (False, False)


def test_capacity_refusal(tmp_path: Path) -> None:
    small = ChunkStore(tmp_path / "small", 10_000)
    sha1, data1 = chunk(6, 6_000)
    sha2, data2 = chunk(7, 6_000)
    small.put(sha1, data1)
    with pytest.raises(errors.QuotaExceeded, match="node full"):
        small.put(sha2, data2)
    assert small.has([sha1, sha2]) == [sha1]
    assert small.used_bytes == 6_000
    assert list((small.root / "tmp").iterdir()) == []
    # A duplicate of a stored chunk needs no room and still succeeds.
    assert small.put(sha1, data1).already_present


def test_concurrent_puts_never_overshoot_capacity(tmp_path: Path) -> None:
    small = ChunkStore(tmp_path / "small", 50_000)
    chunks = [chunk(100 + i, 4_000) for i in range(40)]
    outcomes: list[str] = []
    lock = threading.Lock()

    def put(sha: str, data: bytes) -> None:
        try:
            small.put(sha, data)
            outcome = "ok"
        except errors.QuotaExceeded:
            outcome = "full"
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=put, args=c) for c in chunks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("ok") == 12  # 12 * 4000 <= 50000 < 13 * 4000
    assert small.used_bytes == 48_000
    assert small.chunk_count == 12


def test_concurrent_puts_of_the_same_chunk_count_once(store: ChunkStore) -> None:
    sha, data = chunk(8, 100_000)
    threads = [threading.Thread(target=store.put, args=(sha, data)) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.chunk_count == 1
    assert store.used_bytes == len(data)


def test_corruption_is_detected_and_overwritten(store: ChunkStore) -> None:
    sha, data = chunk(9)
    store.put(sha, data)
    flip_byte(store.path_for(sha), 123)
    with pytest.raises(ChunkCorrupt, match="chunk corrupt"):
        store.get(sha)
    with pytest.raises(ChunkCorrupt):
        store.get(sha, 0, 10)  # even a range read verifies the whole chunk
    assert store.verify(sha) == (True, False)
    assert not store.put(sha, data).already_present  # the good copy replaces the bad one
    assert store.get(sha) == data
    assert store.verify(sha) == (True, True)
    assert store.chunk_count == 1
    assert store.used_bytes == len(data)


def test_truncated_chunk_is_replaced_with_correct_accounting(tmp_path: Path) -> None:
    sha, data = chunk(10, 8_000)
    store = ChunkStore(tmp_path / "s", MIB)
    store.put(sha, data)
    store.path_for(sha).write_bytes(data[:3_000])
    reopened = ChunkStore(tmp_path / "s", MIB)
    assert reopened.used_bytes == 3_000
    reopened.put(sha, data)
    assert reopened.used_bytes == 8_000
    assert reopened.chunk_count == 1


def test_chunk_corrupt_maps_to_data_loss() -> None:
    assert ChunkCorrupt.code == grpc.StatusCode.DATA_LOSS
    assert issubclass(ChunkCorrupt, errors.CloudError)


def test_stale_tmp_files_removed_and_usage_rescanned_at_start(tmp_path: Path) -> None:
    root = tmp_path / "s"
    store = ChunkStore(root, MIB)
    stored = [chunk(20 + i, 1_000 + i) for i in range(5)]
    for sha, data in stored:
        store.put(sha, data)
    # A crash mid-write leaves a torn file in tmp/ (never renamed into chunks/).
    torn_sha, torn_data = chunk(99, 5_000)
    (root / "tmp" / f"{torn_sha}.deadbeef").write_bytes(torn_data[:1_234])
    (root / "tmp" / "junkdir").mkdir()
    (root / "chunks" / "README").write_text("not a chunk")

    reopened = ChunkStore(root, MIB)
    assert list((root / "tmp").iterdir()) == []
    assert reopened.chunk_count == 5
    assert reopened.used_bytes == sum(len(d) for _, d in stored)
    assert reopened.has([torn_sha]) == []
    for sha, data in stored:
        assert reopened.get(sha) == data


def test_delete_has_and_iter(store: ChunkStore) -> None:
    stored = [chunk(30 + i, 500 * (i + 1)) for i in range(4)]
    for sha, data in stored:
        store.put(sha, data)
    missing, _ = chunk(77)
    shas = [s for s, _ in stored]
    assert store.has([missing, shas[2], shas[0], shas[2]]) == [shas[2], shas[0]]
    assert sorted(store.iter_chunks()) == sorted((s, len(d)) for s, d in stored)

    assert store.delete([shas[0], shas[0], missing, shas[1]]) == 2
    assert store.chunk_count == 2
    assert store.used_bytes == len(stored[2][1]) + len(stored[3][1])
    assert store.has(shas) == shas[2:]
    with pytest.raises(errors.InvalidArgument):
        store.delete(["../x"])


def test_large_chunk_whole_read_returns_exact_bytes(store: ChunkStore) -> None:
    data = bytes(range(256)) * (4 * MIB // 256)
    sha = hashlib.sha256(data).hexdigest()
    store.put(sha, data)
    assert store.get(sha) == data
    assert store.get(sha, MIB, MIB) == data[MIB : 2 * MIB]


def _resident_bytes(path: Path) -> int:
    import subprocess

    done = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)],
                          capture_output=True, text=True, check=True)
    return int(done.stdout.strip())


@pytest.mark.parametrize("cache_writes", [False, True])
def test_written_chunks_leave_the_page_cache_unless_asked(tmp_path: Path,
                                                          cache_writes: bool) -> None:
    """A node gives a written chunk's pages back after the fsync (NODE_CACHE_WRITES=1
    keeps them); what is read is cached as usual, and the chunk reads back whole."""
    import subprocess

    fs = subprocess.run(["stat", "-f", "-c", "%T", str(tmp_path)], capture_output=True,
                        text=True, check=True).stdout.strip()
    if fs == "tmpfs":
        pytest.skip("on tmpfs the page cache is the storage")
    store = ChunkStore(tmp_path / "store", 16 * MIB, cache_writes=cache_writes)
    data = hashlib.sha512(b"seed").digest() * (MIB // 64)  # kept raw: no codec here
    sha = hashlib.sha256(data).hexdigest()
    store.put(sha, data)
    path = store.stored_path(sha)
    assert path is not None
    assert (_resident_bytes(path) > MIB // 2) is cache_writes
    assert store.get(sha) == data
    assert _resident_bytes(path) > MIB // 2
