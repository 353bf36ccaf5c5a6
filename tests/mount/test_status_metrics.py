"""The mount's own metrics in ``cloudgrpc status --json`` (issue 17), through a real mount."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from typing import Any

from tests.cluster import Account
from tests.mount.conftest import Mount, eventually

MiB = 1024 * 1024


def _metrics(m: Mount) -> dict[str, Any]:
    done = m.cli("status", "--json", str(m.path))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["metrics"]


def test_status_json_counts_uploads_downloads_and_cache(make_mount, account: Account) -> None:
    m = make_mount(account)
    start = _metrics(m)
    assert start["upload_queue_depth"] == 0 and start["bytes_pending_upload"] == 0
    assert start["chunk_cache_capacity"] > 0

    # a write through the mount: queued, then stored
    m.sh("head -c 1500000 /dev/urandom > written.bin")
    assert m.cli("sync", str(m.path)).returncode == 0
    after_write = _metrics(m)
    # (the shell's create may be stored first, and parts while it is written: on a loaded
    # machine two parts were seen before the whole; what was sent counts, at least the
    # whole file once, and never more than a few times over)
    assert after_write["uploads_done"] >= start["uploads_done"] + 1
    sent = after_write["bytes_uploaded"] - start["bytes_uploaded"]
    assert 1_500_000 <= sent < 4 * 1_500_000
    assert after_write["upload_queue_depth"] == 0 and after_write["bytes_pending_upload"] == 0
    assert after_write["uploads_failed"] == 0

    # a file of three chunks (4 MiB) stored by someone else, read sequentially: the first
    # chunk is fetched on demand, the next ones by read-ahead, then read from it
    data = os.urandom(9 * MiB)
    account.upload(data, "remote.bin")
    assert m.sh("sleep 0.3; ls remote.bin").returncode == 0
    got = m.sh("sha256sum remote.bin").stdout.split()[0]
    assert got == hashlib.sha256(data).hexdigest()
    read = _metrics(m)
    assert read["bytes_downloaded"] >= start["bytes_downloaded"] + len(data)
    assert read["chunk_cache_misses"] >= start["chunk_cache_misses"] + 1
    assert read["read_ahead_hits"] >= start["read_ahead_hits"] + 1, read
    assert read["chunk_cache_hits"] >= read["read_ahead_hits"]
    # the disk cache fills off the read path: soon, not at once
    eventually(lambda: _metrics(m)["chunk_cache_bytes"] >= len(data), 20)

    # the human form has them on one line
    shown = m.cli("status", str(m.path)).stdout
    assert "since mount" in shown and "read-ahead" in shown and "misses" in shown, shown


def test_control_socket_stays_private(mnt: Mount) -> None:
    sockets = list((mnt.work / "run" / "cloudgrpc").glob("mount-*.sock"))
    assert sockets
    for sock in sockets:
        assert stat.S_ISSOCK(sock.stat().st_mode)
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600
        assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700
