"""Online metadata backup and restore (issue 15), as an operator runs them.

The end-to-end test takes ``cloudgrpc-admin --backup`` from a real gateway while a thread
uploads files through the client library, stops the gateway, restores the file with
``cloudgrpc-gateway --restore`` into a new database and starts a gateway on it with the
same running nodes: every file committed before the backup reads back byte-identical with
the sessions, quotas, folders, shares and trash of the time, and the nodes come back with
their keys. Broken backup files and a database that is not empty are refused and change
nothing. Both commands run in the test process through their ``main()`` (an interpreter
start-up each is seconds of CI time); gateway and nodes are real processes. The
snapshot's consistency and the cross-database restore are checked in-process on real
databases, which is fast and exact about timing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import stat
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy as sa

from cloudgrpc_proto import cloud_storage_pb2 as pb
from cloudgrpc_proto import cloud_storage_pb2_grpc as pb_grpc
from cloudgrpc_proto.client import CloudClient
from cloudgrpc_proto.errors import RateLimited
from cloudgrpc_server.config import Settings
from cloudgrpc_server.db import Database
from cloudgrpc_server.key_files import cluster_keys
from cloudgrpc_server.metadata_backup import MetadataBackup
from cloudgrpc_server.metadata_restore import run_restore
from cloudgrpc_server.models import Base, Event, File, FileName, Folder, StorageNode, User
from cloudgrpc_server.snapshot_format import SnapshotEncoder, read_records
from tests.cluster import ADMIN_KEY, CLUSTER_SECRET, Cluster, running_cluster
from tests.conftest import database_for

GiB = 1024 ** 3
KEYS = {"admin_key": "backup-test-admin", "cluster_secret": "backup-test-secret",
        "otp_key": "backup-test-otp"}


def _backend(url: str) -> str:
    return "sqlite" if url.startswith("sqlite") else "postgres"


class InProcess:
    """The same commands run inside the test process (fast: no interpreter start-up), with
    the environment an operator's shell would give them."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
                 ) -> None:
        self.monkeypatch = monkeypatch
        self.capsys = capsys
        monkeypatch.setenv("CLOUDGRPC_ENV_FILE", os.devnull)
        for name in ("ADMIN_KEY", "CLUSTER_SECRET", "OTP_KEY"):
            monkeypatch.delenv(name, raising=False)

    def _run(self, main: Any, argv: list[str]) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = main(argv)
        out, err = self.capsys.readouterr()
        return code, out, err

    def restore(self, path: Path, database_url: str, data_dir: Path) -> tuple[int, str, str]:
        from cloudgrpc_server.app import main

        self.monkeypatch.setenv("DATABASE_URL", database_url)
        self.monkeypatch.setenv("DATA_DIR", str(data_dir))
        return self._run(main, ["--restore", str(path)])

    def fsck(self, cluster: Cluster, key: str = ADMIN_KEY) -> tuple[int, list[dict[str, Any]]]:
        """``cloudgrpc-admin --fsck --json``: its exit status and its JSON lines."""
        from cloudgrpc_admin.cli import main

        code, out, _ = self._run(main, ["--server", cluster.address, "--admin-key", key,
                                        "--fsck", "--json"])
        return code, [json.loads(line) for line in out.splitlines() if line.strip()]

    def backup(self, cluster: Cluster, path: Path, key: str = ADMIN_KEY
               ) -> tuple[int, str, str]:
        from cloudgrpc_admin.cli import main

        return self._run(main, ["--server", cluster.address, "--admin-key", key,
                                "--backup", str(path)])


@pytest.fixture
def in_process(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
               ) -> InProcess:
    return InProcess(monkeypatch, capsys)


def table_rows(url: str, table: str) -> int:
    """Rows of ``table`` (0 when the table, or the SQLite file, does not even exist)."""
    database = sa.engine.make_url(url).database or ""
    if url.startswith("sqlite") and not Path(database).exists():
        return 0
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            if table not in sa.inspect(conn).get_table_names():
                return 0
            return int(conn.execute(sa.text(f"SELECT COUNT(*) FROM {table}")).scalar_one())
    finally:
        engine.dispose()


