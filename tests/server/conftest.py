"""A cluster shared by the tests of one module, once per database backend.

Starting a gateway and three nodes takes a couple of seconds; tests that only need users
and files of their own share one cluster (each signs up fresh users), while tests that
kill or corrupt things start their own.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.cluster import Cluster
from tests.conftest import PG_ADMIN_URL, _drop_pg_database, _fresh_pg_database


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def shared_cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp(f"cluster-{request.param}")
    pg_name = ""
    url = ""
    if request.param == "postgres":
        if not PG_ADMIN_URL:
            if os.environ.get("CLOUDGRPC_REQUIRE_PG") == "1":
                pytest.fail("CLOUDGRPC_REQUIRE_PG=1 but CLOUDGRPC_TEST_PG_URL is not set")
            pytest.skip("no PostgreSQL: set CLOUDGRPC_TEST_PG_URL")
        url, pg_name = _fresh_pg_database()
    c = Cluster(root, database_url=url)
    try:
        c.start()
        yield c
    finally:
        c.stop()
        if pg_name:
            _drop_pg_database(pg_name)
