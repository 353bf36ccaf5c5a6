"""fsck (issue 15): ``cloudgrpc-admin --fsck [--repair]`` cross-checks the metadata against
what the nodes hold, and repairs what can be repaired.

One cluster per database (three nodes, REPLICATION_FACTOR=2) shared by the tests; each test
damages the data of its own file the way a disk or an operator would (a chunk file deleted,
overwritten, added, every copy removed, a node stopped), checks what fsck reports and what
``--repair`` changes on the nodes, and leaves the cluster clean again. Background repair and
garbage collection are off (hour-long intervals), so what changes is fsck's own doing;
content verification runs at 1 MB/s so a check takes long enough to be caught running.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa

from cloudgrpc_proto import cloud_storage_pb2 as pb
from tests.cluster import ADMIN_KEY, Account, Cluster
from tests.conftest import cluster_on

GC_GRACE_S = 30
FSCK_CLUSTER = {
    "REPLICATION_FACTOR": "2",
    "GC_GRACE_S": str(GC_GRACE_S),
    "GC_INTERVAL_S": "3600",       # no background collection: fsck deletes what goes
    "REPAIR_INTERVAL_S": "3600",   # no background repair: fsck copies what comes back
    "NODE_CALL_TIMEOUT_S": "5",
    "FSCK_VERIFY_RATE_MBPS": "1",
}
CLI = [sys.executable, "-m", "cloudgrpc_admin.cli"]
EXIT_LOST = 14
EXIT_PROBLEMS = 16


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def fsck_cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[Cluster]:
    with cluster_on(request.param, tmp_path_factory.mktemp(f"fsck-{request.param}"),
                    nodes=3, env=FSCK_CLUSTER) as c:
        yield c


@pytest.fixture(scope="module")
def owner(fsck_cluster: Cluster) -> Account:
    return fsck_cluster.sign_up()


# --- helpers ----------------------------------------------------------------------------


def fsck(c: Cluster, repair: bool = False, key: str = ADMIN_KEY
         ) -> tuple[list[pb.FsckFinding], pb.FsckSummary]:
    """One fsck over the API: its findings and its summary."""
    findings: list[pb.FsckFinding] = []
    summary = None
    for msg in c.admin.Fsck(pb.FsckRequest(admin_key=key, repair=repair), timeout=60):
        if msg.WhichOneof("body") == "finding":
            findings.append(msg.finding)
        elif msg.WhichOneof("body") == "summary":
            summary = msg.summary
    assert summary is not None, "no summary"
    return findings, summary


def cli(c: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ADMIN_KEY", "DATA_DIR")}
    env.update({"CLOUDGRPC_SERVER": c.address, "ADMIN_KEY": ADMIN_KEY, "NO_COLOR": "1",
                "COLUMNS": "200", "CLOUDGRPC_ENV_FILE": os.devnull})
    return subprocess.run([*CLI, "--fsck", *args], env=env, capture_output=True, text=True,
                          timeout=60)


def json_lines(out: str) -> tuple[list[dict], dict]:
    rows = [json.loads(line) for line in out.splitlines() if line.strip()]
    findings = [r["finding"] for r in rows if "finding" in r]
    summaries = [r["summary"] for r in rows if "summary" in r]
    assert len(summaries) == 1, out
    return findings, summaries[0]


def copies(c: Cluster, sha: str) -> dict[str, Path]:
    """Node name -> the chunk file, on every node holding it."""
    out = {}
    for name in c.nodes:
        path = c.node_dir(name) / "chunks" / sha[:2] / sha[2:4] / sha
        if path.is_file():
            out[name] = path
    return out


def stored(acct: Account, size: int = 8192, name: str = "", folder_id: str = ""
           ) -> tuple[str, str, bytes]:
    """Upload a one-chunk file: (file id, its chunk's SHA-256, its bytes)."""
    data = os.urandom(size)
    reply = acct.upload(data, name=name, folder_id=folder_id)
    assert reply.success, reply.message
    return reply.file_id, hashlib.sha256(data).hexdigest(), data


def kinds(findings: list[pb.FsckFinding], sha: str = "") -> list[str]:
    return sorted(f.kind for f in findings if not sha or f.chunk_sha256 == sha)


def assert_clean(c: Cluster) -> None:
    findings, summary = fsck(c)
    problems = [f for f in findings if f.kind != "unknown_to_metadata"
                or "younger than GC_GRACE_S" not in f.detail]
    assert summary.clean and summary.complete and not problems, (problems, summary)


# --- tests ------------------------------------------------------------------------------


def test_clean_cluster_is_clean_and_exits_0(fsck_cluster: Cluster, owner: Account) -> None:
    c = fsck_cluster
    _, sha, _ = stored(owner)
    assert len(copies(c, sha)) == 2
    done = cli(c)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "result: clean" in done.stdout
    done = cli(c, "--json")
    assert done.returncode == 0, done.stderr
    findings, summary = json_lines(done.stdout)
    assert findings == []
    assert summary["clean"] and summary["complete"] and summary["content_verified"]
    assert summary["nodes_checked"] == 3 and summary["nodes_unreachable"] == 0
    assert summary["verified_copies"] >= 2 and summary["files_checked"] >= 1


def test_wrong_key_is_refused_and_checks_nothing(fsck_cluster: Cluster) -> None:
    with pytest.raises(grpc.RpcError) as err:
        fsck(fsck_cluster, key="not-the-key")
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_missing_copy_is_found_and_copied_back(fsck_cluster: Cluster, owner: Account) -> None:
    c = fsck_cluster
    fid, sha, data = stored(owner)
    held = copies(c, sha)
    victim = sorted(held)[0]
    held[victim].unlink()

    findings, summary = fsck(c)
    mine = [f for f in findings if f.chunk_sha256 == sha]
    assert kinds(mine) == ["missing_on_node", "under_replicated"]
    missing = next(f for f in mine if f.kind == "missing_on_node")
    assert missing.node_name == victim and not missing.action
    assert summary.missing_copies == 1 and summary.under_replicated == 1
    assert not summary.clean and summary.problems_remaining == 2
    assert len(copies(c, sha)) == 1  # a check alone changes nothing

    done = cli(c, "--repair")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "missing_on_node" in done.stdout and "copied to" in done.stdout
    assert "every problem found was repaired" in done.stdout
    assert len(copies(c, sha)) == 2
    assert owner.download(fid) == data
    assert_clean(c)


def test_corrupt_copy_is_quarantined_and_replaced(fsck_cluster: Cluster, owner: Account
                                                  ) -> None:
    c = fsck_cluster
    fid, sha, data = stored(owner)
    held = copies(c, sha)
    victim = sorted(held)[-1]
    held[victim].write_bytes(os.urandom(len(data)))  # same size, other bytes

    findings, summary = fsck(c)
    corrupt = [f for f in findings if f.chunk_sha256 == sha and f.kind == "corrupt"]
    assert [f.node_name for f in corrupt] == [victim]
    assert summary.corrupt_copies == 1 and not summary.clean

    findings, summary = fsck(c, repair=True)
    corrupt = [f for f in findings if f.chunk_sha256 == sha and f.kind == "corrupt"]
    assert "quarantined" in corrupt[0].action
    assert summary.problems_remaining == 0
    quarantine = c.node_dir(victim) / "quarantine"
    assert any(p.name.startswith(sha) for p in quarantine.iterdir())
    after = copies(c, sha)
    assert len(after) == 2
    assert all(hashlib.sha256(p.read_bytes()).hexdigest() == sha for p in after.values())
    assert owner.download(fid) == data
    assert_clean(c)


def test_stray_chunk_file_is_deleted_only_past_the_grace(fsck_cluster: Cluster) -> None:
    c = fsck_cluster
    data = os.urandom(4096)
    sha = hashlib.sha256(data).hexdigest()
    path = c.node_dir("node2") / "chunks" / sha[:2] / sha[2:4] / sha
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)

    # Young: maybe an upload in flight. Reported, kept even by --repair, not a problem.
    findings, summary = fsck(c, repair=True)
    stray = [f for f in findings if f.chunk_sha256 == sha]
    assert kinds(stray) == ["unknown_to_metadata"] and stray[0].node_name == "node2"
    assert "younger than GC_GRACE_S" in stray[0].detail and "kept" in stray[0].action
    assert summary.unknown_in_grace >= 1 and summary.unknown_chunks == 0
    assert path.is_file()

    old = time.time() - GC_GRACE_S - 60
    os.utime(path, (old, old))
    findings, summary = fsck(c)
    stray = [f for f in findings if f.chunk_sha256 == sha]
    assert kinds(stray) == ["unknown_to_metadata"] and "older than" in stray[0].detail
    assert summary.unknown_chunks == 1 and not summary.clean
    assert path.is_file()  # without --repair nothing is deleted

    findings, summary = fsck(c, repair=True)
    stray = [f for f in findings if f.chunk_sha256 == sha]
    assert stray[0].action == "deleted" and summary.problems_remaining == 0
    assert not path.exists()
    assert_clean(c)


