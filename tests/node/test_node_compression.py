"""Chunks kept compressed on the node's disk (issue 17): what the store answers stays the
plaintext's (ids, sizes, ranges, hashes), disk use shrinks only where it pays, raw files
from before keep working, and a corrupt or hostile frame is refused without exhausting
memory."""

from __future__ import annotations

import hashlib
import os
import resource
import struct
import time
from pathlib import Path

import grpc
import pytest
import zstandard

from cloudgrpc_node.chunk_codec import MIN_SAVING, ChunkCodec
from cloudgrpc_node.chunk_store import ChunkCorrupt, ChunkStore
from cloudgrpc_node.scrubber import Scrubber
from cloudgrpc_proto import cloud_storage_pb2 as pb
from cloudgrpc_proto import errors, read_tokens
from tests.node.node_testkit import text_like

MIB = 1024 * 1024


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def on(root: Path, capacity: int = 64 * MIB, **codec: object) -> ChunkStore:
    return ChunkStore(root, capacity, ChunkCodec(**codec))  # type: ignore[arg-type]


def off(root: Path, capacity: int = 64 * MIB) -> ChunkStore:
    return ChunkStore(root, capacity, ChunkCodec(enabled=False))


def disk_bytes(store: ChunkStore) -> int:
    return sum(p.stat().st_size for p in (store.root / "chunks").rglob("*") if p.is_file())


def test_text_is_kept_compressed_and_reads_back_whole_and_in_ranges(tmp_path: Path) -> None:
    store = on(tmp_path / "s")
    data = text_like(4 * MIB)
    digest = sha(data)
    assert not store.put(digest, data).already_present
    packed = store.compressed_path_for(digest)
    assert packed.is_file() and not store.path_for(digest).exists()
    assert store.stored_path(digest) == packed
    assert packed.stat().st_mode & 0o777 == 0o600
    assert packed.stat().st_size < len(data) // 3
    assert store.used_bytes == packed.stat().st_size == disk_bytes(store)
    assert store.logical_bytes == len(data) and store.chunk_count == 1
    assert store.read(digest) == (data, len(data))
    for offset, length in ((0, 1), (1_000_000, 65_536), (len(data) - 10, 0),
                           (len(data) - 10, 100), (len(data), 0), (2 * MIB + 3, 1)):
        end = len(data) if length == 0 else offset + length
        assert store.read(digest, offset, length) == (data[offset:end], len(data))
    with pytest.raises(errors.InvalidArgument):
        store.get(digest, len(data) + 1)
    assert store.has([digest, "0" * 64]) == [digest]
    assert list(store.iter_chunks()) == [(digest, len(data))]  # the plaintext's size
    assert store.verify(digest) == (True, True)
    assert list((store.root / "tmp").iterdir()) == []

    again = store.put(digest, data)  # dedup: the same plaintext is already there
    assert again.already_present and store.chunk_count == 1
    assert store.used_bytes == packed.stat().st_size

    reopened = on(tmp_path / "s")  # the start-up scan counts the same
    assert (reopened.used_bytes, reopened.logical_bytes, reopened.chunk_count) == \
        (store.used_bytes, len(data), 1)
    assert reopened.delete([digest]) == 1
    assert (reopened.used_bytes, reopened.logical_bytes, reopened.chunk_count) == (0, 0, 0)
    assert disk_bytes(reopened) == 0


def test_incompressible_data_stays_raw(tmp_path: Path) -> None:
    store = on(tmp_path / "s")
    data = os.urandom(3 * MIB)
    digest = sha(data)
    store.put(digest, data)
    assert store.path_for(digest).read_bytes() == data
    assert not store.compressed_path_for(digest).exists()
    assert store.used_bytes == store.logical_bytes == len(data)
    assert store.get(digest, 5, 5) == data[5:10]


