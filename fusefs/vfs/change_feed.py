"""The gateway's change feed (WatchChanges): what other clients change reaches the caches.

One stream for the mount's life, re-subscribed after failures (backing off to 5 s). Its
first event, ``hello``, says the feed is up (so the VFS may trust its caches for longer
and answer folder changes ahead of the gateway) and what the gateway offers. Every other
event names entries and folders another client changed: the VFS forgets what it cached
about them and the kernel is told to drop its entries and attributes, so a second mount
sees a change within about a second. Echoes of this mount's own changes are skipped
(``own_changes.py``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import trio

from cloudgrpc_proto import cloud_storage_pb2 as pb
from cloudgrpc_proto import errors

from ..inodes import SHARED_INODE
from .own_changes import name_key

if TYPE_CHECKING:
    from .core import VFS

log = logging.getLogger(__name__)


class ChangeFeed:
    """Follows WatchChanges for a VFS and applies each event to its caches."""

    def __init__(self, vfs: VFS) -> None:
        self.vfs = vfs
        self.connected = False  # the hello came, and the stream has not failed since
        self.client_folder_ids = False  # the gateway takes folder ids chosen here
        self._stream: Any = None

    async def run(self) -> None:
        """Follow the feed for the mount's life, re-subscribing after failures."""
        delay = 0.5
        while True:
            try:
                stream = await self.vfs.call(self.vfs.client.watch_changes)
                self._stream = stream
                await trio.to_thread.run_sync(self._pump, stream, abandon_on_cancel=True)
            except errors.CloudError as exc:
                log.info("change feed unavailable: %s", exc.message)
            finally:
                if self._stream is not None:
                    self._stream.cancel()
                    self._stream = None
            self.connected = False
            await trio.sleep(delay)
            delay = min(delay * 2, 5.0)

    def stop(self) -> None:
        if self._stream is not None:
            self._stream.cancel()

    def _pump(self, stream: Any) -> None:
        for event in stream:
            trio.from_thread.run_sync(self.apply, event)
        raise errors.Unavailable("change feed ended")

    def apply(self, ev: pb.ChangeEvent) -> None:
        """Drop what the kernel and this mount cache about the entries a change names."""
        vfs = self.vfs
        if ev.kind == "hello":
            if not self.connected:
                vfs.all_stale()  # whatever happened while the feed was down
            self.connected = True
            vfs.own.echo_free = ev.echo_free  # our own changes will not come back
            self.client_folder_ids = ev.client_folder_ids
            return
        own = vfs.own.consume(ev.entry_id)
        if not own and ev.kind in ("created", "restored"):
            own = vfs.own.consume(name_key(ev.parent_folder_id, ev.name))
        if own:
            return
        log.debug("change %s %s %s/%s", ev.kind, ev.entry_id, ev.parent_folder_id, ev.name)
        table, kernel = vfs.table, vfs.kernel
        if ev.kind in ("deleted", "restored"):
            vfs.trash_changed()
        if not ev.parent_folder_id:
            shared = table.get(SHARED_INODE)
            if shared is not None:
                shared.children = None
        node = table.by_entry(ev.entry_id)
        if node is not None:
            node.attrs_at = 0.0
            if ev.kind in ("updated", "restored", "created"):
                vfs.reader.forget(node.entry_id)
                node.kernel_version = -1
                kernel.invalidate_inode(node.ino)
            if ev.kind == "deleted" and vfs.writer.get(node.ino) is None:
                parent = table.get(node.parent)
                if parent is not None:
                    parent.children = None
                    parent.changes += 1  # a listing out now may predate it: asked again
                    kernel.invalidate_entry(parent.ino, node.name)
        for folder_id, name in (
            (ev.parent_folder_id, ev.name),
            (ev.old_parent_folder_id, ev.old_name),
        ):
            if not folder_id:
                continue
            folder = table.by_entry(folder_id)
            if folder is None:
                continue
            folder.children = None
            folder.changes += 1  # another client's entry change: replies out now are stale
            folder.attrs_at = 0.0
            if name:
                kernel.invalidate_entry(folder.ino, name)
            kernel.invalidate_inode(folder.ino, attr_only=True)