def query(url: str, sql: str, **params: Any) -> list[Any]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text(sql), params))
    finally:
        engine.dispose()


@dataclass
class Upload:
    name: str
    data: bytes
    started: float
    finished: float = 0.0
    file_id: str = ""


class Uploader(threading.Thread):
    """Uploads small random files through the client library until stopped."""

    def __init__(self, client: CloudClient, folder_id: str) -> None:
        super().__init__(daemon=True, name="uploader")
        self.client = client
        self.folder_id = folder_id
        self.done: list[Upload] = []
        self.errors: list[BaseException] = []
        self.stop_now = threading.Event()

    def run(self) -> None:
        while not self.stop_now.is_set():
            up = Upload(f"live-{uuid.uuid4().hex[:8]}.bin", os.urandom(48 * 1024),
                        time.monotonic())
            try:
                reply = self.client.upload(io.BytesIO(up.data), filename=up.name,
                                           parent_folder_id=self.folder_id)
            except BaseException as exc:  # noqa: BLE001 - reported by the test
                self.errors.append(exc)
                return
            up.finished, up.file_id = time.monotonic(), reply.file_id
            self.done.append(up)

    def wait_for(self, count: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.done) < count and not self.errors and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not self.errors, self.errors
        assert len(self.done) >= count, f"only {len(self.done)} uploads in {timeout}s"


def node_chunks(cluster: Cluster) -> set[str]:
    """Every chunk name the running nodes hold (ChunkService.ListChunks)."""
    held: set[str] = set()
    for port in cluster.node_ports.values():
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            for batch in pb_grpc.ChunkServiceStub(channel).ListChunks(
                    pb.ListChunksRequest(cluster_secret=CLUSTER_SECRET), timeout=10):
                held.update(batch.sha256)
    return held


def fsck_reports_files_written_after_backup(cluster: Cluster, restored_url: str,
                                            later: list[Upload], in_process: InProcess
                                            ) -> None:
    """Files committed after the backup are on the nodes but unknown to the restored
    metadata: garbage collection's node sweep keeps them (paused since the restore) and
    ``cloudgrpc-admin --fsck`` names each of their chunks ``unknown_to_metadata``, and
    nothing as lost; after that complete fsck the sweep may run again."""
    held = node_chunks(cluster)
    known = {row[0] for row in query(restored_url, "SELECT sha256 FROM chunks")}
    shas = {hashlib.sha256(up.data).hexdigest(): up.name for up in later}  # one chunk each
    for sha, name in shas.items():
        assert sha in held, f"{name}: its chunk is not on any node"
        assert sha not in known, f"{name} was written after the backup, yet restored"
    restored_marks = query(restored_url, "SELECT event_type FROM events WHERE event_type = "
                           "'metadata_restored'")
    assert len(restored_marks) == 1
    code, lines = in_process.fsck(cluster)
    findings = [line["finding"] for line in lines if "finding" in line]
    summary = [line["summary"] for line in lines if "summary" in line]
    assert summary and summary[-1].get("complete"), lines
    unknown = {f.get("chunk_sha256") for f in findings if f.get("kind") == "unknown_to_metadata"}
    for sha, name in shas.items():
        assert sha in unknown, f"fsck did not report the chunk of {name}: {findings}"
    assert not [f for f in findings if f.get("kind") == "lost_file"], findings
    assert code != 14
    assert set(shas) <= node_chunks(cluster)  # nothing was collected meanwhile


# --- end to end: backup during uploads, restore, serve again -------------------------------


@pytest.fixture
def cluster(tmp_path: Path, database_url: str) -> Iterator[Cluster]:
    """Gateway + two nodes (replication 2): every chunk is on both, none is spare."""
    with running_cluster(tmp_path, database_url=database_url, nodes=2) as c:
        yield c