def test_forgotten_copy_of_a_file_is_recorded_again(fsck_cluster: Cluster, owner: Account
                                                   ) -> None:
    """A copy a file needs whose replica row is gone (lost metadata) is good data: fsck
    names it, --repair records it again, and it is never deleted as a stray."""
    c = fsck_cluster
    _, sha, _ = stored(owner)
    holder = sorted(copies(c, sha))[0]
    engine = sa.create_engine(c.database_url)
    try:
        with engine.begin() as db:
            node_id = db.execute(sa.text("SELECT id FROM storage_nodes WHERE name = :n"),
                                 {"n": holder}).scalar_one()
            db.execute(sa.text("DELETE FROM replicas WHERE chunk_sha256 = :s AND "
                               "node_id = :n"), {"s": sha, "n": node_id})

        findings, summary = fsck(c)
        mine = [f for f in findings if f.chunk_sha256 == sha]
        assert kinds(mine) == ["unknown_to_metadata"] and mine[0].node_name == holder
        assert "a file references" in mine[0].detail and not summary.clean

        findings, summary = fsck(c, repair=True)
        mine = [f for f in findings if f.chunk_sha256 == sha]
        assert mine[0].action.startswith("recorded as a replica")
        assert summary.problems_remaining == 0
        with engine.connect() as db:
            assert db.execute(sa.text("SELECT count(*) FROM replicas WHERE chunk_sha256 = :s "
                                      "AND node_id = :n"), {"s": sha, "n": node_id}
                              ).scalar_one() == 1
    finally:
        engine.dispose()
    assert holder in copies(c, sha)
    assert_clean(c)


