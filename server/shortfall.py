"""Why a chunk has fewer live copies than ``REPLICATION_FACTOR`` promises.

Shared by the repair loop (its "cannot place copies" event), the admin status and the
metrics (how many chunks are short, and why: ``count_short``), so all name the same cause
for the same chunk:

- ``NO_ROOM``: nodes exist that could take a copy, but not enough of them have room for it;
- ``TOO_FEW_NODES``: even a copy on every online node would leave it short (fewer online
  nodes than the factor);
- ``PENDING``: an online node with room is there; repair copies it (or waits for the grace
  period of an offline holder).

Only chunks a file references are ever classified: garbage is not under-replicated.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session as DbSession

from .models import Chunk, FileChunk, Replica, StorageNode

NO_ROOM = "no_room"
TOO_FEW_NODES = "too_few_nodes"
PENDING = "pending"


def reason(live_copies: int, candidate_free: Iterable[int], size: int, factor: int
           ) -> str | None:
    """The cause of a chunk's shortfall, or None when it has ``factor`` live copies.

    ``candidate_free`` is the free space of each online node that does not hold the chunk.
    Room is judged as placement does (``free > size``). When both causes apply, the
    one that blocks a copy now (room) is named.
    """
    needed = factor - live_copies
    if needed <= 0:
        return None
    free = list(candidate_free)
    with_room = sum(1 for f in free if f > size)
    if with_room < min(needed, len(free)):
        return NO_ROOM
    if len(free) < needed:
        return TOO_FEW_NODES
    return PENDING


@dataclass
class Tally:
    """Chunks short of the factor, by cause."""

    no_room: int = 0
    too_few_nodes: int = 0
    pending: int = 0
    missing_copies: int = 0  # sum over short chunks of (factor - live copies)

    def add(self, cause: str, missing: int) -> None:
        self.missing_copies += missing
        if cause == NO_ROOM:
            self.no_room += 1
        elif cause == TOO_FEW_NODES:
            self.too_few_nodes += 1
        else:
            self.pending += 1

    @property
    def short(self) -> int:
        return self.no_room + self.too_few_nodes + self.pending

    @property
    def unplaceable(self) -> int:
        """Chunks repair cannot bring to the factor by itself."""
        return self.no_room + self.too_few_nodes

    def describe(self, factor: int, online_nodes: int) -> str:
        parts = []
        if self.too_few_nodes:
            parts.append(f"{self.too_few_nodes} because fewer online nodes ({online_nodes}) "
                         f"than REPLICATION_FACTOR ({factor})")
        if self.no_room:
            parts.append(f"{self.no_room} because no node that could take a copy has room")
        return "; ".join(parts)


@dataclass
class ShortfallNotice:
    """Rate limit for the repair loop's "cannot place copies" event.

    One event when the counts change (a cause appears, grows, shrinks or clears), else at
    most one every ``repeat_s`` while they stay the same: a cluster short for a day does
    not fill the event table with one row per pass, let alone one per chunk.
    """

    repeat_s: float
    _last: tuple[int, int] = (0, 0)
    _last_at: float = field(default=-1e18)

    def due(self, tally: Tally, now: float) -> bool:
        key = (tally.no_room, tally.too_few_nodes)
        if key == self._last and (key == (0, 0) or now - self._last_at < self.repeat_s):
            return False
        self._last, self._last_at = key, now
        return True


def count_short(s: DbSession, nodes: Sequence[StorageNode], factor: int) -> tuple[Tally, int]:
    """Chunks a file references (trash included) with fewer than ``factor`` live copies,
    by cause; and how many chunks files reference at all.

    A copy is live on an online or draining node. Unreferenced chunks (an upload in
    flight, a refused upload's leftovers awaiting collection) are left out: they are not
    data anyone can lose. The database counts live copies; only the short chunks' holders
    are read here to name a cause.
    """
    live_ids = [n.id for n in nodes if n.status in ("online", "draining")]
    free = {n.id: max(0, n.capacity_bytes - n.used_bytes) for n in nodes
            if n.status == "online"}
    used = exists().where(FileChunk.chunk_sha256 == Chunk.sha256)
    referenced = s.scalar(
        select(func.count()).select_from(Chunk).where(used)) or 0
    live = func.count(Replica.node_id)
    short = (select(Chunk.sha256.label("sha"), Chunk.size.label("size"))
             .outerjoin(Replica, (Replica.chunk_sha256 == Chunk.sha256)
                        & Replica.node_id.in_(live_ids))
             .where(used).group_by(Chunk.sha256, Chunk.size)
             .having(live < factor).subquery())
    sizes: dict[str, int] = {}
    held: dict[str, set[str]] = {}
    rows = s.execute(
        select(short.c.sha, short.c.size, Replica.node_id)
        .outerjoin(Replica, (Replica.chunk_sha256 == short.c.sha)
                   & Replica.node_id.in_(live_ids)))
    for sha, size, node_id in rows:
        sizes[sha] = size
        if node_id is not None:
            held.setdefault(sha, set()).add(node_id)
    tally = Tally()
    for sha, size in sizes.items():
        have = held.get(sha, set())
        cause = reason(len(have), [f for node_id, f in free.items() if node_id not in have],
                       size, factor)
        if cause is not None:
            tally.add(cause, factor - len(have))
    return tally, int(referenced)
