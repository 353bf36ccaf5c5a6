"""Database engine, sessions and migrations.

Two kinds of transaction: ``read()`` for lookups and ``write()`` for changes. On SQLite a
write transaction starts with ``BEGIN IMMEDIATE`` so that concurrent writers queue on the
busy timeout instead of failing when a read lock is upgraded; on PostgreSQL both are plain
transactions and row locks (``with_for_update``) order concurrent writers. A third,
``snapshot()``, is one read-only view of a single point in time for the metadata backup.
"""

from __future__ import annotations

import contextlib
import logging
import pathlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from cloudgrpc_proto.errors import Unavailable
from cloudgrpc_proto.private_files import private_dir, private_file

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)

MIGRATIONS = pathlib.Path(__file__).resolve().parent / "migrations"
_MIGRATE_LOCK = 0x436C6F7564 + 1  # advisory lock key while migrating (leader.py: the key - 1)


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _sqlite_begin(conn) -> None:  # type: ignore[no-untyped-def]
    immediate = conn.get_execution_options().get("sqlite_immediate", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def prepare_sqlite_file(database: str) -> None:
    """Make the SQLite database private before SQLite opens it: its folder 0700 (ours, not a
    symlink), the file created 0600, and an existing -wal/-shm (or an older, looser
    database) tightened to 0600.

    SQLite creates its -wal and -shm with the mode of the database file whatever the umask,
    so a 0600 database keeps them 0600 too. A symlink in place of any of them is refused.
    """
    path = pathlib.Path(database)
    private_dir(path.parent)
    private_file(path)
    for suffix in ("-wal", "-shm", "-journal"):
        private_file(path.with_name(path.name + suffix), create=False)


def make_engine(url: str) -> Engine:
    # SQL statements and result rows carry token hashes, share tokens and user data:
    # LOG_LEVEL=DEBUG must not dump them (the root logger's level would turn them on).
    logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:" and \
                not parsed.database.startswith("file:"):
            prepare_sqlite_file(parsed.database)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "isolation_level": None, "timeout": 30},
            pool_size=20,
            max_overflow=40,
            hide_parameters=True,  # bound values (token hashes, emails) never reach a log
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(
        url,
        pool_size=10,
        max_overflow=20,
        pool_pre_ping=True,
        pool_timeout=10,
        hide_parameters=True,
        connect_args={"connect_timeout": 5} if parsed.get_backend_name() == "postgresql" else {},
    )


class Database:
    """The metadata store: an engine plus the two kinds of transaction."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self.is_postgres = self.engine.dialect.name == "postgresql"
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(
            self.engine.execution_options(sqlite_immediate=True), expire_on_commit=False
        )

    @contextlib.contextmanager
    def read(self) -> Iterator[Session]:
        with _unavailable_on_connect_error(), self._read() as session, session.begin():
            yield session

    @contextlib.contextmanager
    def write(self) -> Iterator[Session]:
        with _unavailable_on_connect_error(), self._write() as session, session.begin():
            yield session

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[Connection]:
        """One read-only transaction that sees a single point in time, however long it
        lasts and whatever commits meanwhile (the metadata backup reads every table in it).

        PostgreSQL: REPEATABLE READ, READ ONLY. SQLite (WAL): a deferred transaction whose
        first read fixes the snapshot; writers go on, the WAL only grows until it ends.
        """
        with _unavailable_on_connect_error(), self.engine.connect() as conn:
            if self.is_postgres:
                conn = conn.execution_options(isolation_level="REPEATABLE READ",
                                              postgresql_readonly=True)
            with conn.begin():
                yield conn

    def migrate(self, target: str = "head", connection: Connection | None = None) -> None:
        """Bring the schema to ``target`` (the newest migration by default), creating it on
        an empty database; on ``connection``, inside the caller's transaction."""
        from alembic import command

        cfg = self.alembic_config()
        if connection is not None:
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, target)
            return
        with self.engine.begin() as conn:
            if self.is_postgres:
                # Gateways starting together on one database: one migrates, the others
                # wait for its commit and then find the schema current.
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATE_LOCK})
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, target)

    def alembic_config(self) -> Config:
        """Alembic's configuration for this database and the gateway's migrations."""
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        return cfg

    def dispose(self) -> None:
        self.engine.dispose()


@contextlib.contextmanager
def _unavailable_on_connect_error() -> Iterator[None]:
    try:
        yield
    except OperationalError as exc:
        text = str(exc.orig) if exc.orig is not None else str(exc)
        if "locked" in text or "could not connect" in text or "connection" in text.lower():
            log.warning("database unavailable: %s", text)
            raise Unavailable(f"metadata database unavailable: {text.splitlines()[0]}") from exc
        raise
