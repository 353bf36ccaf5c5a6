"""``cloudgrpc`` end to end: subprocesses against a real gateway, three nodes and SMTP mail.

Sign-in uses the real OTP mail (read from the harness's SMTP sink); uploads and downloads
go through the real chunk pipeline, so checksums, dedup and resume are the real thing.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest

from cloudgrpc_proto import cloud_storage_pb2 as pb
from cloudgrpc_proto.direct_writes import IN_FLIGHT
from cloudgrpc_proto.session_store import SessionStore
from tests.client.clitools import Cli, cli_argv

pytest.importorskip("aiosmtpd")

from tests.cluster import ADMIN_KEY, Cluster  # noqa: E402

MiB = 1024 * 1024
CHUNK = 4 * MiB  # the gateway's default CHUNK_SIZE


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path_factory.mktemp("cluster"), nodes=3)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def _email() -> str:
    return f"user-{uuid.uuid4().hex[:8]}@example.com"


def enroll(real: Cluster, cli: Cli, name: str = "Test User") -> str:
    """Sign up the way a script does: --send-code, read the mail, then --otp CODE."""
    email = _email()
    before = real.mail.count_for(email)
    cli.ok("enroll", email, name, "--send-code")
    code = real.mail.code_for(email, after=before)
    result = cli.ok("enroll", email, name, "--otp", code)
    assert f"Enrolled {name} <{email}>" in result.out
    return email


@pytest.fixture
def user(real: Cluster, tmp_path: pathlib.Path) -> tuple[Cli, str]:
    cli = Cli(real.address, tmp_path)
    return cli, enroll(real, cli)


def sha(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(MiB), b""):
            digest.update(block)
    return digest.hexdigest()


def random_file(path: pathlib.Path, size: int) -> pathlib.Path:
    with open(path, "wb") as handle:
        left = size
        while left:
            n = min(left, 8 * MiB)
            handle.write(os.urandom(n))
            left -= n
    return path


# -- accounts ------------------------------------------------------------------------------


def test_sign_in_flows(real: Cluster, tmp_path: pathlib.Path) -> None:
    cli = Cli(real.address, tmp_path)
    email = enroll(real, cli, "Ada Lovelace")
    who = json.loads(cli.ok("whoami", "--json").out)
    assert who["email"] == email and who["full_name"] == "Ada Lovelace"
    assert who["device_token"] is True and "PlaintextKeyring" in who["keyring"]
    stored = SessionStore(real.address).load()
    assert stored is not None and stored.refresh_token
    cli.ok("logout")
    cli.fails(7, "ls")
    # login with the code typed at the prompt (stdin), as a user does
    before = real.mail.count_for(email)
    proc = subprocess.Popen(
        cli_argv() + ["--server", real.address, "login", email],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
        env=cli.env,
    )
    try:
        code = real.mail.code_for(email, after=before)
        out, err = proc.communicate(f"{code}\n".encode(), timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert proc.returncode == 0, err.decode()
    assert f"Enter the 6-digit code sent to {email}:" in err.decode()
    assert f"Signed in as {email}" in out.decode()
    cli.ok("ls")


def test_wrong_code_and_unknown_account(real: Cluster, tmp_path: pathlib.Path) -> None:
    cli = Cli(real.address, tmp_path)
    email = _email()
    cli.ok("login", email, "--send-code")
    result = cli.fails(6, "enroll", email, "X", "--otp", "000000")
    assert "wrong code" in result.err
    result = cli.fails(4, "login", email, "--otp", real.mail.code_for(email))
    assert "enroll first" in result.err


def test_session_renewal_and_revocation(real: Cluster, user: tuple[Cli, str]) -> None:
    cli, email = user
    stored = SessionStore(real.address).load()
    assert stored is not None
    # the session dies on the server; the device token renews it transparently
    real.auth.Logout(pb.LogoutRequest(session_token=stored.session_token), timeout=10)
    cli.ok("ls")
    renewed = SessionStore(real.address).load()
    assert renewed is not None and renewed.session_token != stored.session_token
    # both die: the CLI says how to sign in again
    real.auth.Logout(
        pb.LogoutRequest(
            session_token=renewed.session_token, refresh_token=renewed.refresh_token
        ),
        timeout=10,
    )
    result = cli.fails(7, "ls")
    assert f"run cloudgrpc login {email}" in result.err


# -- files ---------------------------------------------------------------------------------


def test_round_trips(user: tuple[Cli, str], tmp_path: pathlib.Path) -> None:
    cli, _ = user
    files = {
        "empty.bin": tmp_path / "empty.bin",
        "small.txt": tmp_path / "small.txt",
        "big.bin": random_file(tmp_path / "big.bin", 50 * MiB),
    }
    files["empty.bin"].write_bytes(b"")
    files["small.txt"].write_bytes(b"hello, cloud\n" * 100)
    result = cli.ok("upload", "--json", *[str(p) for p in files.values()], "/rt")
    uploaded = {pathlib.Path(r["local"]).name: r for r in json.loads(result.out)}
    assert uploaded["big.bin"]["size"] == 50 * MiB
    listing = {e["name"]: e for e in json.loads(cli.ok("ls", "/rt", "--json").out)}
    assert set(listing) == set(files)
    for name, local in files.items():
        assert listing[name]["size"] == local.stat().st_size
        back = tmp_path / f"back-{name}"
        cli.ok("download", f"/rt/{name}", str(back))
        assert sha(back) == sha(local), name
    # by id, to stdout
    small = cli("download", listing["small.txt"]["id"], "-")
    assert small.code == 0 and small.raw == files["small.txt"].read_bytes()
    assert cli("download", "/rt/empty.bin", "-").raw == b""
    # a range across a chunk boundary
    offset, length = 4 * MiB - 1000, 3 * MiB
    part = cli("download", "/rt/big.bin", "-", "--offset", str(offset), "--length", str(length))
    with open(files["big.bin"], "rb") as handle:
        handle.seek(offset)
        assert part.raw == handle.read(length)


def test_tree_upload(user: tuple[Cli, str], tmp_path: pathlib.Path) -> None:
    cli, _ = user
    tree = tmp_path / "photos"
    for rel, size in {
        "a.jpg": 1000,
        "2024/b.jpg": 300_000,
        "2024/summer/c.jpg": 0,
        "2024/summer/d.jpg": 5 * MiB + 7,
        "2025/e.jpg": 64 * 1024,
    }.items():
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        random_file(tree / rel, size)
    (tree / "empty").mkdir()
    result = cli.ok("upload", "-r", "--jobs", "3", str(tree), "/")
    assert "5 of 5 files uploaded" in result.out
    assert [e["name"] for e in json.loads(cli.ok("ls", "/photos", "--json").out)] == [
        "2024",
        "2025",
        "empty",
        "a.jpg",
    ]
    out = tmp_path / "restored"
    cli.ok("download", "-r", "/photos", str(out) + "/")
    for local in tree.rglob("*"):
        twin = out / "photos" / local.relative_to(tree)
        if local.is_dir():
            assert twin.is_dir()
        else:
            assert sha(twin) == sha(local), local


def test_tree_of_small_files_goes_up_in_groups(
    real: Cluster, user: tuple[Cli, str], tmp_path: pathlib.Path
) -> None:
    cli, _ = user
    tree = tmp_path / "notes"
    for i in range(250):
        path = tree / f"d{i % 2}" / f"n{i}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(100 + i))
    before = sum("small files" in line for line in real.gateway.lines)
    assert "250 of 250 files uploaded" in cli.ok("upload", "-r", str(tree), "/").out
    calls = sum("small files" in line for line in real.gateway.lines) - before
    assert 3 <= calls <= 6  # groups of at most 100, not one call per file
    (tree / "d0" / "n0.txt").write_bytes(b"changed")
    again = cli.ok("upload", "-r", "--no-clobber", str(tree), "/")
    assert "skipped /notes/d0/n0.txt: exists" in again.out + again.err
    assert cli.ok("download", "/notes/d0/n0.txt", "-").out != "changed"
    cli.ok("upload", "-r", str(tree), "/")
    assert cli.ok("download", "/notes/d0/n0.txt", "-").out == "changed"
    out = tmp_path / "back"
    cli.ok("download", "-r", "/notes", str(out) + "/")
    for local in tree.rglob("*.txt"):
        assert sha(out / "notes" / local.relative_to(tree)) == sha(local), local


def _chunks_on_nodes(real: Cluster, hashes: list[str]) -> int:
    present = 0
    for digest in hashes:
        for name in real.nodes:
            hits = list(real.node_dir(name).glob(f"**/{digest}"))
            if hits:
                present += 1
                break
    return present


def test_interrupted_upload_resumes_with_missing_chunks_only(
    real: Cluster, user: tuple[Cli, str], tmp_path: pathlib.Path
) -> None:
    cli, _ = user
    big = random_file(tmp_path / "big.iso", 50 * MiB + 123)
    data = big.read_bytes()
    hashes = [hashlib.sha256(data[i : i + CHUNK]).hexdigest() for i in range(0, len(data), CHUNK)]
    proc = subprocess.Popen(
        cli_argv() + ["--server", real.address, "upload", str(big), "/iso", "--limit-rate", "8M"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path,
        env=cli.env,
    )
    try:
        deadline = time.monotonic() + 60
        while _chunks_on_nodes(real, hashes) < 4 and time.monotonic() < deadline:
            assert proc.poll() is None, "the upload finished before it could be interrupted"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    stored = _chunks_on_nodes(real, hashes)
    assert 4 <= stored < len(hashes)
    assert json.loads(cli.ok("ls", "/iso", "--json").out) == []  # nothing visible
    result = json.loads(cli.ok("upload", "--json", str(big), "/iso").out)[0]
    # only the chunks the nodes did not hold travelled again, but for those in flight: up
    # to IN_FLIGHT written to the nodes directly whose receipts the gateway never got (and
    # one the gateway was storing)
    unclaimed = IN_FLIGHT + 1
    assert result["bytes_sent"] + result["bytes_referenced"] == len(data)
    assert result["chunks_referenced"] >= stored - unclaimed
    assert result["bytes_sent"] <= len(data) - (stored - unclaimed) * CHUNK
    assert result["chunks_deduplicated"] >= result["chunks_referenced"]
    back = tmp_path / "back.iso"
    cli.ok("download", "/iso/big.iso", str(back))
    assert sha(back) == sha(big)
    # an appended file re-sends only its tail
    with open(big, "ab") as handle:
        handle.write(os.urandom(MiB))
    again = json.loads(cli.ok("upload", "--json", str(big), "/iso").out)[0]
    assert again["chunks_referenced"] == len(data) // CHUNK
    assert again["bytes_sent"] == big.stat().st_size - (len(data) // CHUNK) * CHUNK


def test_shell_through_stdin(real: Cluster, tmp_path: pathlib.Path) -> None:
    cli = Cli(real.address, tmp_path)
    email = _email()
    (tmp_path / "test.pdf").write_bytes(b"%PDF-1.4 " + os.urandom(300_000))
    proc = subprocess.Popen(
        cli_argv() + ["--server", real.address, "shell"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
        env=cli.env,
    )
    try:
        assert proc.stdin is not None
        proc.stdin.write(f'enroll {email} "Shell User"\n'.encode())
        proc.stdin.flush()
        code = real.mail.code_for(email)
        script = [
            code,
            "upload test.pdf",
            "list",
            "mkdir /docs",
            "cd docs",
            "upload test.pdf",
            "ls --json",
            "download test.pdf copy.pdf",
            "cd /",
            "delete /test.pdf",
            "trash list --json",
            "storage",
            "download /missing.pdf",
            "exit",
        ]
        out, err = proc.communicate(("\n".join(script) + "\n").encode(), timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    text, errors_text = out.decode(), err.decode()
    assert proc.returncode == 4, errors_text  # the status of the last command before exit
    assert "Enrolled Shell User" in text
    assert "uploaded test.pdf -> /test.pdf" in text
    assert "uploaded test.pdf -> /docs/test.pdf" in text
    assert (tmp_path / "copy.pdf").read_bytes() == (tmp_path / "test.pdf").read_bytes()
    assert "moved to trash: /test.pdf" in text
    assert '"original_path": "/test.pdf"' in text
    assert "allocated:" in text
    assert "no such file or folder: /missing.pdf" in errors_text


def test_error_exit_codes(real: Cluster, user: tuple[Cli, str], tmp_path: pathlib.Path) -> None:
    cli, email = user
    (tmp_path / "f.bin").write_bytes(os.urandom(3 * MiB))
    cli.fails(4, "download", "/no/such/file")
    cli.fails(4, "ls", "/nope")
    cli.fails(4, "upload", str(tmp_path / "missing.bin"))
    cli.ok("mkdir", "/dup")
    cli.fails(5, "mkdir", "/dup")
    cli.fails(2, "rm", "/dup")  # a folder without -r
    cli.fails(2, "upload")
    # quota: shrink it with the admin API, then upload more than fits
    real.admin.SetUserQuota(
        pb.SetUserQuotaRequest(admin_key=ADMIN_KEY, email=email, storage_bytes=MiB), timeout=10
    )
    result = cli.fails(8, "upload", str(tmp_path / "f.bin"))
    assert "quota" in result.err.lower() or "not enough space" in result.err
    # gateway unreachable: a closed port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    stored = SessionStore(real.address).load()
    assert stored is not None
    SessionStore(f"127.0.0.1:{port}").save(stored)
    down = Cli(f"127.0.0.1:{port}", tmp_path)
    result = down.fails(12, "--timeout", "3", "ls")
    assert "cannot reach the gateway" in result.err
    # not signed in (another keyring)
    other = Cli(real.address, tmp_path, env={"XDG_DATA_HOME": str(tmp_path / "nobody")})
    result = other.fails(7, "ls")
    assert f"not signed in to {real.address}: run cloudgrpc login EMAIL" in result.err


def test_rm_mv_share_trash(real: Cluster, user: tuple[Cli, str], tmp_path: pathlib.Path) -> None:
    cli, _ = user
    friend_cli = Cli(real.address, tmp_path, env={"XDG_DATA_HOME": str(tmp_path / "friend")})
    friend = enroll(real, friend_cli, "Friend")
    (tmp_path / "a.txt").write_text("alpha")
    cli.ok("upload", str(tmp_path / "a.txt"), "/w")
    cli.ok("mv", "/w/a.txt", "/w/b.txt")
    cli.ok("mkdir", "-p", "/x/y")
    cli.ok("mv", "/w/b.txt", "/x/y")
    assert cli("download", "/x/y/b.txt", "-").raw == b"alpha"
    cli.ok("share", "/x/y/b.txt", friend, "--permission", "read")
    shares = json.loads(cli.ok("share", "--list", "--json").out)
    assert shares[0]["shared_with"] == friend
    with_me = json.loads(friend_cli.ok("share", "--with-me", "--json").out)
    assert with_me[0]["name"] == "b.txt"
    assert friend_cli("download", with_me[0]["id"], "-").raw == b"alpha"
    # The same tree as the mount: shared files live under /Shared.
    listed = json.loads(friend_cli.ok("ls", "/Shared", "--json").out)
    assert [e["name"] for e in listed] == ["b.txt"]
    assert friend_cli("download", "/Shared/b.txt", "-").raw == b"alpha"
    cli.ok("share", "--revoke", shares[0]["share_id"])
    friend_cli.fails(4, "download", "/Shared/b.txt", "-")
    friend_cli.fails(4, "download", with_me[0]["id"], "-")
    cli.ok("rm", "-r", "/x")
    cli.fails(4, "ls", "/x")
    trash = json.loads(cli.ok("trash", "list", "--json").out)
    assert any(e["name"] == "x" for e in trash)
    cli.ok("trash", "restore", "/x")
    assert cli("download", "/x/y/b.txt", "-").raw == b"alpha"
    cli.ok("rm", "--permanent", "/x/y/b.txt")
    cli.ok("trash", "empty")
    assert json.loads(cli.ok("trash", "list", "--json").out) == []


def test_rm_and_mv_of_one_name_of_a_hard_linked_file(real: Cluster, user: tuple[Cli, str],
                                                      tmp_path: pathlib.Path) -> None:
    """A path names one name of a file with several: `mv` moves that name and `rm`
    removes it, the file stays under its other names and nothing goes to the trash."""
    cli, email = user
    (tmp_path / "a.txt").write_text("alpha")
    cli.ok("upload", str(tmp_path / "a.txt"), "/h")
    file_id = json.loads(cli.ok("ls", "/h", "--json").out)[0]["id"]
    acct = real.sign_in(email)
    real.files.LinkFile(pb.LinkFileRequest(session_token=acct.token, file_id=file_id,
                                           name="b.txt"), timeout=10)
    cli.ok("mv", "/b.txt", "/h/c.txt")
    assert sorted((e["name"], e["links"]) for e in json.loads(cli.ok("ls", "/h", "--json").out)
                  ) == [("a.txt", 2), ("c.txt", 2)]
    assert cli.ok("ls", "/h").out.split("\n")[1].split()[:4] == ["a.txt", "5", "B", "2"]
    cli.ok("rm", "/h/a.txt")
    assert [(e["name"], e["links"]) for e in json.loads(cli.ok("ls", "/h", "--json").out)
            ] == [("c.txt", 1)]
    assert cli("download", "/h/c.txt", "-").raw == b"alpha"
    assert json.loads(cli.ok("trash", "list", "--json").out) == []
    acct.cluster.files.UploadFile(iter([pb.UploadFileRequest(metadata=pb.FileMetadata(
        session_token=acct.token, filename="pipe", mode=0o10640, file_size=0))]),
        timeout=10)  # a fifo, as a mount's mkfifo stores it
    pipe = [line.split() for line in cli.ok("ls", "/").out.splitlines() if "pipe" in line]
    assert pipe and pipe[0][:5] == ["pipe", "0", "B", "1", "fifo"], pipe
    cli.ok("rm", "/h/c.txt")  # the last name: to the trash as any file
    assert [e["name"] for e in json.loads(cli.ok("trash", "list", "--json").out)] == ["c.txt"]
