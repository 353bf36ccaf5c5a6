"""DownloadSmallFiles reads a folder's worth of small files in a few node calls (GetChunks)
and still serves every file when a node is gone or holds a rotten copy."""

from __future__ import annotations

import os
import signal

from cloudgrpc_proto import cloud_storage_pb2 as pb
from tests.cluster import Cluster


def _small(c: Cluster, token: str, ids: list[str]) -> dict[str, pb.SmallFileContent]:
    return {r.file_id: r for r in c.files.DownloadSmallFiles(pb.DownloadSmallFilesRequest(
        session_token=token, file_ids=ids), timeout=60)}


def test_small_files_come_back_whole_through_failures(sqlite_cluster: Cluster) -> None:
    c = sqlite_cluster
    acct = c.sign_up()
    contents = {acct.upload(data, f"f{i}").file_id: data
                for i, data in enumerate(os.urandom(3000 + i) for i in range(120))}
    empty = acct.upload(b"", "empty").file_id
    contents[empty] = b""
    ids = [*contents, "no-such-file"]
    got = _small(c, acct.token, ids)
    assert {fid: r.data for fid, r in got.items() if fid in contents} == contents
    assert got["no-such-file"].error and not got["no-such-file"].data

    # a node gone: every file still comes back whole from the other replica
    names = sorted(c.nodes)
    c.stop_node(names[1], signal.SIGKILL)
    got = _small(c, acct.token, list(contents))
    assert {fid: r.data for fid, r in got.items()} == contents

    # and every copy on another node rotten: what has an intact copy left comes back
    # whole, the rest (both replicas gone) is refused by name, never served rotten
    rotten = 0
    for path in c.node_dir(names[0]).rglob("*"):
        if path.is_file() and len(path.name) == 64:
            raw = bytearray(path.read_bytes())
            if raw:
                raw[0] ^= 1
                path.write_bytes(bytes(raw))
                rotten += 1
    assert rotten > 20
    got = _small(c, acct.token, list(contents))
    served = {fid: r.data for fid, r in got.items() if not r.error}
    assert all(served[fid] == contents[fid] for fid in served)
    assert all("unreadable" in r.error for r in got.values() if r.error)
    assert len(served) >= len(contents) // 3