def test_backup_during_uploads_restores_every_committed_file(
        cluster: Cluster, tmp_path: Path, in_process: InProcess) -> None:
    backend = _backend(cluster.database_url)
    alice = cluster.sign_up(device_name="laptop")
    bob = cluster.sign_up()
    client = CloudClient(cluster.address, session_token=alice.token)
    try:
        docs = client.create_folder("docs").folder.folder_id
        first: list[Upload] = []
        for i in range(3):
            up = Upload(f"before-{i}.bin", os.urandom(64 * 1024 + i), time.monotonic())
            reply = client.upload(io.BytesIO(up.data), filename=up.name,
                                  parent_folder_id=docs if i else "")
            up.file_id = reply.file_id
            first.append(up)
        client.share_file(first[1].file_id, bob.email, "write")
        trashed = client.upload(io.BytesIO(b"in the trash"), filename="old.txt").file_id
        client.delete_file(trashed)
        cluster.admin.SetUserQuota(pb.SetUserQuotaRequest(
            admin_key=ADMIN_KEY, email=alice.email, storage_bytes=3 * GiB), timeout=10)

        uploader = Uploader(client, docs)
        uploader.start()
        uploader.wait_for(2)
        backup = tmp_path / "metadata.backup"
        begun = time.monotonic()
        code, printed, err = in_process.backup(cluster, backup)
        ended = time.monotonic()
        assert code == 0, err
        count = len(uploader.done)
        uploader.wait_for(count + 2)  # and some more once the backup is over
        uploader.stop_now.set()
        uploader.join(30)
        assert not uploader.errors, uploader.errors
    finally:
        client.close()

    # The file: private, as announced, and the CLI says what it holds.
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    digest = hashlib.sha256(backup.read_bytes()).hexdigest()
    assert f"SHA-256 {digest}" in printed
    assert "rows" in printed and "OTP key" in printed
    code, _, err = in_process.backup(cluster, backup)
    assert code == 5 and "--overwrite" in err  # never over an existing file
    assert hashlib.sha256(backup.read_bytes()).hexdigest() == digest
    code, _, err = in_process.backup(cluster, tmp_path / "nope.backup", key="wrong-key")
    assert code == 6 and not (tmp_path / "nope.backup").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]

    before = first + [u for u in uploader.done if u.finished < begun]
    after = [u for u in uploader.done if u.started > ended]
    assert after, "no upload started after the backup"
    source_nodes = query(cluster.database_url,
                         "SELECT id, name, key_hash FROM storage_nodes ORDER BY name")
    otp_key = (Path(cluster.env["DATA_DIR"]) / "otp_key").read_text().strip()

    with database_for(backend, tmp_path / "restored") as restored_url:
        data_dir = tmp_path / "restored-data"
        # A damaged or cut file is refused, naming why, and the database stays empty.
        blob = backup.read_bytes()
        broken = tmp_path / "broken.backup"
        middle = len(blob) // 2
        garbled = bytes(b ^ 0xFF for b in blob[middle:middle + 64])
        for damaged, why in ((blob[:middle], ("truncated",)),
                             (blob[:middle] + garbled + blob[middle + 64:],
                              ("corrupt", "truncated"))):  # zstd may read garble as a cut
            broken.write_bytes(damaged)
            code, _, err = in_process.restore(broken, restored_url, data_dir)
            assert code == 14 and "not a usable CloudGrpc metadata backup" in err, err
            assert any(word in err for word in why), err
            assert table_rows(restored_url, "users") == 0
            assert not (data_dir / "otp_key").exists()
        code, out, err = in_process.restore(backup, restored_url, data_dir)
        assert code == 0, err
        assert "restored" in out and "cloudgrpc-admin --fsck" in out
        assert "2 users" in out and "2 storage nodes" in out
        assert (data_dir / "otp_key").read_text().strip() == otp_key
        assert stat.S_IMODE((data_dir / "otp_key").stat().st_mode) == 0o600

        code, _, err = in_process.restore(backup, restored_url, data_dir)
        assert code == 10 and "not empty" in err and "2 users" in err, err
        assert "2 storage nodes" in err and "files" in err
        # The old gateway stops only now (the restore never touches it): the nodes, whose
        # reconnect backoff grows while no gateway answers, find the new one sooner.
        cluster.gateway.stop()
        cluster.env.update(DATABASE_URL=restored_url, DATA_DIR=str(data_dir))
        restarted = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        cluster.start_gateway()  # same port: the running nodes find it
        _wait_nodes_back(restored_url, restarted, len(source_nodes))
        assert query(restored_url, "SELECT id, name, key_hash FROM storage_nodes "
                     "ORDER BY name") == source_nodes  # same ids, same keys: no new identity

        # Sign-in state, quota, folders, files, shares and trash, as they were.
        assert alice.storage().allocated_bytes == 3 * GiB
        listed = {e.filename: e for e in alice.ls(docs).files}
        restored = set(listed) | {e.filename for e in alice.ls().files}
        for up in before:
            assert up.name in restored, f"{up.name} committed before the backup is missing"
            assert alice.download(up.file_id) == up.data
        for up in uploader.done:  # whatever the snapshot holds is whole
            if up.name in listed:
                assert alice.download(up.file_id) == up.data
        for up in after:
            assert up.name not in listed
        shared = cluster.files.ListSharedWithMe(pb.ListSharedWithMeRequest(
            session_token=bob.token), timeout=10)
        assert [f.file_id for f in shared.files] == [first[1].file_id]
        assert bob.download(first[1].file_id) == first[1].data
        trash = cluster.files.ListTrash(pb.ListTrashRequest(session_token=alice.token),
                                        timeout=10)
        assert trashed in {f.file_id for f in trash.files}

        fsck_reports_files_written_after_backup(cluster, restored_url, after, in_process)
        cluster.gateway.stop()


