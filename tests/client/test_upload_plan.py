"""The upload plan: each chunk's SHA-256, from a file read several chunks at once or from
any stream read in order, with the hashes a caller vouches for taken as given."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest

from cloudgrpc_proto.transfer import UploadSource, hash_chunks

CHUNK = 64 * 1024


def _expected(data: bytes) -> list[tuple[int, int, str]]:
    return [(o, len(data[o:o + CHUNK]), hashlib.sha256(data[o:o + CHUNK]).hexdigest())
            for o in range(0, len(data), CHUNK)]


def _plan(source: UploadSource, known: dict[int, str] | None = None
          ) -> list[tuple[int, int, str]]:
    return [(e.offset, e.size, e.sha256) for e in hash_chunks(source, CHUNK, known)]


@pytest.mark.parametrize("size", [0, 100, CHUNK, 9 * CHUNK + 123])
def test_a_file_and_a_stream_plan_alike(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    path = tmp_path / "f"
    path.write_bytes(data)
    from_file = UploadSource.open(str(path), "f", None)
    assert from_file.file_descriptor() is not None  # read at once, by offset
    prefixed = io.BytesIO(b"header" + data)
    prefixed.seek(6)  # a stream handed over part-way: its chunks start there
    from_stream = UploadSource.open(prefixed, "f", None)
    assert from_stream.file_descriptor() is None
    try:
        assert _plan(from_file) == _plan(from_stream) == _expected(data)
    finally:
        from_file.handle.close()


def test_vouched_hashes_are_taken_and_only_for_whole_chunks(tmp_path: Path) -> None:
    data = os.urandom(4 * CHUNK + 10)
    path = tmp_path / "f"
    path.write_bytes(data)
    vouched = {CHUNK: "a" * 64, 4 * CHUNK: "b" * 64}  # the second is the short tail
    for source in (UploadSource.open(str(path), "f", None),
                   UploadSource.open(io.BytesIO(data), "f", None)):
        plan = _plan(source, vouched)
        want = _expected(data)
        want[1] = (CHUNK, CHUNK, "a" * 64)
        assert plan == want  # the tail is hashed whatever is vouched for it
        assert source.handle.tell() == source.start  # rewound for the sends


def test_a_file_that_shrinks_while_planned_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(os.urandom(3 * CHUNK))
    source = UploadSource.open(str(path), "f", None)
    os.truncate(path, CHUNK + 5)
    try:
        with pytest.raises(OSError, match="shrank"):
            hash_chunks(source, CHUNK)
    finally:
        source.handle.close()
