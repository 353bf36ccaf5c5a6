"""``cloudgrpc`` through subprocess against the fake gateway: arguments, errors, file commands."""

from __future__ import annotations

import hashlib
import json
import pathlib
import socket

import pytest

from cloudgrpc_proto import errors
from cloudgrpc_proto.session_store import Session, SessionStore
from tests.client.clitools import Cli
from tests.client.fake_gateway import Running

EMAIL = "ada@example.com"


@pytest.fixture
def cli(gateway: Running, tmp_path: pathlib.Path) -> Cli:
    return Cli(gateway.target, tmp_path)


@pytest.fixture
def signed_in(cli: Cli) -> Cli:
    result = cli.ok("enroll", EMAIL, "Ada Lovelace", stdin="123456\n")
    assert "Enter the 6-digit code sent to ada@example.com:" in result.err
    return cli


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- arguments -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["bogus"],
        ["upload"],
        ["download"],
        ["mv", "a"],
        ["share", "--permission", "admin", "/a", "b@c.d"],
        ["ls", "--no-such-flag"],
        ["--timeout", "soon", "ls"],
        ["trash", "restore"],
    ],
)
def test_argument_errors_exit_2(cli: Cli, argv: list[str]) -> None:
    result = cli(*argv)
    assert result.code == 2, str(result)
    if argv:
        lines = result.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("cloudgrpc: "), str(result)


def test_help_exits_0(cli: Cli) -> None:
    result = cli.ok("--help")
    assert "upload" in result.out and "shell" in result.out
    assert "mount" in result.out
    assert "--name" in cli.ok("upload", "--help").out


def test_bad_email_is_a_usage_error(cli: Cli) -> None:
    cli.fails(2, "login", "not-an-email")


# -- sessions ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [["ls"], ["storage"], ["whoami"], ["upload", "x"], ["download", "/a"], ["trash"], ["rm", "/a"]],
)
def test_not_signed_in(cli: Cli, argv: list[str], tmp_path: pathlib.Path) -> None:
    (tmp_path / "x").write_text("x")
    result = cli.fails(7, *argv)
    expected = f"not signed in to {cli.target}: run cloudgrpc login EMAIL"
    assert result.err.strip().endswith(expected), str(result)


def test_not_signed_in_names_the_server_asked(signed_in: Cli, gateway: Running) -> None:
    """Sessions are kept per gateway address: a typo in --server must not read like a lost
    session, so the line names the address that has no session."""
    other = f"127.0.0.1:{_closed_port()}"
    result = signed_in.fails(7, "--server", other, "ls", "/", server=False)
    assert result.err.strip().splitlines()[-1] == (
        f"cloudgrpc: not signed in to {other}: run cloudgrpc login EMAIL"), str(result)
    env_other = Cli(gateway.target, signed_in.cwd, env={"CLOUDGRPC_SERVER": other})
    env_other.env["CLOUDGRPC_SERVER"] = other  # Cli drops it; this test is about it
    assert f"not signed in to {other}:" in env_other.fails(7, "whoami", server=False).err
    calls = sum(gateway.fake.calls.values())
    assert signed_in.ok("ls", "/").code == 0  # the session on the right address is intact
    assert sum(gateway.fake.calls.values()) > calls


def test_gateway_down_exits_12(cli: Cli) -> None:
    target = f"127.0.0.1:{_closed_port()}"
    SessionStore(target).save(Session(email=EMAIL, session_token="tok", expires_at=0))
    down = Cli(target, cli.cwd)
    result = down.fails(12, "--timeout", "3", "ls")
    assert f"cannot reach the gateway at {target}" in result.err