def _wait_nodes_back(url: str, since: dt.datetime, count: int, timeout: float = 30) -> None:
    """Every node heartbeated the restored gateway (which checks its node key)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = query(url, "SELECT last_heartbeat FROM storage_nodes")
        fresh = [r for r in rows if r[0] is not None and _naive(r[0]) > since]
        if len(fresh) == count:
            return
        time.sleep(0.1)
    raise AssertionError(f"nodes did not come back: {rows}")


def _naive(value: Any) -> dt.datetime:
    return value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))


# --- in-process: consistency, one at a time, across databases -------------------------------


@pytest.fixture
def source_db(database_url: str) -> Iterator[Database]:
    db = Database(database_url)
    db.migrate()
    yield db
    db.dispose()


def _seed(db: Database) -> None:
    with db.write() as s:
        user = User(email="ada@example.com", full_name="Ada", storage_allocated=5 * GiB,
                    last_login=dt.datetime(2026, 1, 2, 3, 4, 5, 678901), is_active=False)
        s.add(user)
        s.flush()
        root = Folder(owner_id=user.id, name="", parent_id=None)
        s.add(root)
        s.flush()
        parent = root
        for depth in range(5):  # ids are random: the dump's order is not the tree's
            child = Folder(owner_id=user.id, name=f"level{depth}", parent_id=parent.id)
            s.add(child)
            s.flush()
            parent = child
        # a file with two names (a hard link): the names table travels with the files
        f = File(owner_id=user.id, nlink=2)
        s.add(f)
        s.flush()
        s.add_all([FileName(file_id=f.id, owner_id=user.id, folder_id=parent.id, name="doc",
                            created_at=dt.datetime(2026, 1, 1)),
                   FileName(file_id=f.id, owner_id=user.id, folder_id=root.id, name="doc-link",
                            created_at=dt.datetime(2026, 1, 2))])
        s.add_all([Event(event_type="seed", message=f"event {i}") for i in range(3)])


def _take(backup: MetadataBackup) -> bytes:
    with backup.take() as snapshot:
        return b"".join(snapshot.pieces())


def test_snapshot_is_one_point_in_time_and_one_at_a_time(source_db: Database,
                                                         tmp_path: Path) -> None:
    _seed(source_db)
    backup = MetadataBackup(source_db, lambda: dict(KEYS), piece_bytes=1, flush_every_s=0)
    snapshot = backup.take()
    pieces = snapshot.pieces()
    head = [next(pieces), next(pieces)]  # the transaction is open and has read
    with pytest.raises(RateLimited, match="already running"):
        backup.take()
    with source_db.write() as s:  # committed while the snapshot is being read
        s.add(User(email="late@example.com", full_name="Late", storage_allocated=1))
        s.add(Event(event_type="late", message="after the snapshot began"))
    blob = b"".join([*head, *pieces])
    summary = snapshot.summary
    snapshot.__exit__(None, None, None)
    assert summary is not None and summary.table_rows["users"] == 1
    assert summary.sha256 == hashlib.sha256(blob).hexdigest() and summary.size == len(blob)
    _take(backup)  # the slot is free again

    path = tmp_path / "snap.backup"
    path.write_bytes(blob)
    target = f"sqlite:///{tmp_path / 'target' / 'db.sqlite'}"
    assert run_restore(Settings(data_dir=tmp_path / "keys", database_url=target), path) == 0
    emails = [r[0] for r in query(target, "SELECT email FROM users")]
    assert emails == ["ada@example.com"]
    assert query(target, "SELECT n.name, f.nlink FROM files f JOIN file_names n"
                 " ON n.file_id = f.id ORDER BY n.name") == [("doc", 2), ("doc-link", 2)]
    # the events as they were, and the restore's own mark (see restore_guard)
    assert sorted(r[0] for r in query(target, "SELECT event_type FROM events")) == \
        ["metadata_restored"] + ["seed"] * 3


def test_restore_across_databases_keeps_every_value(source_db: Database, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite -> PostgreSQL and PostgreSQL -> SQLite: the same rows, typed the same."""
    _seed(source_db)
    path = tmp_path / "cross.backup"
    path.write_bytes(_take(MetadataBackup(source_db, lambda: dict(KEYS))))
    other = "postgres" if source_db.is_sqlite else "sqlite"
    with database_for(other, tmp_path / "other") as target:
        keys = tmp_path / "keys"
        (keys).mkdir(mode=0o700)
        (keys / "otp_key").write_text("a different key\n")
        settings = Settings(data_dir=keys, database_url=target)
        assert run_restore(settings, path) == 5  # a different key is never overwritten
        assert "--overwrite-keys" in capsys.readouterr().err
        assert table_rows(target, "users") == 0
        monkeypatch.setenv("CLUSTER_SECRET", "not the backup's")
        assert run_restore(settings, path, overwrite_keys=True) == 0
        out = capsys.readouterr().out
        assert "replaced: otp_key" in out
        assert "warning: CLUSTER_SECRET is set in the environment" in out
        assert {n: (keys / n).read_text().strip() for n in KEYS} == KEYS

        restored = Database(target)
        try:
            for table in Base.metadata.sorted_tables:
                with source_db.read() as a, restored.read() as b:
                    want = sorted((tuple(r) for r in a.execute(sa.select(table))), key=repr)
                    query_ = sa.select(table)
                    if table is Event.__table__:  # the restore adds its mark
                        query_ = query_.where(Event.event_type != "metadata_restored")
                    got = sorted((tuple(r) for r in b.execute(query_)), key=repr)
                assert got == want, table.name
            with restored.write() as s:  # PostgreSQL's sequence continues after the ids
                s.add(Event(event_type="new", message="after the restore"))
        finally:
            restored.dispose()


