"""``cloudgrpc-gateway --restore FILE``: a metadata backup into an empty database.

The order protects what is there: the whole file is read and checked first (header,
zstd checksum, the content's SHA-256, row counts), then the schema revision is checked
against this code's migrations, then the key files in ``DATA_DIR``, then the database must
hold no user, file or node. Only then, in ONE transaction: the schema is created through
the migrations up to the backup's revision, rows the migrations seeded (the default tiers)
are cleared, every table is loaded in dependency order (parents before children within a
self-referencing table), PostgreSQL sequences are moved past the loaded ids, and the
schema is upgraded to this code's newest revision. Any failure rolls all of it back, so
the database is left as it was. The keys are written last (0600). It never serves.

Exit status (documented in the README): 0 restored; 1 the load failed (database error,
rolled back); 2 bad setting; 4 no such file; 5 a key file in DATA_DIR differs from the
backup's (``--overwrite-keys``); 10 the database is not empty, or its schema or the
backup's is newer than this code; 12 the database cannot be reached; 14 the file is not
a usable backup (not one, corrupt, truncated).
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, MetaData, Table, func, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from cloudgrpc_proto.errors import (
    CloudError,
    DataLoss,
    FailedPrecondition,
    NotFound,
    Unavailable,
)

from .config import Settings
from .db import MIGRATIONS, Database
from .key_files import KeyPlan, plan_key_restore, write_keys
from .restore_guard import mark_restored
from .snapshot_format import SnapshotInfo, TableDump, check_snapshot, decode_value, read_records

log = logging.getLogger(__name__)

PROG = "cloudgrpc-gateway"
INSERT_BATCH = 1000
# A database holding any of these rows is somebody's data: never restored over.
GUARDED_TABLES = (("users", "user"), ("files", "file"), ("storage_nodes", "storage node"))


@dataclass
class RestoreSummary:
    info: SnapshotInfo
    database: str
    head: str
    keys: KeyPlan
    cleared: dict[str, int] = field(default_factory=dict)

    def rows_of(self, table: str) -> int:
        return next((t.rows for t in self.info.tables if t.name == table), 0)


def restore(settings: Settings, path: Path, *, overwrite_keys: bool = False) -> RestoreSummary:
    """Check ``path``, then load it into the empty database of ``settings`` and its keys
    into ``settings.data_dir``. Raises a ``CloudError`` saying why not, changing nothing."""
    if not path.is_file():
        raise NotFound(f"{path}: no such file")
    info = check_snapshot(str(path))
    scripts = _scripts()
    head = scripts.get_current_head() or ""
    _check_known_revision(scripts, info.revision, head)
    keys = plan_key_restore(settings.data_dir, info.keys, overwrite_keys)
    db = Database(settings.database_url)
    try:
        with _database_errors():
            _refuse_unless_empty(db, scripts, info.revision)
            with db.engine.execution_options(sqlite_immediate=True).begin() as conn:
                db.migrate(info.revision, conn)
                cleared = _clear_seeded_rows(conn, info)
                _load(conn, path, info)
                _reset_sequences(conn, info)
                db.migrate("head", conn)
                mark_restored(conn, str(info.header.get("created_at") or ""))
        summary = RestoreSummary(info, _shown(db.url), head, keys, cleared)
    finally:
        db.dispose()
    write_keys(keys)
    return summary


# --- checks before anything is written ----------------------------------------------------


def _scripts() -> Any:
    """The migrations this code carries (Alembic's script directory)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(MIGRATIONS))


def _lineage(scripts: Any, revision: str) -> list[str]:
    """``revision`` and every revision before it."""
    return [r.revision for r in scripts.walk_revisions(base="base", head=revision)]


def _check_known_revision(scripts: Any, revision: str, head: str) -> None:
    from alembic.util import CommandError

    try:
        known = scripts.get_revision(revision) is not None
    except CommandError:
        known = False
    if not known:
        raise FailedPrecondition(
            f"the backup's schema (revision {revision}) is newer than this CloudGrpc knows "
            f"(its newest is {head}): restore it with the version that made it, or a newer one")


def _refuse_unless_empty(db: Database, scripts: Any, revision: str) -> None:
    """``FailedPrecondition`` naming what the database holds, or a schema this backup
    cannot be loaded under (newer than the backup's revision)."""
    from alembic.runtime.migration import MigrationContext

    with db.engine.connect() as conn:
        tables = set(inspect(conn).get_table_names())
        held = []
        for table, noun in GUARDED_TABLES:
            if table in tables:
                n = conn.execute(select(func.count()).select_from(
                    Table(table, MetaData()))).scalar_one()
                if n:
                    held.append(f"{n} {noun}{'' if n == 1 else 's'}")
        current = MigrationContext.configure(conn).get_current_revision() \
            if "alembic_version" in tables else None
    if held:
        raise FailedPrecondition(
            f"the database {_shown(db.url)} is not empty: it holds {', '.join(held)}; "
            "restore only into a new, empty database")
    if current is not None and current != revision and current not in _lineage(scripts,
                                                                                revision):
        raise FailedPrecondition(
            f"the database {_shown(db.url)} has schema revision {current}, newer than the "
            f"backup's ({revision}): restore into a new database, before any gateway "
            "started on it")


# --- the load, inside the caller's transaction ----------------------------------------------


def _reflect(conn: Connection, info: SnapshotInfo) -> dict[str, Table]:
    meta = MetaData()
    names = [t.name for t in info.tables]
    present = set(inspect(conn).get_table_names())
    missing = [n for n in names if n not in present]
    if missing:
        raise DataLoss(f"the backup has tables its schema revision {info.revision} does "
                       f"not create: {', '.join(missing)}")
    meta.reflect(conn, only=names)
    return {name: meta.tables[name] for name in names}


def _clear_seeded_rows(conn: Connection, info: SnapshotInfo) -> dict[str, int]:
    """Empty the tables the backup fills (a migration seeds the default tiers; a gateway
    started once leaves events), children first; how many rows went from which table."""
    tables = _reflect(conn, info)
    cleared: dict[str, int] = {}
    for dump in reversed(info.tables):
        gone = conn.execute(tables[dump.name].delete()).rowcount
        if gone:
            cleared[dump.name] = int(gone)
    return cleared


def _load(conn: Connection, path: Path, info: SnapshotInfo) -> None:
    tables = _reflect(conn, info)
    dumps = {t.name: t for t in info.tables}
    with path.open("rb") as f:
        current: _TableLoader | None = None
        for record in read_records(f, str(path)):  # checks the SHA-256 again at the end
            if isinstance(record, list):
                if current is None:
                    raise DataLoss(f"{path} changed while it was being restored")
                current.add(record)
            elif record.get("kind") == "table":
                if current is not None:
                    current.finish()
                dump = dumps.get(str(record.get("name")))
                if dump is None:  # the file changed since it was checked
                    raise DataLoss(f"{path} changed while it was being restored")
                current = _TableLoader(conn, tables[dump.name], dump)
        if current is not None:
            current.finish()


class _TableLoader:
    """Inserts one table's rows in batches; a table whose rows reference each other
    (folders: parent_id) is inserted parents first."""

    def __init__(self, conn: Connection, table: Table, dump: TableDump) -> None:
        unknown = [name for name, _ in dump.columns if name not in table.c]
        if unknown:
            raise DataLoss(f"the backup's table {dump.name} has columns its schema does not: "
                           f"{', '.join(unknown)}")
        self.conn = conn
        self.table = table
        self.dump = dump
        self.names = [name for name, _ in dump.columns]
        self.tags = [tag for _, tag in dump.columns]
        self.self_refs = [(fk.parent.name, fk.column.name) for fk in table.foreign_keys
                          if fk.column.table is table]
        self.batch: list[dict[str, Any]] = []
        self.inserted = 0

    def add(self, values: list[Any]) -> None:
        self.batch.append({name: decode_value(tag, value) for name, tag, value
                           in zip(self.names, self.tags, values, strict=True)})
        if not self.self_refs and len(self.batch) >= INSERT_BATCH:
            self._flush(self.batch)
            self.batch = []

    def finish(self) -> None:
        rows = self.batch if not self.self_refs else list(_parents_first(
            self.batch, self.self_refs))
        for i in range(0, len(rows), INSERT_BATCH):
            self._flush(rows[i:i + INSERT_BATCH])
        self.batch = []
        if self.inserted != self.dump.rows:
            raise DataLoss(f"{self.dump.name}: loaded {self.inserted} rows, the backup "
                           f"has {self.dump.rows}")

    def _flush(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            self.conn.execute(self.table.insert(), rows)
            self.inserted += len(rows)


def _parents_first(rows: list[dict[str, Any]], refs: list[tuple[str, str]]
                   ) -> Iterator[dict[str, Any]]:
    """``rows`` ordered so that a row comes after every row of the list it references."""
    keys = {(target, row[target]) for _, target in refs for row in rows}
    waiting: dict[tuple[str, Any], list[int]] = {}
    blocked = [0] * len(rows)
    ready: list[int] = []
    for i, row in enumerate(rows):
        for column, target in refs:
            value = row[column]
            if value is not None and (target, value) in keys and value != row[target]:
                waiting.setdefault((target, value), []).append(i)
                blocked[i] += 1
        if not blocked[i]:
            ready.append(i)
    done = 0
    while ready:
        i = ready.pop()
        done += 1
        yield rows[i]
        for _, target in refs:
            for child in waiting.pop((target, rows[i][target]), []):
                blocked[child] -= 1
                if not blocked[child]:
                    ready.append(child)
    if done != len(rows):
        raise DataLoss("rows that reference each other in a cycle: the backup is corrupt")


def _reset_sequences(conn: Connection, info: SnapshotInfo) -> None:
    """PostgreSQL: a serial column's sequence continues after the largest loaded id (else
    the next event would collide with a restored one). SQLite needs nothing."""
    if conn.dialect.name != "postgresql":
        return
    quote = conn.dialect.identifier_preparer.quote
    for dump in info.tables:
        for column, tag in dump.columns:
            if tag != "int":
                continue
            sequence = conn.execute(text("SELECT pg_get_serial_sequence(:t, :c)"),
                                    {"t": dump.name, "c": column}).scalar()
            if sequence:
                conn.execute(text(
                    f"SELECT setval(:s, COALESCE((SELECT MAX({quote(column)}) FROM "
                    f"{quote(dump.name)}), 0) + 1, false)"), {"s": sequence})


# --- the command line ------------------------------------------------------------------------


class RestoreFailed(CloudError):
    """The database refused the load; the transaction was rolled back."""

    exit_code = 1


@contextlib.contextmanager
def _database_errors() -> Iterator[None]:
    """Database trouble as typed errors: unreachable -> ``Unavailable``, anything else ->
    ``RestoreFailed`` saying the load was rolled back."""
    try:
        yield
    except OperationalError as exc:
        first = _first_line(exc)
        if any(s in first.lower() for s in ("could not connect", "connection", "unable to open")):
            raise Unavailable(f"cannot reach the database: {first}") from exc
        raise RestoreFailed(f"the load failed and was rolled back (the database is as it "
                            f"was): {first}") from exc
    except SQLAlchemyError as exc:
        raise RestoreFailed(f"the load failed and was rolled back (the database is as it "
                            f"was): {_first_line(exc)}") from exc


def _first_line(exc: SQLAlchemyError) -> str:
    text_ = str(getattr(exc, "orig", None) or exc).strip()
    return text_.splitlines()[0] if text_ else type(exc).__name__


def _shown(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def report(summary: RestoreSummary, path: Path) -> list[str]:
    """The lines ``--restore`` prints: what was loaded, where the keys went, what next."""
    info = summary.info
    h = info.header
    lines = [
        f"restored {path} into {summary.database}",
        f"  backup taken {h.get('created_at')} by gateway {h.get('gateway_version')} from "
        f"{h.get('source_database')}, schema {info.revision}; now at {summary.head}",
        f"  {len(info.tables)} tables, {info.rows} rows: {summary.rows_of('users')} users, "
        f"{summary.rows_of('files')} files, {summary.rows_of('folders')} folders, "
        f"{summary.rows_of('shares')} shares, {summary.rows_of('storage_nodes')} storage "
        "nodes",
    ]
    if summary.cleared:
        lines.append("  cleared first (seeded by the migrations or left by an earlier start): "
                     + ", ".join(f"{table} {n}" for table, n in summary.cleared.items()))
    keys = summary.keys
    if keys.write:
        lines.append(f"  keys written to {keys.data_dir} (0600): {', '.join(sorted(keys.write))}"
                     + (f" (replaced: {', '.join(keys.replaced)})" if keys.replaced else ""))
    if keys.kept:
        lines.append(f"  keys already in {keys.data_dir}: {', '.join(keys.kept)}")
    for name in keys.environment_differs:
        lines.append(f"  warning: {name} is set in the environment to another value than "
                     "the backup's: the gateway uses the environment's; nodes and admin "
                     "CLIs hold the backup's")
    lines.append("next: start the gateway on this database and DATA_DIR, restart the nodes "
                 "against it, then run cloudgrpc-admin --fsck: files written after the "
                 "backup are on the nodes but not in this metadata")
    return lines


def run_restore(settings: Settings, path: Path, *, overwrite_keys: bool = False) -> int:
    """``--restore``: one summary on stdout, or one line on stderr and its exit status."""
    try:
        summary = restore(settings, path, overwrite_keys=overwrite_keys)
    except CloudError as exc:
        print(f"{PROG}: cannot restore: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        print(f"{PROG}: cannot restore: {path}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print("\n".join(report(summary, path)), flush=True)
    return 0
