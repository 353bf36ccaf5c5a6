"""The account's free space as the mount counts it: quota checks before bytes are staged.

A write that grows a file is refused (EDQUOT) when the quota cannot hold it, rather than
staged and failed at upload time. The answer comes from GetStorageInfo (asked at most every
``SPACE_TTL`` seconds, and afresh for ``df``) minus what staged copies will still add. Summing
every staged copy on every growing write would make copying n files cost n² steps, so a
running allowance is kept between full reckonings; an upload turns staged growth into used
space in the cached answer instead of asking again.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from cloudgrpc_proto import cloud_storage_pb2 as pb
from cloudgrpc_proto import errors

from ..inodes import InodeTable, Node
from ..writer import Writer

SPACE_TTL = 5.0


class Space:
    """GetStorageInfo's answer, cached, with the room staged writes may still take."""

    def __init__(self, ask: Callable[[], Awaitable[pb.StorageInfoResponse]], writer: Writer,
                 table: InodeTable) -> None:
        self._ask = ask
        self._writer = writer
        self._table = table
        self._info: pb.StorageInfoResponse | None = None
        self._at = 0.0
        # Bytes staged writes may still add before the quota is worked out again (None =
        # work it out on the next growing write).
        self._room_left: int | None = None

    async def info(self, fresh: bool = False) -> pb.StorageInfoResponse:
        if fresh or self._info is None or time.monotonic() - self._at > SPACE_TTL:
            self._info = await self._ask()
            self._at = time.monotonic()
            self._room_left = None
        return self._info

    def pending_growth(self) -> int:
        """Bytes the staged copies will add to the account once uploaded."""
        return self._writer.pending_growth(self._server_size)

    def _server_size(self, ino: int) -> int:
        node = self._table.get(ino)
        return node.size if node is not None else 0

    async def check_growth(self, node: Node, new_size: int) -> None:
        """Refuse growing ``node`` to ``new_size`` when the quota cannot hold it now."""
        st = self._writer.get(node.ino)
        current = st.size if st is not None else node.size
        if new_size <= current:
            return
        space = await self.info()
        extra = new_size - current
        if self._room_left is not None and extra <= self._room_left:
            self._room_left -= extra
            return
        growth = self.pending_growth()
        if st is not None and st.dirty:
            growth -= max(0, st.size - node.size)
        growth += max(0, new_size - node.size)
        if growth > space.available_bytes:
            self._room_left = None
            raise errors.QuotaExceeded(f"{growth} bytes pending, {space.available_bytes} available")
        self._room_left = space.available_bytes - growth

    def uploaded(self, grown: int | None) -> None:
        """An upload stored ``grown`` more bytes (None: unknown, ask again next time)."""
        if grown is None:
            self._at = 0.0
        elif self._info is not None:
            self._info.available_bytes = max(0, self._info.available_bytes - grown)