def _rewritten(blob: bytes, path: Path, change: Any) -> Path:
    """The backup ``blob`` re-encoded with ``change(records)`` applied: a snapshot as an
    older or newer version would have written it."""
    source = path.with_suffix(".source")
    source.write_bytes(blob)
    with source.open("rb") as f:
        records = [r for r in read_records(f, str(source)) if not (
            isinstance(r, dict) and r.get("kind") == "end")]
    encoder = SnapshotEncoder()
    out = [encoder.add(r) for r in change(records)]
    counts: dict[str, int] = {}
    table = ""
    for r in change(records):
        if isinstance(r, dict) and r.get("kind") == "table":
            table = r["name"]
            counts[table] = 0
        elif isinstance(r, list):
            counts[table] += 1
    out.append(encoder.finish({"tables": counts, "rows": sum(counts.values())}))
    path.write_bytes(b"".join(out))
    return path


def _head() -> str:
    """The newest migration this code carries."""
    from alembic.script import ScriptDirectory

    from cloudgrpc_server.db import MIGRATIONS

    return str(ScriptDirectory(str(MIGRATIONS)).get_current_head())


# Columns migrations after 0005 added (0006, 0008, 0009), by table, and their tables (0007,
# 0010); 0010 also moved the files' names (folder_id, name, original_folder_id) into
# file_names, so a 0005 snapshot carries them in files (each file's oldest name).
ADDED_AFTER_0005 = {"storage_nodes": {"logical_bytes"}, "files": {"rdev", "nlink"}}
TABLES_AFTER_0005 = {"traffic_minutes", "file_names"}