def test_error_kinds_have_distinct_messages_and_exit_codes(
    signed_in: Cli, gateway: Running, tmp_path: pathlib.Path
) -> None:
    """Unreachable (12, test above), unreadable data (14), a cluster the gateway says
    cannot serve (15) and a busy gateway (9) each say what they are."""
    (tmp_path / "f.txt").write_text("some bytes")
    signed_in.ok("upload", str(tmp_path / "f.txt"), "/")
    answers = gateway.fake.answers
    answers["DownloadFile"] = [errors.DataLoss(
        "chunk 0123456789ab unreadable on every replica (node1: UNAVAILABLE, node2: NOT_FOUND)")]
    lost = signed_in.fails(14, "download", "/f.txt", str(tmp_path / "back.txt"))
    assert "data unreadable: chunk 0123456789ab unreadable on every replica" in lost.err
    assert "cannot reach" not in lost.err
    assert not (tmp_path / "back.txt").exists()
    answers["ListFiles"] = [errors.Unavailable("metadata database unavailable: gone")] * 5
    cluster = signed_in.fails(15, "ls", "/")
    assert "the gateway answered but the cluster cannot serve this now: metadata database" \
        in cluster.err
    assert "cannot reach" not in cluster.err
    answers["ListFiles"] = [errors.RateLimited(
        "the gateway is serving 64 long-lived calls, its limit: try again shortly")]
    busy = signed_in.fails(9, "ls", "/")
    assert "its limit: try again shortly" in busy.err and "cannot reach" not in busy.err
    # nothing was left over: the same commands work again
    assert "f.txt" in signed_in.ok("ls", "/").out
    signed_in.ok("download", "/f.txt", str(tmp_path / "back.txt"))
    assert (tmp_path / "back.txt").read_text() == "some bytes"


def test_sign_in_stores_the_session_in_the_keyring(signed_in: Cli, gateway: Running) -> None:
    stored = SessionStore(gateway.target).load()
    assert stored is not None and stored.email == EMAIL
    assert stored.session_token in gateway.fake.sessions
    assert stored.refresh_token in gateway.fake.refresh_tokens  # device token issued
    who = signed_in.ok("whoami")
    assert EMAIL in who.out and "PlaintextKeyring" in who.out
    assert "session stored in" in who.out
    data = json.loads(signed_in.ok("whoami", "--json").out)
    assert data["email"] == EMAIL and data["device_token"] is True
    assert "PlaintextKeyring" in data["keyring"]
    # no secret in the output
    assert stored.session_token not in who.out + who.err


def test_login_with_send_code_then_otp(signed_in: Cli, gateway: Running) -> None:
    signed_in.ok("logout")
    assert SessionStore(gateway.target).load() is None
    signed_in.fails(7, "ls")
    signed_in.ok("login", EMAIL, "--send-code")
    result = signed_in.ok("login", EMAIL, "--otp", "123456")
    assert "Signed in as ada@example.com" in result.out
    assert signed_in.ok("ls").code == 0


def test_send_code_within_the_cooldown_fails_and_says_when(
    signed_in: Cli, gateway: Running
) -> None:
    """The code mailed for the sign-in was used; a script asking for a new one must not be told
    it worked, or its next ``--otp`` step fails for a reason it cannot see."""
    gateway.fake.otp_cooldown_s = 60
    signed_in.ok("logout")
    result = signed_in.fails(9, "login", EMAIL, "--send-code")
    last = result.err.strip().splitlines()[-1]
    assert last.startswith("cloudgrpc: no code sent: a code was just sent; try again in "), last
    assert last.endswith(" s"), last
    assert EMAIL not in gateway.fake.otps  # indeed nothing to type in
    signed_in.fails(2, "login", EMAIL, "--otp", "123456")  # the used code stays used
    gateway.fake.otp_cooldown_s = 0  # the cooldown over: the same command works
    signed_in.ok("login", EMAIL, "--send-code")
    assert "Signed in as" in signed_in.ok("login", EMAIL, "--otp", "123456").out


def test_wrong_code_fails_cleanly(cli: Cli) -> None:
    result = cli.fails(2, "enroll", EMAIL, "Ada", stdin="000000\n")
    assert "invalid code" in result.err
    cli.fails(2, "enroll", EMAIL, "Ada", stdin="")  # EOF at the prompt


