"""What a bench run cost, counted rather than timed: CPU seconds of processes (and of
process trees, for PostgreSQL's backends) from /proc, and PostgreSQL statements from
pg_stat_statements.

On this machine's two shared cores wall time swings with whatever else runs; the CPU time a
process was given and the statements a database ran do not.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

TICKS = os.sysconf("SC_CLK_TCK")
# For the throwaway server (scripts/postgres-throwaway.sh reads POSTGRES_EXTRA_OPTIONS).
PG_STATEMENTS_OPTIONS = ("-c shared_preload_libraries=pg_stat_statements "
                         "-c pg_stat_statements.track=all")


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat from field 3 (state) on; the command name, which may hold spaces and
    parentheses, is cut off at its last ")"."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat[stat.rindex(")") + 2:].split()


def cpu_seconds(pid: int) -> float | None:
    """utime + stime (fields 14, 15) of one process, all its threads; None when gone."""
    fields = _stat_fields(pid)
    return None if fields is None else (int(fields[11]) + int(fields[12])) / TICKS


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process, its reaped children (cutime + cstime, fields 16, 17) and
    its live descendants: PostgreSQL's postmaster and backends, say, whose backends come
    and go (a backend's time moves into the postmaster's cutime when it exits, so the sum
    stays whole)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry))
    total = 0.0
    todo = [pid]
    while todo:
        current = todo.pop()
        fields = _stat_fields(current)
        if fields is None:
            continue
        total += sum(int(f) for f in fields[11:15]) / TICKS
        todo.extend(children.get(current, []))
    return total


class CpuMeter:
    """CPU seconds used by a set of processes between ``start`` and ``stop``. A process
    that is about to be killed is read first (``final``), so its time still counts."""

    def __init__(self) -> None:
        self.started: dict[int, float] = {}
        self.finished: dict[int, float] = {}

    def start(self, pid: int) -> None:
        self.started[pid] = cpu_seconds(pid) or 0.0

    def final(self, pid: int) -> None:
        if pid in self.started and pid not in self.finished:
            self.finished[pid] = cpu_seconds(pid) or self.started[pid]

    def seconds(self) -> float:
        """Time used so far by every process started (the finished ones up to their end)."""
        total = 0.0
        for pid, before in self.started.items():
            after = self.finished.get(pid)
            if after is None:
                after = cpu_seconds(pid)
            total += max(0.0, (after if after is not None else before) - before)
        return total


def postmaster_pid(pg_dir: Path) -> int:
    """The throwaway server's postmaster (first line of its postmaster.pid)."""
    return int((pg_dir / "data" / "postmaster.pid").read_text().split()[0])


@dataclass
class PgCounts:
    statements: int  # statements the gateways sent (top level: BEGIN, COMMIT, pings too)
    nested: int  # run inside those: foreign-key checks, triggers
    transactions: int  # commits + rollbacks (about: backends report them within a second)
    rows: int  # rows returned or changed by the statements sent


class PgStatements:
    """Statement counts from pg_stat_statements, when the server preloads it (the bench's
    throwaway server does, see PG_STATEMENTS_OPTIONS); our own counting queries are left
    out."""

    def __init__(self, url: str) -> None:
        self.engine = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
        with self.engine.connect() as conn:
            conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_stat_statements"))

    def reset(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT pg_stat_statements_reset()"))
            conn.execute(sa.text("SELECT pg_stat_reset()"))

    def counts(self) -> PgCounts:
        with self.engine.connect() as conn:
            statements, nested, rows = conn.execute(sa.text(
                "SELECT coalesce(sum(calls) FILTER (WHERE toplevel), 0), "
                "coalesce(sum(calls) FILTER (WHERE NOT toplevel), 0), "
                "coalesce(sum(rows) FILTER (WHERE toplevel), 0) "
                "FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database "
                "WHERE datname = current_database()) AND query NOT ILIKE '%pg_stat%'")).one()
            transactions = conn.execute(sa.text(
                "SELECT xact_commit + xact_rollback FROM pg_stat_database "
                "WHERE datname = current_database()")).scalar_one()
        return PgCounts(int(statements), int(nested), int(transactions), int(rows))

    def top(self, count: int) -> list[tuple[int, str]]:
        """The ``count`` most-called statements since the reset: (calls, query text)."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT calls, query FROM pg_stat_statements WHERE dbid = (SELECT oid FROM "
                "pg_database WHERE datname = current_database()) AND query NOT ILIKE "
                "'%pg_stat%' AND toplevel ORDER BY calls DESC LIMIT :n"), {"n": count}).all()
        return [(int(calls), " ".join(str(query).split())) for calls, query in rows]

    def footprint(self, tables: tuple[str, ...]) -> dict[str, tuple[int, int]]:
        """Each table's (rows, bytes on disk with its indexes and TOAST), after VACUUM so
        the sizes are the live rows' (benches compare two footprints)."""
        out: dict[str, tuple[int, int]] = {}
        with self.engine.connect() as conn:
            for table in tables:
                conn.execute(sa.text(f"VACUUM {table}"))  # names from the code, not input
                rows = conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()
                size = conn.execute(sa.text("SELECT pg_total_relation_size(:t)"),
                                    {"t": table}).scalar_one()
                out[table] = (int(rows), int(size))
        return out

    def close(self) -> None:
        self.engine.dispose()