def _table_block(records: list[Any], name: str) -> list[Any]:
    """A table's header record and its rows, as they stand in ``records``."""
    block: list[Any] = []
    for r in records:
        if isinstance(r, dict) and r.get("kind") == "table":
            if block:
                break
            if r["name"] == name:
                block.append(r)
        elif block and isinstance(r, list):
            block.append(r)
    return block


def _names_into_files(records: list[Any]) -> Iterator[Any]:
    """A head snapshot's files rows as a schema before 0010 has them: with the file's
    oldest name (and where a trashed one was) in the row."""
    oldest: dict[str, dict[str, Any]] = {}
    columns: list[str] = []
    tags: dict[str, Any] = {}
    table = ""
    for r in records:
        if isinstance(r, dict) and r.get("kind") == "table":
            columns = [c[0] for c in r["columns"]]
            table = r["name"]
            if table == "file_names":
                tags = dict(r["columns"])
        elif isinstance(r, list) and table == "file_names":
            row = dict(zip(columns, r, strict=True))
            if row["file_id"] not in oldest or (row["created_at"], row["id"]) < (
                    oldest[row["file_id"]]["created_at"], oldest[row["file_id"]]["id"]):
                oldest[row["file_id"]] = row
    # files (which now refer to no folder) may come before folders: after them, as the
    # older schema's order has it
    files_block = _table_block(records, "files")
    rest = [r for r in records if not any(r is x for x in files_block)]
    at = next(i for i, r in enumerate(rest) if isinstance(r, dict) and r.get("name") == "folders")
    at += len(_table_block(rest, "folders"))
    for r in rest[:at] + files_block + rest[at:]:
        if isinstance(r, dict) and r.get("kind") == "table":
            table = r["name"]
            if table == "files":
                columns = [c[0] for c in r["columns"]]
                r = {**r, "columns": [*r["columns"], ["folder_id", tags["folder_id"]],
                                      ["name", tags["name"]], ["original_folder_id",
                                                               tags["folder_id"]]]}
        elif isinstance(r, list) and table == "files":
            row = dict(zip(columns, r, strict=True))
            name = oldest[row["id"]]
            trashed = row["deleted_at"] is not None
            r = [*r, name["folder_id"], name["name"], name["folder_id"] if trashed else None]
        yield r