def test_expired_session_is_refreshed_and_stored(signed_in: Cli, gateway: Running) -> None:
    before = SessionStore(gateway.target).load()
    gateway.fake.expire_sessions()
    signed_in.ok("ls")
    after = SessionStore(gateway.target).load()
    assert after is not None and before is not None
    assert after.session_token != before.session_token
    assert after.refresh_token != before.refresh_token


def test_revoked_session_says_how_to_sign_in(signed_in: Cli, gateway: Running) -> None:
    gateway.fake.expire_sessions()
    gateway.fake.refresh_tokens.clear()
    result = signed_in.fails(7, "ls")
    assert "run cloudgrpc login ada@example.com" in result.err


# -- files ---------------------------------------------------------------------------------


def test_options_go_anywhere_as_with_cp(signed_in: Cli, tmp_path: pathlib.Path) -> None:
    cli = signed_in
    src = tmp_path / "notes.txt"
    src.write_bytes(b"0123456789" * 50)
    cli.ok("mkdir", "/docs")
    cli.ok("upload", str(src), "--name", "after.txt", "/docs")  # option between SRC and DEST
    cli.ok("upload", "--name", "before.txt", str(src), "/docs")
    cli.ok("upload", str(src), "/docs", "--name", "last.txt")
    names = sorted(e["name"] for e in json.loads(cli.ok("ls", "/docs", "--json").out))
    assert names == ["after.txt", "before.txt", "last.txt"]
    assert [e["name"] for e in json.loads(cli.ok("ls", "--json", "/").out)] == ["docs"]
    part = tmp_path / "part"
    cli.ok("download", "/docs/after.txt", "--offset", "5", "--length", "10", str(part))
    assert part.read_bytes() == src.read_bytes()[5:15]
    bad = cli.fails(2, "upload", str(src), "--bogus", "/docs")  # unknown options still refused
    assert "--bogus" in bad.err and len(bad.err.strip().splitlines()) == 1
    assert len(json.loads(cli.ok("ls", "/docs", "--json").out)) == 3


def test_file_commands_round_trip(signed_in: Cli, tmp_path: pathlib.Path) -> None:
    cli = signed_in
    src = tmp_path / "report.pdf"
    src.write_bytes(b"%PDF" + bytes(range(256)) * 4000)
    up = cli.ok("upload", str(src), "/docs/")
    assert "-> /docs/report.pdf" in up.out
    listing = json.loads(cli.ok("ls", "/docs", "--json").out)
    assert [e["name"] for e in listing] == ["report.pdf"]
    entry = listing[0]
    assert entry["size"] == src.stat().st_size and entry["type"] == "file"
    assert entry["mime_type"] == "application/pdf"
    table = cli.ok("ls", "/docs").out
    assert "report.pdf" in table and entry["id"] in table
    # by path, by id, to stdout, ranged
    cli.ok("download", "/docs/report.pdf", str(tmp_path / "back.pdf"))
    assert (tmp_path / "back.pdf").read_bytes() == src.read_bytes()
    out = cli("download", entry["id"], "-")
    assert out.code == 0 and out.raw == src.read_bytes()
    part = cli("download", "/docs/report.pdf", "-", "--offset", "10", "--length", "100")
    assert part.raw == src.read_bytes()[10:110]
    (tmp_path / "into").mkdir()
    cli.ok("download", "/docs/report.pdf", str(tmp_path / "into"))
    assert (tmp_path / "into" / "report.pdf").read_bytes() == src.read_bytes()
    # mkdir, mv, rm, trash
    cli.ok("mkdir", "-p", "/a/b/c")
    cli.fails(5, "mkdir", "/a")
    cli.fails(4, "mkdir", "/x/y")
    cli.ok("mv", "/docs/report.pdf", "/a/b")
    assert cli.ok("ls", "/a/b/report.pdf", "--json").out.count('"report.pdf"') == 1
    cli.ok("mv", "/a/b/report.pdf", "/a/renamed.pdf")
    cli.fails(4, "ls", "/a/b/report.pdf")
    cli.fails(2, "rm", "/a")  # a folder without -r
    cli.ok("rm", "/a/renamed.pdf")
    trash = json.loads(cli.ok("trash", "list", "--json").out)
    assert [t["name"] for t in trash] == ["renamed.pdf"]
    cli.ok("trash", "restore", "/a/renamed.pdf")
    assert json.loads(cli.ok("ls", "/a", "--json").out)[-1]["name"] == "renamed.pdf"
    cli.ok("rm", "-r", "/a")
    assert "the trash is empty" not in cli.ok("trash").out
    cli.ok("trash", "empty")
    assert "the trash is empty" in cli.ok("trash").out
    cli.fails(4, "download", "/nope.txt")
    cli.fails(4, "rm", "/nope.txt")
    cli.ok("rm", "-f", "/nope.txt")


