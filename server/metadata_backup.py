"""Online metadata backup: every table in one consistent snapshot, while the gateway serves.

One read transaction (``Database.snapshot``: REPEATABLE READ, READ ONLY on PostgreSQL; one
WAL read transaction on SQLite) reads the schema's revision and every table the models
define, in dependency order, so the dump is a single point in time: a file committed
before it began is in it with all its chunks and replicas, one committed after it began
is not in it at all. The rows are encoded and compressed as they are read
(``snapshot_format``) and handed out in pieces, so neither the gateway nor the client
holds the whole dump in memory. A gateway takes one backup at a time: a second one is
refused at once instead of doubling the load on the database.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata

from sqlalchemy import select, text

from cloudgrpc_proto.errors import RateLimited

from .db import Database
from .models import Base, utcnow
from .snapshot_format import FORMAT_NAME, FORMAT_VERSION, SnapshotEncoder, encode_value, type_tag
from .wire import iso

PIECE_BYTES = 256 * 1024  # compressed bytes per BackupPiece
FLUSH_EVERY_S = 2.0       # a piece at least this often, so a client can tell "slow" from "stuck"
ROWS_PER_FETCH = 1000


def gateway_version() -> str:
    try:
        return metadata.version("cloudgrpc")
    except metadata.PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class SnapshotSummary:
    size: int
    sha256: str
    tables: int
    rows: int
    revision: str
    created_at: str
    table_rows: dict[str, int]


class MetadataBackup:
    """Takes snapshots of one gateway's database, one at a time."""

    def __init__(self, db: Database, keys: Callable[[], dict[str, str]],
                 version: str | None = None, piece_bytes: int = PIECE_BYTES,
                 flush_every_s: float = FLUSH_EVERY_S) -> None:
        self.db = db
        self._keys = keys
        self.version = version or gateway_version()
        self.piece_bytes = piece_bytes
        self.flush_every_s = flush_every_s
        self._busy = threading.Lock()

    def take(self) -> Snapshot:
        """A snapshot to stream, or ``RateLimited`` while another backup runs here."""
        if not self._busy.acquire(blocking=False):
            raise RateLimited("a metadata backup is already running on this gateway: wait "
                              "for it to finish")
        return Snapshot(self)

    def _release(self) -> None:
        self._busy.release()


class Snapshot:
    """One backup in progress: iterate ``pieces()``, then read ``summary``. Use it as a
    context manager: leaving ends the read transaction and frees the gateway's backup slot,
    also when the client went away half-way."""

    def __init__(self, owner: MetadataBackup) -> None:
        self._owner = owner
        self._stack = contextlib.ExitStack()
        self._stack.callback(owner._release)
        self.summary: SnapshotSummary | None = None

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def pieces(self) -> Iterator[bytes]:
        """The backup file's bytes, in pieces of about ``piece_bytes``."""
        gen = self._pieces()
        self._stack.callback(gen.close)  # ends the transaction if the caller stops early
        return gen

    def _pieces(self) -> Iterator[bytes]:
        owner = self._owner
        encoder = SnapshotEncoder()
        pending: list[bytes] = []
        held = 0
        last = time.monotonic()

        def ready(data: bytes) -> bytes | None:
            """Queue ``data``; a piece when enough is queued or it is time to send one."""
            nonlocal held, last
            if data:
                pending.append(data)
                held += len(data)
            if held >= owner.piece_bytes or (time.monotonic() - last >= owner.flush_every_s):
                if held < owner.piece_bytes:
                    flushed = encoder.flush()
                    if flushed:
                        pending.append(flushed)
                        held += len(flushed)
                piece = b"".join(pending)
                pending.clear()
                held = 0
                last = time.monotonic()
                return piece or None
            return None

        counts: dict[str, int] = {}
        with owner.db.snapshot() as conn:
            revision = str(conn.execute(text("SELECT version_num FROM alembic_version"))
                           .scalar_one())
            created_at = iso(utcnow())
            header = {"kind": "header", "format": FORMAT_NAME, "version": FORMAT_VERSION,
                      "created_at": created_at, "revision": revision,
                      "gateway_version": owner.version,
                      "source_database": conn.dialect.name, "contains_secrets": True}
            for record in (header, {"kind": "keys", "keys": owner._keys()}):
                piece = ready(encoder.add(record))
                if piece:
                    yield piece
            streaming = conn.execution_options(yield_per=ROWS_PER_FETCH)
            for table in Base.metadata.sorted_tables:
                columns = list(table.columns)
                tags = [type_tag(c) for c in columns]
                piece = ready(encoder.add({"kind": "table", "name": table.name, "columns": [
                    [c.name, tag] for c, tag in zip(columns, tags, strict=True)]}))
                if piece:
                    yield piece
                n = 0
                rows = streaming.execute(select(*columns).order_by(*table.primary_key.columns))
                for row in rows:
                    n += 1
                    piece = ready(encoder.add([encode_value(tag, value)
                                               for tag, value in zip(tags, row, strict=True)]))
                    if piece:
                        yield piece
                counts[table.name] = n
        total = sum(counts.values())
        pending.append(encoder.finish({"tables": counts, "rows": total}))
        yield b"".join(pending)
        self.summary = SnapshotSummary(
            size=encoder.size, sha256=encoder.sha256, tables=len(counts), rows=total,
            revision=revision, created_at=created_at, table_rows=counts)