def test_older_snapshot_is_upgraded_and_newer_one_refused(tmp_path: Path) -> None:
    """A backup made at revision 0005 (before storage_nodes.logical_bytes, traffic_minutes
    and files.rdev) loads under 0005 and is upgraded to head; one from a schema this code
    does not know is refused before the database is touched."""
    db = Database(f"sqlite:///{tmp_path / 'source' / 'db.sqlite'}")
    db.migrate()
    _seed(db)
    with db.write() as s:
        s.add(StorageNode(name="n1", host="127.0.0.1", port=1, capacity_bytes=10,
                          key_hash="ab" * 32))
    blob = _take(MetadataBackup(db, lambda: dict(KEYS)))
    db.dispose()

    def as_0005(records: list[Any]) -> Iterator[Any]:
        table, drop = "", None
        for r in _names_into_files(records):
            if isinstance(r, dict) and r.get("kind") == "header":
                yield {**r, "revision": "0005_upload_reservations"}
            elif isinstance(r, dict) and r.get("kind") == "table":
                table = r["name"]
                names = [c[0] for c in r["columns"]]
                later = ADDED_AFTER_0005.get(table, set())
                drop = {names.index(c) for c in later}
                if table not in TABLES_AFTER_0005:
                    yield {**r, "columns": [c for c in r["columns"] if c[0] not in later]}
            elif isinstance(r, list):
                if table not in TABLES_AFTER_0005:
                    yield [v for i, v in enumerate(r) if i not in drop]
            else:
                yield r

    old = _rewritten(blob, tmp_path / "old.backup", as_0005)
    target = f"sqlite:///{tmp_path / 'target' / 'db.sqlite'}"
    settings = Settings(data_dir=tmp_path / "keys", database_url=target)
    assert run_restore(settings, old) == 0
    assert query(target, "SELECT version_num FROM alembic_version")[0][0] == _head()
    assert query(target, "SELECT name, key_hash, logical_bytes FROM storage_nodes") == [
        ("n1", "ab" * 32, 0)]
    assert table_rows(target, "folders") == 6
    # 0005 had one name per file (the oldest): upgraded, it is the file's one name
    assert query(target, "SELECT n.name, f.nlink FROM files f JOIN file_names n"
                 " ON n.file_id = f.id") == [("doc", 1)]

    newer = _rewritten(blob, tmp_path / "newer.backup", lambda records: (
        {**r, "revision": "9999_from_the_future"} if isinstance(r, dict)
        and r.get("kind") == "header" else r for r in records))
    fresh = f"sqlite:///{tmp_path / 'fresh' / 'db.sqlite'}"
    assert run_restore(Settings(data_dir=tmp_path / "keys2", database_url=fresh), newer) == 10
    assert table_rows(fresh, "users") == 0 and not (tmp_path / "keys2").exists()


def test_backup_carries_the_keys_the_gateway_runs_with(tmp_path: Path) -> None:
    """The resolved keys, and the Campay stand-in's key file when the stand-in runs."""
    settings = Settings(data_dir=tmp_path, admin_key="a", cluster_secret="c", otp_key="o")
    assert cluster_keys(settings) == {"admin_key": "a", "cluster_secret": "c", "otp_key": "o"}
    (tmp_path / "campay_standin_key").write_text("s\n")
    assert cluster_keys(settings)["campay_standin_key"] == "s"
    assert "cluster_secret" not in cluster_keys(Settings(data_dir=tmp_path, admin_key="a",
                                                         otp_key="o"))  # open cluster


def test_node_sweep_waits_for_a_complete_fsck_after_a_restore(source_db: Database) -> None:
    """Garbage collection's node sweep would delete the chunks of files written after the
    backup (the restored metadata does not know them): after a restore it stays off until
    a complete fsck has reported them; an incomplete fsck does not count."""
    from cloudgrpc_server.garbage import GarbageCollector
    from cloudgrpc_server.restore_guard import mark_restored, sweep_held_since

    collector = GarbageCollector(Settings(), source_db, None, None)  # type: ignore[arg-type]
    with source_db.read() as s:
        assert sweep_held_since(s) is None
    with source_db.engine.begin() as conn:
        mark_restored(conn, "2026-12-01T00:00:00")
    with source_db.read() as s:
        assert sweep_held_since(s) is not None
    assert collector._sweep_nodes() == 0  # paused: never asks a node (no pool here)

    later = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(seconds=1)
    with source_db.write() as s:
        s.add(Event(event_type="fsck", message="fsck: incomplete", timestamp=later,
                    details=json.dumps({"complete": False})))
    with source_db.read() as s:
        assert sweep_held_since(s) is not None
    with source_db.write() as s:
        s.add(Event(event_type="fsck", message="fsck: 3 problems", timestamp=later,
                    details=json.dumps({"complete": True, "clean": False})))
    with source_db.read() as s:
        assert sweep_held_since(s) is None
