"""No stale state: a lookup or listing reply that was asked for before an entry change
landed (a queued delete the gateway answered, an rmdir, a rename) never brings the old
entry back. The VFS runs without FUSE against the real cluster; the reply of
the first lookup (or listing) is held until the change has landed, which is the race the
issue describes, made certain instead of rare.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from cloudgrpc_fusefs.inodes import Node
from cloudgrpc_fusefs.vfs import VFS, Caller, Options
from cloudgrpc_proto.client import CloudClient
from tests.cluster import Account, Cluster


class HeldReply:
    """Wraps one client call: its first answer is held back until ``release``."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.asked = threading.Event()
        self.gate = threading.Event()
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        first = self.calls == 1
        try:
            return self.fn(*args, **kwargs)
        finally:
            if first:
                self.asked.set()
                self.gate.wait(30)

    async def wait_asked(self) -> None:
        with trio.fail_after(30):
            while not self.asked.is_set():
                await trio.sleep(0.005)


def _filesystem(cluster: Cluster, account: Account, tmp: Path) -> tuple[VFS, Node]:
    client = CloudClient(cluster.address, session_token=account.token)
    folder = client.create_folder("d").folder
    for name in ("f", "g", "h"):
        account.upload(name.encode(), name, folder_id=folder.folder_id)
    client.create_folder("e")
    # queued deletes wait for a flush (the test's ``change``), never go out on their own
    fs = VFS(client, client.list_files(), tmp / "chunks", tmp / "staging",
             Options(delete_delay=3600))
    d = fs.table.get(fs.table.root.children["d"])  # type: ignore[index]
    assert d is not None and d.children is None  # never listed: lookups ask the gateway
    return fs, d


async def _lookup_across(fs: VFS, folder: Node, name: str, method: str,
                         change: Callable[[], Any]) -> Any:
    """Look ``name`` up with its reply held until ``change()`` has landed."""
    held = HeldReply(getattr(fs.client, method))
    setattr(fs.client, method, held)
    result: list[Any] = []

    async def ask() -> None:
        if method == "stat":
            result.append(await fs._child(folder, name))
        else:
            result.append(dict(await fs.children(folder)))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask)
        await held.wait_asked()
        await change()
        held.gate.set()
    setattr(fs.client, method, held.fn)
    return result[0]


def test_replies_in_flight_never_bring_back_removed_entries(
        mount_cluster: Cluster, account: Account, tmp_path: Path) -> None:
    fs, d = _filesystem(mount_cluster, account, tmp_path)

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(fs.deleter.run)
            # unlink: the delete is queued (hidden) when the lookup leaves, and answered by
            # the gateway (no longer queued) before the lookup's reply is applied
            f = await fs._child(d, "f")
            assert f is not None
            d.children_at = 0.0
            await fs._remove_file(f)
            d.children = None
            found = await _lookup_across(fs, d, "f", "stat", fs.deleter.flush)
            assert found is None, "the unlinked file came back"
            # the same through a listing
            g = await fs._child(d, "g")
            assert g is not None
            await fs._remove_file(g)
            d.children = None
            listed = await _lookup_across(fs, d, "", "list_files", fs.deleter.flush)
            assert "g" not in listed and "h" in listed
            # rename: a lookup of the old name asked before the move, answered after it
            d.children = None
            h = await fs._child(d, "h")
            assert h is not None
            d.children = None
            e = await fs._child(fs.table.root, "e")
            assert e is not None

            async def move() -> None:
                await fs.rename(d.ino, "h", e.ino, "h2")

            found = await _lookup_across(fs, d, "h", "stat", move)
            assert found is None, "the renamed file is back under its old name"
            assert h.parent == e.ino and h.name == "h2"
            # rmdir: a lookup of the folder asked before, answered after
            sub = await fs.mkdir(e.ino, "sub", 0o755, Caller())
            e.children = None

            async def rmdir() -> None:
                await fs.rmdir(e.ino, "sub")

            found = await _lookup_across(fs, e, "sub", "stat", rmdir)
            assert found is None, "the removed folder came back"
            assert sub.st_ino not in [n for n in (e.children or {}).values()]
            nursery.cancel_scope.cancel()

    try:
        trio.run(scenario)
    finally:
        fs.client.close()