def test_a_saving_below_a_tenth_is_not_worth_a_frame(tmp_path: Path) -> None:
    """Random data with a compressible tail saving ~6 %: the sample of start, middle and
    end may look promising, the whole chunk does not shrink enough, so it stays raw. With
    a third of it compressible it is kept compressed."""
    store = on(tmp_path / "s")
    size = 2 * MIB
    slight = os.urandom(int(size * 0.94)) + bytes(size - int(size * 0.94))
    store.put(sha(slight), slight)
    assert store.path_for(sha(slight)).is_file()
    enough = os.urandom(size * 2 // 3) + text_like(size - size * 2 // 3)
    store.put(sha(enough), enough)
    packed = store.compressed_path_for(sha(enough))
    assert packed.is_file() and packed.stat().st_size <= (1 - MIN_SAVING) * size
    assert store.get(sha(enough)) == enough and store.get(sha(slight)) == slight
    # tiny chunks never pay for a frame
    assert ChunkCodec().encode(b"a" * 40) is None


def test_raw_chunks_from_before_the_upgrade_keep_working(tmp_path: Path) -> None:
    """A store written without compression, opened by a node with it on (and back):
    old files are read, counted and deduplicated as they are; new ones are compressed."""
    old = off(tmp_path / "s")
    legacy = text_like(MIB, seed=1)
    old.put(sha(legacy), legacy)
    assert old.path_for(sha(legacy)).read_bytes() == legacy  # raw, as before

    upgraded = on(tmp_path / "s")
    assert (upgraded.used_bytes, upgraded.logical_bytes) == (len(legacy), len(legacy))
    assert upgraded.get(sha(legacy), 100, 10) == legacy[100:110]
    assert upgraded.put(sha(legacy), legacy).already_present  # not stored a second time
    assert not upgraded.compressed_path_for(sha(legacy)).exists()
    fresh = text_like(MIB, seed=2)
    upgraded.put(sha(fresh), fresh)
    assert upgraded.compressed_path_for(sha(fresh)).is_file()
    assert upgraded.logical_bytes == 2 * MIB and upgraded.used_bytes < 2 * MIB

    downgraded = off(tmp_path / "s")  # compression switched off: frames are still read
    assert downgraded.get(sha(fresh)) == fresh
    assert downgraded.put(sha(fresh), fresh).already_present
    assert (downgraded.used_bytes, downgraded.logical_bytes) == \
        (upgraded.used_bytes, upgraded.logical_bytes)


def flip(path: Path, index: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[index] ^= 0x55
    path.write_bytes(bytes(raw))


def test_a_corrupt_frame_is_detected_replaced_and_counted_right(tmp_path: Path) -> None:
    store = on(tmp_path / "s")
    data = text_like(MIB)
    digest = sha(data)
    store.put(digest, data)
    packed = store.compressed_path_for(digest)
    good_size = packed.stat().st_size
    for index in (0, 10, good_size // 2, good_size - 1):  # magic, header, body, end
        original = packed.read_bytes()
        flip(packed, index)
        with pytest.raises(ChunkCorrupt):
            store.get(digest, 10, 10)
        assert store.verify(digest) == (True, False)
        packed.write_bytes(original)
    flip(packed, good_size // 2)
    # A node with compression now off gets the chunk again (a repair): the raw copy
    # replaces the bad frame, and the counters follow.
    plain = ChunkStore(store.root, 64 * MIB, ChunkCodec(enabled=False))
    assert not plain.put(digest, data).already_present
    assert not packed.exists() and plain.path_for(digest).read_bytes() == data
    assert (plain.used_bytes, plain.logical_bytes, plain.chunk_count) == \
        (len(data), len(data), 1)


def test_scrubber_quarantines_a_corrupt_compressed_chunk(tmp_path: Path) -> None:
    store = on(tmp_path / "s")
    good, bad = text_like(MIB, seed=3), text_like(MIB, seed=4)
    for data in (good, bad):
        store.put(sha(data), data)
    victim = store.compressed_path_for(sha(bad))
    flip(victim, victim.stat().st_size // 2)
    kept = store.compressed_path_for(sha(good)).stat().st_size
    scrubber = Scrubber(store, interval_s=1, rate_bytes_s=1e12)
    assert scrubber.scrub_once() == 1
    assert scrubber.take_reports() == [sha(bad)]
    assert not victim.exists()
    assert [p.name.split(".")[:2] for p in (store.root / "quarantine").iterdir()] == \
        [[sha(bad), "zst"]]
    assert (store.used_bytes, store.logical_bytes, store.chunk_count) == (kept, MIB, 1)
    with pytest.raises(errors.NotFound):
        store.get(sha(bad))
    assert store.get(sha(good)) == good


def hostile_frame(claimed: int, body: bytes = b"hello") -> bytes:
    """A zstd frame header that claims ``claimed`` bytes of plaintext, then one raw block."""
    descriptor = 0b1110_0000  # 8-byte content size, single segment, no checksum, no dict
    block = 1 | (len(body) << 3)  # last block, raw
    return (zstandard.FRAME_HEADER + bytes([descriptor]) + struct.pack("<Q", claimed)
            + block.to_bytes(3, "little") + body)


def plant(store: ChunkStore, digest: str, blob: bytes, compressed: bool = True) -> Path:
    path = store.compressed_path_for(digest) if compressed else store.path_for(digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(blob)
    return path


def test_hostile_frames_are_refused_without_exhausting_memory(tmp_path: Path) -> None:
    store = on(tmp_path / "s", max_plain_bytes=MIB)
    bomb = zstandard.ZstdCompressor().compress(bytes(256 * MIB))  # a real frame, tiny
    unsized = zstandard.ZstdCompressor(write_content_size=False).compress(text_like(MIB // 2))
    cases = {
        "a" * 64: hostile_frame(1 << 40),  # claims a terabyte
        "b" * 64: hostile_frame(256 * MIB),  # claims more than a chunk
        "c" * 64: bomb,  # a true 256 MiB of zeros in a few KiB
        "d" * 64: unsized,  # no stated size: the output could grow without end
        "e" * 64: hostile_frame(5, b"hello") + b"junk",  # decodes, but not to its name
        "f" * 64: b"not a frame at all",
    }
    for digest, blob in cases.items():
        plant(store, digest, blob)
    oversized_raw = plant(store, "9" * 64, b"", compressed=False)
    with open(oversized_raw, "wb") as handle:  # sparse: larger than any chunk, no disk used
        handle.truncate(4 * MIB)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB
    reopened = on(tmp_path / "s", max_plain_bytes=MIB)  # the scan reads headers safely
    assert reopened.chunk_count == len(cases) + 1
    for digest in [*cases, "9" * 64]:
        with pytest.raises(ChunkCorrupt):
            reopened.get(digest)
        assert reopened.verify(digest) == (True, False)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 128, f"memory grew by {grown_mib:.0f} MiB"
    # The scrubber moves them all aside; nothing is left counted.
    assert Scrubber(reopened, 1, 1e12).scrub_once() == len(cases) + 1
    assert (reopened.used_bytes, reopened.logical_bytes, reopened.chunk_count) == (0, 0, 0)


def test_chunks_larger_than_a_chunk_may_be_are_refused(tmp_path: Path) -> None:
    store = on(tmp_path / "s", max_plain_bytes=MIB)
    data = text_like(MIB + 1)
    with pytest.raises(errors.InvalidArgument):
        store.put(sha(data), data)
    assert store.chunk_count == 0 and disk_bytes(store) == 0


def test_capacity_counts_disk_bytes_not_plaintext(tmp_path: Path) -> None:
    """A node of 2 MiB takes 6 MiB of text (it fits compressed), and then exactly as much
    noise as its disk has left."""
    store = on(tmp_path / "s", capacity=2 * MIB)
    for seed in range(6):
        data = text_like(MIB, seed=10 + seed)
        store.put(sha(data), data)
    assert store.logical_bytes == 6 * MIB and store.used_bytes < 2 * MIB
    free = 2 * MIB - store.used_bytes
    assert store.free_bytes == free
    too_much = os.urandom(free + 1)
    with pytest.raises(errors.QuotaExceeded):
        store.put(sha(too_much), too_much)
    assert store.logical_bytes == 6 * MIB and store.chunk_count == 6
    fits = os.urandom(free)
    store.put(sha(fits), fits)
    assert store.used_bytes == 2 * MIB == disk_bytes(store) and store.free_bytes == 0


def test_codec_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        ChunkCodec(level=0)
    with pytest.raises(ValueError):
        ChunkCodec(level=20)
    assert ChunkCodec(enabled=False).encode(text_like(MIB)) is None
    text = text_like(MIB, seed=5)
    fast, small = ChunkCodec(level=1), ChunkCodec(level=9)  # level 9: no cached context
    frame = small.encode(text)
    assert frame is not None and fast.decode(frame) == text
    assert len(frame) < len(fast.encode(text) or b"")
    assert ChunkCodec(level=1).name == "zstd level 1" and ChunkCodec(enabled=False).name == "off"


# --- over the wire: every read path speaks plaintext, whatever the form on disk ---------------

SECRET = "s3cret"
TIMEOUT = 10


def test_every_chunk_rpc_reads_a_compressed_chunk_as_plaintext(start_node) -> None:
    """A node with compression on and one with it off: puts, ranged and batched reads,
    direct reads with a read token, listings, verification and repair copies in both
    directions all see the plaintext; each node keeps its own form."""
    packing = start_node("zstd", compression=True)
    plain = start_node("off", compression=False)
    data = text_like(3 * MIB, seed=7)
    digest = sha(data)
    reply = packing.stub.PutChunk(pb.PutChunkRequest(sha256=digest, data=data,
                                                     cluster_secret=SECRET), timeout=TIMEOUT)
    assert reply.success and reply.used_bytes < len(data) // 3
    assert packing.store.compressed_path_for(digest).is_file()

    part = packing.stub.GetChunk(pb.GetChunkRequest(
        sha256=digest, offset=MIB + 17, length=4096, cluster_secret=SECRET), timeout=TIMEOUT)
    assert part.data == data[MIB + 17:MIB + 17 + 4096] and part.chunk_size == len(data)
    token = read_tokens.issue(SECRET, digest, int(time.time()) + 60)
    direct = packing.stub.GetChunk(pb.GetChunkRequest(sha256=digest, read_token=token,
                                                      offset=len(data) - 5), timeout=TIMEOUT)
    assert direct.data == data[-5:]
    batch = packing.stub.GetChunks(pb.GetChunksRequest(sha256=[digest],
                                                       cluster_secret=SECRET), timeout=TIMEOUT)
    assert batch.results[0].data == data
    listed = list(packing.stub.ListChunks(pb.ListChunksRequest(cluster_secret=SECRET),
                                          timeout=TIMEOUT))
    assert (list(listed[0].sha256), list(listed[0].sizes)) == ([digest], [len(data)])
    assert list(packing.stub.HasChunks(pb.HasChunksRequest(
        sha256=[digest], cluster_secret=SECRET), timeout=TIMEOUT).present) == [digest]
    assert packing.stub.VerifyChunk(pb.VerifyChunkRequest(
        sha256=digest, cluster_secret=SECRET), timeout=TIMEOUT).valid

    # repair copies: compressed -> raw on the node with compression off, and back
    fetched = plain.stub.FetchChunkFrom(pb.FetchChunkFromRequest(
        sha256=digest, source_address=packing.address, cluster_secret=SECRET), timeout=TIMEOUT)
    assert fetched.success and fetched.used_bytes == len(data)
    assert plain.store.path_for(digest).read_bytes() == data
    third = start_node("zstd2", compression=True)
    third.stub.FetchChunkFrom(pb.FetchChunkFromRequest(
        sha256=digest, source_address=plain.address, cluster_secret=SECRET), timeout=TIMEOUT)
    assert third.store.compressed_path_for(digest).is_file()
    assert third.store.get(digest) == data

    # a rotten frame is DATA_LOSS on the wire, and VerifyChunk says so
    frame = packing.store.compressed_path_for(digest)
    flip(frame, frame.stat().st_size // 3)
    with pytest.raises(grpc.RpcError) as info:
        packing.stub.GetChunk(pb.GetChunkRequest(sha256=digest, offset=5, length=5,
                                                 cluster_secret=SECRET), timeout=TIMEOUT)
    assert info.value.code() == grpc.StatusCode.DATA_LOSS
    verdict = packing.stub.VerifyChunk(pb.VerifyChunkRequest(
        sha256=digest, cluster_secret=SECRET), timeout=TIMEOUT)
    assert verdict.present and not verdict.valid
    # ...and a repair from the good node puts a good copy back in place
    packing.stub.FetchChunkFrom(pb.FetchChunkFromRequest(
        sha256=digest, source_address=plain.address, cluster_secret=SECRET), timeout=TIMEOUT)
    assert packing.store.get(digest, 5, 5) == data[5:10]
    deleted = packing.stub.DeleteChunks(pb.DeleteChunksRequest(
        sha256=[digest], cluster_secret=SECRET), timeout=TIMEOUT)
    assert deleted.deleted == 1 and deleted.used_bytes == 0
    assert packing.store.logical_bytes == 0 and not frame.exists()
