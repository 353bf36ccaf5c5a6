"""While the metadata database is down, calls fail fast with a clear error, and the
gateway recovers by itself when it is back."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import grpc
import pytest

from tests.cluster import Cluster

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "postgres-throwaway.sh"


@pytest.mark.skipif(not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")),
                    reason="PostgreSQL server binaries not installed")
def test_database_outage_is_a_clear_error_and_heals(tmp_path: Path) -> None:
    pgdir = Path(subprocess.check_output(["mktemp", "-d", "/tmp/cloudgrpc-pg-outage.XXXXXX"],
                                         text=True).strip())
    url = subprocess.check_output([str(SCRIPT), "start", str(pgdir)], text=True).strip()
    c = Cluster(tmp_path, database_url=url, nodes=1)
    try:
        c.start()
        acct = c.sign_up()
        acct.upload(b"before the outage", "a.txt")
        subprocess.run([str(SCRIPT), "stop", str(pgdir)], check=True)
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as err:
            acct.ls()
        assert time.monotonic() - started < 15
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "database unavailable" in err.value.details()
        # Same data folder, same port: the gateway reconnects on its own.
        port = url.rsplit(":", 1)[1].split("/")[0]
        bindir = sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1]
        as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*as_pg, str(bindir / "pg_ctl"), "-D",
                        str(pgdir / "data"), "-l", str(pgdir / "server.log"), "-w", "-o",
                        f"-p {port} -k {pgdir} -c listen_addresses=127.0.0.1", "start"],
                       check=True, capture_output=True)
        deadline = time.monotonic() + 20
        while True:
            try:
                assert [f.filename for f in acct.ls().files] == ["a.txt"]
                break
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    finally:
        c.stop()
        subprocess.run([str(SCRIPT), "stop", str(pgdir)], check=False)
        shutil.rmtree(pgdir, ignore_errors=True)