def test_lost_file_is_named_and_kept(fsck_cluster: Cluster, owner: Account) -> None:
    c = fsck_cluster
    folder = c.files.CreateFolder(pb.CreateFolderRequest(
        session_token=owner.token, name="docs"), timeout=10).folder
    live_id, live_sha, _ = stored(owner, name="report.bin", folder_id=folder.folder_id)
    trashed_id, trashed_sha, _ = stored(owner, name="old.bin", folder_id=folder.folder_id)
    c.files.DeleteFile(pb.DeleteFileRequest(session_token=owner.token, file_id=trashed_id),
                       timeout=10)
    for sha in (live_sha, trashed_sha):
        for path in copies(c, sha).values():
            path.unlink()

    done = cli(c, "--repair")
    assert done.returncode == EXIT_LOST, done.stdout + done.stderr
    assert f"/docs/report.bin (owner {owner.email}" in done.stdout
    assert f"/docs/old.bin (owner {owner.email}" in done.stdout
    assert "cannot be repaired" in done.stdout and "problems remain" in done.stdout

    findings, summary = fsck(c)
    lost = {f.path: f for f in findings if f.kind == "lost_file"}
    assert set(lost) == {"/docs/report.bin", "/docs/old.bin"}
    assert lost["/docs/report.bin"].owner_email == owner.email
    assert lost["/docs/report.bin"].file_id == live_id
    assert lost["/docs/report.bin"].chunk_sha256 == live_sha
    assert "in the trash" in lost["/docs/old.bin"].detail
    assert summary.lost_files == 2 and not summary.clean
    # Not silently deleted: both files are still there for their owner to see.
    names = {f.filename for f in owner.ls(folder.folder_id).files}
    assert "report.bin" in names
    trash = {f.filename for f in owner.ls(folder.folder_id, include_deleted=True).files}
    assert "old.bin" in trash

    # The owner deletes them for good; repair then drops the rows of the copies gone.
    for fid in (live_id, trashed_id):
        c.files.DeleteFile(pb.DeleteFileRequest(session_token=owner.token, file_id=fid,
                                                permanent=True), timeout=10)
    _, summary = fsck(c, repair=True)
    assert summary.problems_remaining == 0 and summary.lost_files == 0
    assert_clean(c)


def test_stopped_node_is_unreachable_not_missing(fsck_cluster: Cluster, owner: Account
                                                 ) -> None:
    c = fsck_cluster
    stored(owner)
    c.stop_node("node3")
    try:
        done = cli(c, "--json")
        assert done.returncode == EXIT_PROBLEMS, done.stdout + done.stderr
        findings, summary = json_lines(done.stdout)
        unreachable = [f for f in findings if f["kind"] == "node_unreachable"]
        assert [f["node_name"] for f in unreachable] == ["node3"]
        assert not [f for f in findings if f["kind"] in ("missing_on_node", "lost_file")]
        assert summary["nodes_unreachable"] == 1 and summary["nodes_checked"] == 2
        assert summary["missing_copies"] == 0 and not summary["clean"]
    finally:
        c.start_node("node3")
        c.wait_nodes_online(3)
    assert_clean(c)