def test_upload_tree_and_download_tree(signed_in: Cli, tmp_path: pathlib.Path) -> None:
    tree = tmp_path / "photos"
    (tree / "2024" / "summer").mkdir(parents=True)
    (tree / "empty").mkdir()
    files = {
        "a.jpg": b"a" * 1000,
        "2024/b.jpg": b"b" * 300_000,
        "2024/summer/c.jpg": b"",
        "2024/summer/d.jpg": bytes(range(256)) * 3000,
    }
    for rel, data in files.items():
        (tree / rel).write_bytes(data)
    result = signed_in.ok("upload", "-r", "--jobs", "3", str(tree), "/")
    assert "4 of 4 files uploaded" in result.out
    listing = json.loads(signed_in.ok("ls", "/photos/2024/summer", "--json").out)
    assert sorted(e["name"] for e in listing) == ["c.jpg", "d.jpg"]
    assert json.loads(signed_in.ok("ls", "/photos/empty", "--json").out) == []
    out = tmp_path / "restored"
    signed_in.ok("download", "-r", "/photos", str(out) + "/")
    for rel, data in files.items():
        assert (out / "photos" / rel).read_bytes() == data
    assert (out / "photos" / "empty").is_dir()
    signed_in.fails(2, "upload", str(tree))  # a directory without -r


