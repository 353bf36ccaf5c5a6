"""Shared fixtures: the database backends and a running cluster.

Tests that take ``database_url`` run once on SQLite and once on PostgreSQL. PostgreSQL is
found through ``CLOUDGRPC_TEST_PG_URL`` (a URL to a server's maintenance database, e.g.
``postgresql+psycopg2://postgres:postgres@127.0.0.1:5432/postgres``); each test gets a
fresh database there. Without the variable those runs are skipped, unless
``CLOUDGRPC_REQUIRE_PG=1`` (as CI sets), which turns the skip into a failure.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.cluster import Cluster, running_cluster

PG_ADMIN_URL = os.environ.get("CLOUDGRPC_TEST_PG_URL", "")


def _fresh_pg_database() -> tuple[str, str]:
    name = f"cloudgrpc_test_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    url = sa.engine.make_url(PG_ADMIN_URL).set(database=name)
    return url.render_as_string(hide_password=False), name


def _drop_pg_database(name: str) -> None:
    engine = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


@contextlib.contextmanager
def database_for(backend: str, root: Path) -> Iterator[str]:
    """A database URL of ``backend``: a SQLite file under ``root``, or a fresh PostgreSQL
    database dropped afterwards (skipped without a server, failed when one is required)."""
    if backend == "sqlite":
        yield f"sqlite:///{root / 'gateway' / 'cloudgrpc.db'}"
        return
    if not PG_ADMIN_URL:
        if os.environ.get("CLOUDGRPC_REQUIRE_PG") == "1":
            pytest.fail("CLOUDGRPC_REQUIRE_PG=1 but CLOUDGRPC_TEST_PG_URL is not set")
        pytest.skip("no PostgreSQL: set CLOUDGRPC_TEST_PG_URL")
    url, name = _fresh_pg_database()
    try:
        yield url
    finally:
        _drop_pg_database(name)


@contextlib.contextmanager
def cluster_on(backend: str, root: Path, **kwargs: object) -> Iterator[Cluster]:
    """A running cluster (``Cluster`` keyword arguments) on a fresh database of ``backend``,
    for module-scoped fixtures that share one cluster per backend."""
    with database_for(backend, root) as url, \
            running_cluster(root, database_url=url, **kwargs) as c:
        yield c


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database_for(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def cluster(tmp_path: Path, database_url: str) -> Iterator[Cluster]:
    """Gateway + three nodes (replication 2) on the parametrized database."""
    c = Cluster(tmp_path, database_url=database_url)
    try:
        c.start()
        yield c
    finally:
        c.stop()


@pytest.fixture
def sqlite_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """The same on SQLite only, for tests whose subject is not the database."""
    c = Cluster(tmp_path)
    try:
        c.start()
        yield c
    finally:
        c.stop()
