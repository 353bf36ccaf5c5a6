"""A cluster shared by the tests of one module, once per database backend.

Starting a gateway and three nodes takes a couple of seconds; tests that only need users
and files of their own share one cluster (each signs up fresh users), while tests that
kill or corrupt things start their own.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cluster import Cluster
from tests.conftest import cluster_on


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def shared_cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[Cluster]:
    with cluster_on(request.param, tmp_path_factory.mktemp(f"cluster-{request.param}")) as c:
        yield c