def test_upload_again_sends_references_only(signed_in: Cli, gateway: Running, tmp_path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(hashlib.sha256(b"x").digest() * (40_000))  # ~1.2 MiB
    signed_in.ok("upload", str(big))
    result = signed_in.ok("upload", str(big))
    assert gateway.fake.upload_log[-1]["bytes"] == 0
    assert "already stored" in result.out
    signed_in.ok("upload", "--no-dedup", str(big))
    assert gateway.fake.upload_log[-1]["bytes"] == big.stat().st_size
    skipped = signed_in.ok("upload", "--no-clobber", str(big))
    assert "skipped" in skipped.out


def test_upload_from_stdin(signed_in: Cli, tmp_path: pathlib.Path) -> None:
    signed_in.ok("upload", "-", "/in/", "--name", "notes.txt", stdin="hello from a pipe\n")
    out = signed_in("download", "/in/notes.txt", "-")
    assert out.raw == b"hello from a pipe\n"


def test_missing_local_file_exits_4(signed_in: Cli) -> None:
    result = signed_in.fails(4, "upload", "no-such-file.txt", "/docs")
    assert "no-such-file.txt" in result.err


def test_quota_exceeded_exits_8(signed_in: Cli, gateway: Running, tmp_path) -> None:
    gateway.fake.users[EMAIL].allocated = 100
    (tmp_path / "f").write_bytes(b"x" * 1000)
    result = signed_in.fails(8, "upload", str(tmp_path / "f"))
    assert "quota" in result.err


def test_share_commands(signed_in: Cli, gateway: Running, tmp_path: pathlib.Path) -> None:
    other = Cli(gateway.target, tmp_path, env={"XDG_DATA_HOME": str(tmp_path / "bob-data")})
    other.ok("enroll", "bob@example.com", "Bob", stdin="123456\n")
    (tmp_path / "s.txt").write_text("shared")
    signed_in.ok("upload", str(tmp_path / "s.txt"))
    signed_in.ok("share", "/s.txt", "bob@example.com", "--permission", "write")
    shares = json.loads(signed_in.ok("share", "--list", "--json").out)
    assert shares[0]["shared_with"] == "bob@example.com" and shares[0]["permission"] == "write"
    mine = json.loads(other.ok("share", "--with-me", "--json").out)
    assert [e["name"] for e in mine] == ["s.txt"]
    assert other("download", mine[0]["id"], "-").raw == b"shared"
    signed_in.ok("share", "--revoke", shares[0]["share_id"])
    assert json.loads(signed_in.ok("share", "--list", "--json").out) == []
    signed_in.fails(2, "share", "/s.txt")


def test_storage(signed_in: Cli, tmp_path: pathlib.Path) -> None:
    (tmp_path / "f").write_bytes(b"x" * 2048)
    signed_in.ok("upload", str(tmp_path / "f"))
    text = signed_in.ok("storage").out
    assert "allocated:" in text and "1.0 GiB" in text and "2.0 KiB" in text
    data = json.loads(signed_in.ok("storage", "--json").out)
    assert data["used_bytes"] == 2048 and data["file_count"] == 1


# -- the shell -----------------------------------------------------------------------------


def test_shell_through_stdin(cli: Cli, tmp_path: pathlib.Path) -> None:
    (tmp_path / "test.pdf").write_bytes(b"%PDF-1.4 shell test")
    script = "\n".join(
        [
            'enroll ada@example.com "Ada Lovelace"',
            "123456",
            "upload test.pdf",
            "list",
            "mkdir /docs",
            "cd /docs",
            "pwd",
            "upload test.pdf",
            "ls --json",
            "cd /",
            "download /docs/test.pdf copy.pdf",
            "delete /test.pdf",
            "ls /nope",
            "storage",
            "help",
            "bogus",
            "exit",
            "ls",  # never runs
        ]
    )
    result = cli("shell", stdin=script + "\n")
    assert result.code == 2, str(result)  # the status of the last command before exit
    assert "Enrolled Ada Lovelace" in result.out
    assert "uploaded test.pdf -> /test.pdf" in result.out
    assert "/docs\n" in result.out
    assert "/docs/test.pdf" in result.out
    assert (tmp_path / "copy.pdf").read_bytes() == b"%PDF-1.4 shell test"
    assert "moved to trash: /test.pdf" in result.out
    assert "no such file or folder: /nope" in result.err
    assert "enroll EMAIL" in result.out  # help
    assert "invalid choice: 'bogus'" in result.err
    assert "cloudgrpc:/" not in result.out  # no prompts when stdin is not a terminal


def test_shell_exit_status_and_eof(signed_in: Cli) -> None:
    assert signed_in("shell", stdin="ls\n").code == 0
    assert signed_in("shell", stdin="ls /missing\n").code == 4
    assert signed_in("shell", stdin="ls /missing\nexit 0\n").code == 0


# -- the mount's commands ------------------------------------------------------------------


def test_mount_commands_without_mount_support(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib

    from cloudgrpc_fusefs import cli

    real = importlib.import_module

    def missing(name: str, *args, **kwargs):
        if name == "cloudgrpc_fusefs.mount_cli":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", missing)
    cases = (["mount", "/tmp/x"], ["--server", "h:1", "umount", "/tmp/x"], ["status"], ["sync"])
    for argv in cases:
        assert cli.main(argv) == 13
        assert "mount support is not installed in this build" in capsys.readouterr().err


BLOCK_PYFUSE3 = (
    "import sys; sys.modules['pyfuse3'] = None; "  # as in a plain install without the fuse extra
    "from cloudgrpc_fusefs.cli import main; sys.exit(main())"
)


@pytest.mark.parametrize("foreground", [False, True])
def test_mount_without_pyfuse3_says_so_in_one_line(
    tmp_path: pathlib.Path, foreground: bool
) -> None:
    """The import happens inside mount_cli, after the hand-over: it must still end as exit 13."""
    import os
    import subprocess
    import sys

    drive = tmp_path / "drive"
    drive.mkdir()
    argv = [sys.executable, "-c", BLOCK_PYFUSE3, "--server", "127.0.0.1:1", "mount", str(drive)]
    done = subprocess.run(argv + (["-f"] if foreground else []), capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL, cwd=tmp_path)
    assert done.returncode == 13, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith("cloudgrpc: mount support is not installed"), lines
    assert "cloudgrpc[fuse]" in lines[0]
    assert not os.path.ismount(drive) and not any(drive.iterdir())


def test_mount_commands_are_handed_over(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    from cloudgrpc_fusefs import cli

    seen: list[list[str]] = []
    fake = types.ModuleType("cloudgrpc_fusefs.mount_cli")
    fake.main = lambda argv: seen.append(argv) or 0  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "cloudgrpc_fusefs.mount_cli", fake)
    assert cli.main(["--server", "gw:1", "mount", "-f", "/mnt/x", "-o", "allow_other"]) == 0
    assert seen[-1] == ["--server", "gw:1", "mount", "-f", "/mnt/x", "-o", "allow_other"]
    assert cli.main(["status", "--json"]) == 0
    assert seen[-1] == ["status", "--json"]


def test_mount_commands_start_without_the_grpc_client(tmp_path: pathlib.Path) -> None:
    """``cloudgrpc sync`` and ``status`` run in scripts and loops: the console script hands
    them over before gRPC or any command module is loaded, and they still answer as before
    (no mount running: exit 1, one line); a bad global option is still a usage error."""
    import os
    import subprocess
    import sys

    probe = (
        "import sys; from cloudgrpc_fusefs.launcher import main; code = main(sys.argv[1:]); "
        "loaded = [m for m in ('grpc', 'trio', 'cloudgrpc_fusefs.cli') if m in sys.modules]; "
        "print('loaded', loaded, file=sys.stderr); sys.exit(code)"
    )
    env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp_path)}
    for argv in (["sync", str(tmp_path)], ["--server", "h:1", "status"]):
        done = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True,
                              text=True, timeout=60, env=env)
        assert done.returncode == 1, done.stderr
        assert "no mount running" in done.stderr and "loaded []" in done.stderr
    done = subprocess.run([sys.executable, "-c", probe, "--timeout", "x", "sync"],
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 2 and "--timeout" in done.stderr
    done = subprocess.run([sys.executable, "-c", probe, "whoami"], capture_output=True,
                          text=True, timeout=60, env=env)
    assert "cloudgrpc_fusefs.cli" in done.stderr  # everything else is the whole CLI's


def test_output_cut_short_by_its_reader_ends_quietly() -> None:
    """``cloudgrpc ls / | head -1``: the reader goes away, the command stops as ls does
    (status 141, SIGPIPE's), without a "Broken pipe" line on stderr."""
    import subprocess
    import sys

    probe = (
        "import argparse, sys\n"
        "from cloudgrpc_fusefs import cli\n"
        "from cloudgrpc_fusefs.context import Context\n"
        "from cloudgrpc_fusefs.output import Output\n"
        "def spew(ctx, args):\n"
        "    while True:\n"
        "        print('entry ' * 200)\n"
        "ctx = Context(server=None, timeout=1.0, tls_ca=None, debug=False, out=Output())\n"
        "sys.exit(cli.run_command(ctx, argparse.Namespace(func=spew, command='ls')))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", probe], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.read(100)
    proc.stdout.close()
    assert proc.wait(30) == 141
    assert proc.stderr.read() == b""