def test_one_fsck_at_a_time(fsck_cluster: Cluster, owner: Account) -> None:
    """A second fsck is refused while one runs, and the running one is not disturbed."""
    c = fsck_cluster
    stored(owner, size=2 * 1024 * 1024)  # at 1 MB/s its copies take about two seconds
    first = c.admin.Fsck(pb.FsckRequest(admin_key=ADMIN_KEY), timeout=60)
    assert next(first).WhichOneof("body") == "progress"  # it holds the gateway's fsck now
    rest: list[pb.FsckMessage] = []
    reader = threading.Thread(target=lambda: rest.extend(first), daemon=True)
    reader.start()
    with pytest.raises(grpc.RpcError) as err:
        fsck(c)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "already running" in (err.value.details() or "")
    reader.join(timeout=60)
    assert rest and rest[-1].summary.clean
    full_run_s = rest[-1].summary.elapsed_s
    assert full_run_s > 1.5

    # A caller that goes away mid-check does not keep the gateway's fsck: it stops, well
    # before a whole check would have ended, and the next one runs.
    abandoned = c.admin.Fsck(pb.FsckRequest(admin_key=ADMIN_KEY), timeout=60)
    assert next(abandoned).WhichOneof("body") == "progress"
    abandoned.cancel()
    cancelled = time.monotonic()
    while True:
        try:
            next_run = c.admin.Fsck(pb.FsckRequest(admin_key=ADMIN_KEY), timeout=60)
            assert next(next_run).WhichOneof("body") == "progress"
            break
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.FAILED_PRECONDITION, exc
            assert time.monotonic() - cancelled < 0.75 * full_run_s, \
                "the abandoned fsck kept running"
            time.sleep(0.1)
    assert list(next_run)[-1].summary.clean


def test_wrong_link_count_is_found_and_set_right(fsck_cluster: Cluster, owner: Account
                                                ) -> None:
    """A file's stored nlink (st_nlink on a mount, and what decides whether an rm of one
    name keeps the file) against its names: reported with its path, repaired to the count.
    (Presence-only passes: the copies' content is not what this is about.)"""
    c = fsck_cluster

    def quick(repair: bool) -> tuple[list[pb.FsckFinding], pb.FsckSummary]:
        out = list(c.admin.Fsck(pb.FsckRequest(admin_key=ADMIN_KEY, repair=repair,
                                               presence_only=True), timeout=60))
        return ([m.finding for m in out if m.WhichOneof("body") == "finding"],
                next(m.summary for m in out if m.WhichOneof("body") == "summary"))

    file_id, _, _ = stored(owner, name="linked.bin")
    c.files.LinkFile(pb.LinkFileRequest(session_token=owner.token, file_id=file_id,
                                        name="linked-again.bin"), timeout=10)
    engine = sa.create_engine(c.database_url)
    try:
        with engine.begin() as db:
            db.execute(sa.text("UPDATE files SET nlink = 5 WHERE id = :f"), {"f": file_id})
        findings, summary = quick(repair=False)
        mine = [f for f in findings if f.file_id == file_id]
        assert kinds(mine) == ["link_count"] and summary.problems_remaining >= 1
        assert mine[0].path == "/linked.bin" and mine[0].owner_email == owner.email
        assert "nlink is 5, the file has 2 names" in mine[0].detail
        findings, summary = quick(repair=True)
        assert [f.action for f in findings if f.file_id == file_id] == [
            "set to the names counted"]
        with engine.connect() as db:
            assert db.execute(sa.text("SELECT nlink FROM files WHERE id = :f"),
                              {"f": file_id}).scalar_one() == 2
        # a file left without any name (no folder shows it): named in lost+found style
        orphan, _, _ = stored(owner, name="orphan.bin")
        with engine.begin() as db:
            db.execute(sa.text("DELETE FROM file_names WHERE file_id = :f"), {"f": orphan})
        assert "orphan.bin" not in {f.filename for f in owner.ls().files}
        findings, _ = quick(repair=False)
        assert ["nlink is 1, the file has 0 names"] == [
            f.detail for f in findings if f.file_id == orphan]
        findings, _ = quick(repair=True)
        assert [f.action for f in findings if f.file_id == orphan] == [
            f"named /lost+found-{orphan} in its owner's drive"]
        assert {f.filename: f.file_id for f in owner.ls().files}[
            f"lost+found-{orphan}"] == orphan
    finally:
        engine.dispose()
    findings, _ = quick(repair=False)
    assert [f for f in findings if f.kind == "link_count"] == []
