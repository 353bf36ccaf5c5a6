"""Write-behind through a real mount: whole chunks of a file still open for writing reach
the nodes before its close, and a chunk changed after it was sent is sent again."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from tests.cluster import Account
from tests.mount.conftest import Mount, eventually

MiB = 1024 * 1024
CHUNK = 4 * MiB


def _metrics(m: Mount) -> dict[str, Any]:
    done = m.cli("status", "--json", str(m.path))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["metrics"]


def _on_nodes(m: Mount, sha: str) -> int:
    return sum(any(m.cluster.node_dir(n).rglob(sha + "*")) for n in m.cluster.nodes)


def test_chunks_reach_the_nodes_while_the_file_is_open(make_mount, account: Account) -> None:
    m = make_mount(account)
    start = _metrics(m)["chunks_written_ahead"]
    data = bytearray(os.urandom(3 * CHUNK + 12345))
    hashes = [hashlib.sha256(data[i:i + CHUNK]).hexdigest() for i in range(0, 3 * CHUNK, CHUNK)]
    with open(m.path / "growing.bin", "wb", buffering=0) as handle:
        handle.write(data)
        # still open, never flushed: the three whole chunks go to their nodes anyway
        eventually(lambda: all(_on_nodes(m, sha) == 2 for sha in hashes), 30)
        assert _metrics(m)["chunks_written_ahead"] >= start + 3
        # a change inside a chunk already sent: that chunk goes again at the upload
        handle.seek(CHUNK + 7)
        handle.write(b"changed")
        data[CHUNK + 7:CHUNK + 14] = b"changed"
    assert m.cli("sync", str(m.path)).returncode == 0
    listed = {f.filename: f for f in account.ls().files}
    assert "growing.bin" in listed
    # what the gateway serves is what was written last, change included
    assert account.download(listed["growing.bin"].file_id) == bytes(data)
    changed = hashlib.sha256(data[CHUNK:2 * CHUNK]).hexdigest()
    assert _on_nodes(m, changed) == 2
    # and after a remount, through the mount
    m.umount()
    m.start()
    assert hashlib.sha256((m.path / "growing.bin").read_bytes()).digest() == \
        hashlib.sha256(data).digest()
