"""Issue 13, payments and what the CLIs print, attacked from outside on a real cluster.

Payments: a gateway without Campay credentials gave storage away through the offline
stand-in (+6 GiB in three calls); the stand-in's control API approved payments for anyone;
nothing limited how many payments a user started; Unicode digits passed as a phone number.

Output: names, emails, full names, event and payment messages with terminal escapes (ESC
[2J, an OSC title, a C1 CSI, a bidi override) and rich markup reached other users'
terminals raw. The gateway now refuses control characters in names, so the hostile texts
are planted straight into the cluster's database (the test owns it), the way old data or a
field the gateway does not check would carry them; then the real CLIs run as subprocesses
(piped, and on a pseudo-terminal where rich draws tables) and their output is read back.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import requests
import sqlalchemy as sa
from sqlalchemy.orm import Session as DbSession

from cloudgrpc_proto import cloud_storage_pb2 as pb
from cloudgrpc_proto import cloud_storage_pb2_grpc as pb_grpc
from cloudgrpc_proto.display import markup_safe, printable, safe_text
from cloudgrpc_proto.session_store import Session, SessionStore
from cloudgrpc_server.models import (
    Event,
    File,
    FileName,
    Folder,
    Payment,
    StorageTier,
    User,
)
from tests.cluster import ADMIN_KEY, Account, Cluster, free_port

MiB = 1024 * 1024
STARTER = 250 * MiB
MTN_PHONE = "237670000001"

# --- fixtures: the gateway's payment settings, set before the cluster is built -----------

CAMPAY_VARS = ("CAMPAY_APP_USERNAME", "CAMPAY_APP_PASSWORD", "CAMPAY_BASE_URL",
               "CAMPAY_STANDIN", "CAMPAY_STANDIN_OUTCOME", "CAMPAY_STANDIN_APPROVE_S",
               "PAYMENT_RATE_LIMIT", "PAYMENT_RATE_WINDOW_S", "CLOUDGRPC_SESSION_TOKEN")


@pytest.fixture(autouse=True)
def no_campay(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
              ) -> None:
    """A gateway as the README starts it: no Campay credentials, no stand-in opt-in; and a
    file keyring in a private XDG folder for the CLIs (never the user's own)."""
    for key in CAMPAY_VARS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("PAYMENT_RECONCILE_INTERVAL_S", "0.3")
    monkeypatch.setenv("CAMPAY_TIMEOUT_S", "2")
    monkeypatch.setenv("CAMPAY_BACKOFF_S", "0.05")
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyrings.alt.file.PlaintextKeyring")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path_factory.mktemp("xdg-data")))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("xdg-config")))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("xdg-state")))
    monkeypatch.setenv("CLOUDGRPC_ENV_FILE", os.devnull)
    monkeypatch.delenv("CLOUDGRPC_SERVER", raising=False)


@pytest.fixture
def standin_opt_in(no_campay: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The explicit opt-in the demo uses; the webhook endpoint over real HTTP beside it."""
    monkeypatch.setenv("CAMPAY_STANDIN", "1")
    monkeypatch.setenv("CAMPAY_STANDIN_APPROVE_S", "0.3")
    monkeypatch.setenv("WEBHOOK_PORT", str(free_port()))


@pytest.fixture
def payer_never_answers(standin_opt_in: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAMPAY_STANDIN_OUTCOME", "pending")


@pytest.fixture
def three_per_minute(payer_never_answers: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYMENT_RATE_LIMIT", "3")
    monkeypatch.setenv("PAYMENT_RATE_WINDOW_S", "60")


def payments(cluster: Cluster) -> pb_grpc.PaymentServiceStub:
    return pb_grpc.PaymentServiceStub(cluster.channel)


def initiate(cluster: Cluster, acct: Account, phone: str = MTN_PHONE,
             tier: str = "starter") -> pb.InitiatePaymentResponse:
    return payments(cluster).InitiatePayment(pb.InitiatePaymentRequest(
        session_token=acct.token, tier_id=tier, provider="mtn_momo", phone_number=phone),
        timeout=30)


def refused(call: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()  # type: ignore[operator]
    return info.value


def history(cluster: Cluster, acct: Account) -> list[pb.PaymentRecord]:
    return list(payments(cluster).GetPaymentHistory(pb.GetPaymentHistoryRequest(
        session_token=acct.token), timeout=10).payments)


def status(cluster: Cluster, acct: Account, payment_id: str) -> pb.CheckPaymentStatusResponse:
    return payments(cluster).CheckPaymentStatus(pb.CheckPaymentStatusRequest(
        session_token=acct.token, payment_id=payment_id), timeout=30)


def standin_url(cluster: Cluster) -> str:
    assert cluster.gateway is not None
    return cluster.gateway.wait_for(r"stand-in listening on (http://\S+?)/api", 30).group(1)


def standin_key(cluster: Cluster) -> str:
    return (cluster.root / "gateway" / "campay_standin_key").read_text().strip()


@contextlib.contextmanager
def database(cluster: Cluster) -> Iterator[DbSession]:
    engine = sa.create_engine(cluster.database_url)
    try:
        with DbSession(engine) as s, s.begin():
            yield s
    finally:
        engine.dispose()


# --- payments ------------------------------------------------------------------------------


def test_without_campay_payments_are_refused_and_nothing_is_granted(cluster: Cluster) -> None:
    acct = cluster.sign_up()
    before = acct.storage().allocated_bytes
    for _ in range(3):
        err = refused(lambda: initiate(cluster, acct))
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "payments are not configured on this gateway" in err.details()
        assert "CAMPAY_APP_USERNAME" in err.details()
    time.sleep(1.0)  # what a background credit would need
    assert acct.storage().allocated_bytes == before
    assert history(cluster, acct) == []
    assert cluster.gateway is not None
    log = "".join(cluster.gateway.lines)
    assert "stand-in listening" not in log
    assert "Payments: NOT CONFIGURED" in log
    # The tiers stay readable: the user sees what could be bought.
    tiers = payments(cluster).GetStorageTiers(pb.GetStorageTiersRequest(), timeout=10)
    assert any(t.name == "starter" for t in tiers.tiers)


def test_with_the_opt_in_the_demo_purchase_works_and_the_banner_says_so(
        standin_opt_in: None, cluster: Cluster) -> None:
    assert cluster.gateway is not None
    banner = "".join(cluster.gateway.lines)
    assert "payments: LOCAL CAMPAY STAND-IN, no real money" in banner
    assert "*** payments: LOCAL CAMPAY STAND-IN" in banner
    key_file = cluster.root / "gateway" / "campay_standin_key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert standin_key(cluster) not in banner  # where the key is, never the key

    acct = cluster.sign_up()
    before = acct.storage().allocated_bytes
    started = initiate(cluster, acct)
    assert started.payment_id and "approve the payment" in started.message
    deadline = time.monotonic() + 20
    while status(cluster, acct, started.payment_id).status != "completed":
        assert time.monotonic() < deadline, "the stand-in's payer never approved"
        time.sleep(0.1)
    time.sleep(1.0)  # reconciliation and the webhook run again: still credited once
    assert status(cluster, acct, started.payment_id).storage_added == STARTER
    assert acct.storage().allocated_bytes == before + STARTER


def test_the_standin_control_api_needs_its_key(payer_never_answers: None,
                                               cluster: Cluster) -> None:
    url = standin_url(cluster)
    acct = cluster.sign_up()
    before = acct.storage().allocated_bytes
    started = initiate(cluster, acct)
    assert status(cluster, acct, started.payment_id).status == "processing"

    approve = f"{url}/_standin/approve/{started.transaction_ref}"
    attempts = [
        requests.post(approve, timeout=10),
        requests.post(approve, headers={"Authorization": "Bearer wrong"}, timeout=10),
        requests.post(approve, headers={"Authorization": f"Basic {standin_key(cluster)}"},
                      timeout=10),
        requests.post(f"{url}/_standin/script", json={"outcome": "success", "after_s": 0},
                      timeout=10),
        # A hostile body length is not read to the end: refused before the body.
        requests.post(f"{url}/_standin/faults", data=b"{}",
                      headers={"Content-Length": "2"}, timeout=10),
    ]
    assert [r.status_code for r in attempts] == [401] * len(attempts)
    state = requests.get(f"{url}/_standin/state", timeout=10)
    assert state.status_code == 401 and "transactions" not in state.text

    time.sleep(1.5)  # several reconciliation passes
    assert status(cluster, acct, started.payment_id).status == "processing"
    assert acct.storage().allocated_bytes == before

    # The holder of the key (the operator, the demo) can still play the payer.
    ok = requests.post(approve, headers={"Authorization": f"Bearer {standin_key(cluster)}"},
                       timeout=10)
    assert ok.status_code == 200, ok.text
    deadline = time.monotonic() + 20
    while acct.storage().allocated_bytes == before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert acct.storage().allocated_bytes == before + STARTER


def test_starting_payments_is_rate_limited_per_user(three_per_minute: None,
                                                     cluster: Cluster) -> None:
    alice, bob = cluster.sign_up(), cluster.sign_up()
    for _ in range(3):
        initiate(cluster, alice)
    err = refused(lambda: initiate(cluster, alice))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    found = re.search(r"try again in (\d+) s", err.details())
    assert found, err.details()
    assert 1 <= int(found.group(1)) <= 61
    assert len(history(cluster, alice)) == 3  # the refused one asked no phone to pay
    collects = requests.get(f"{standin_url(cluster)}/_standin/state", timeout=10, headers={
        "Authorization": f"Bearer {standin_key(cluster)}"}).json()["counts"]["collect"]
    assert collects == 3
    # Another user is not affected.
    assert initiate(cluster, bob).payment_id


@pytest.mark.parametrize("phone", [
    "２３７６７００００００１",  # full-width
    "٢٣٧٦٧٠٠٠٠٠٠١",  # Arabic-Indic
    "23767000000\u0661",  # one Arabic-Indic digit at the end
    "२३७६७००००००१",  # Devanagari
    "237 ６7 00 00 001",
])
def test_phone_numbers_take_ascii_digits_only(standin_opt_in: None, cluster: Cluster,
                                              phone: str) -> None:
    acct = cluster.sign_up()
    before = acct.storage().allocated_bytes
    err = refused(lambda: initiate(cluster, acct, phone=phone))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    # refused as not a phone number, or (multi-byte digits) by the edge's length limit
    assert "not a phone number" in err.details() or "phone_number is too long" in err.details()
    time.sleep(0.8)
    assert acct.storage().allocated_bytes == before
    assert history(cluster, acct) == []


def test_failed_payment_event_reads_once(standin_opt_in: None, cluster: Cluster) -> None:
    url, key = standin_url(cluster), standin_key(cluster)
    requests.post(f"{url}/_standin/script", headers={"Authorization": f"Bearer {key}"},
                  json={"outcome": "failure", "after_s": 0.2,
                        "reason": "Insufficient balance"}, timeout=10).raise_for_status()
    acct = cluster.sign_up()
    started = initiate(cluster, acct)
    deadline = time.monotonic() + 20
    while (done := status(cluster, acct, started.payment_id)).status != "failed":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert done.message == "Insufficient balance"
    deadline = time.monotonic() + 10
    while True:
        with database(cluster) as s:
            messages = s.scalars(sa.select(Event.message)
                                 .where(Event.event_type == "payment_failed")).all()
        if messages or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert messages == [f"payment {started.payment_id[:8]} failed: Insufficient balance"]


# --- output: the escaping function -----------------------------------------------------------

HOSTILE = "\x1b[2J\x1b]0;pwned\x07\x9b31m\u202eevil[blink]x[/blink][red]R"
SHORT = "\x1b[2J\u202e[red]R"  # for columns of 20 characters
RAW = ("\x1b", "\x07", "\x9b", "\u202e")
MARKUP = "[blink]x[/blink][red]R"


def test_printable_escapes_every_unprintable_code_point() -> None:
    assert printable(HOSTILE) == "\\x1b[2J\\x1b]0;pwned\\x07\\x9b31m\\u202eevil[blink]x[/blink]" \
                                 "[red]R"
    escapes = {"\x00": "\\x00", "\t": "\\x09", "\n": "\\x0a", "\r": "\\x0d",
               "\x7f": "\\x7f", "\x85": "\\x85", "\x9f": "\\x9f", "\xad": "\\xad",
               "\u2028": "\\u2028", "\u2029": "\\u2029", "\u200b": "\\u200b",
               "\u200e": "\\u200e", "\u2066": "\\u2066", "\u2069": "\\u2069",
               "\ufeff": "\\ufeff", "\udc80": "\\udc80", "\U000e0001": "\\U000e0001",
               "\U000effff": "\\U000effff"}
    for char, escaped in escapes.items():
        assert printable(f"a{char}b") == f"a{escaped}b", repr(char)
        assert printable(f"a{char}b").isprintable()
    # Ordinary text of every script, emoji sequences included, is left alone.
    for text in ["plain name.txt", "Zoë Ngono", "报告.pdf", "تقرير", "👩‍💻 notes", "a b\\x1b"]:
        assert printable(text) == text
    assert printable(42) == "42"


def test_markup_is_shown_literally() -> None:
    from rich.console import Console

    for render in (lambda c: c.print(safe_text(HOSTILE)),
                   lambda c: c.print(f"[bold]{markup_safe(HOSTILE)}[/]")):
        console = Console(record=True, width=200, force_terminal=True, color_system="standard")
        render(console)
        text = console.export_text(styles=False)
        assert MARKUP in text
        assert not any(raw in text for raw in RAW)


# --- output: the real CLIs against planted data ---------------------------------------------


def clean(output: str) -> str:
    """``output`` without rich's own colour codes; every other escape is a finding."""
    return re.sub(r"\x1b\[[0-9;]*m", "", output)


def assert_safe(output: str, *, markup: bool = True, terminal: bool = False) -> None:
    shown = clean(output) if terminal else output
    for raw in RAW:
        assert raw not in shown, f"raw {raw!r} in output:\n{shown!r}"
    if markup:
        assert MARKUP in shown, f"markup not shown literally:\n{shown!r}"


def bin_path(name: str, module: str) -> list[str]:
    script = Path(sys.executable).with_name(name)
    return [str(script)] if script.exists() else [sys.executable, "-m", module]


def cli_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "COLUMNS": "300", "PYTHONUNBUFFERED": "1", **extra}
    env.pop("NO_COLOR", None)
    return env


def run(argv: list[str], stdin: str = "", **env: str) -> str:
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=120,
                          env=cli_env(**env))
    assert done.returncode == 0, f"{argv}: exit {done.returncode}\n{done.stdout}{done.stderr}"
    return done.stdout + done.stderr


def run_on_terminal(argv: list[str], **env: str) -> str:
    """``argv`` with stdout and stderr on a pseudo-terminal (rich draws its tables)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 300, 0, 0))
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave,
                            env=cli_env(TERM="xterm-256color", **env), close_fds=True)
    os.close(slave)
    chunks = []
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 60)
            if not ready:
                break
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
        code = proc.wait(30)
    text = b"".join(chunks).decode("utf-8", "replace")
    assert code == 0, f"{argv}: exit {code}\n{text}"
    return text


@pytest.fixture
def planted(cluster: Cluster) -> dict[str, object]:
    """Alice, with hostile texts everywhere she and the admin look: her own file and folder,
    a file Bob shares with her (its name, mime type, Bob's email and full name), her full
    name, an event, a storage tier and a payment."""
    alice = cluster.sign_up(name="Alice")
    bob = cluster.sign_up(name="Bob")
    own = alice.upload(b"mine", name="own.txt").file_id
    folder = cluster.files.CreateFolder(pb.CreateFolderRequest(
        session_token=alice.token, name="folder"), timeout=10)
    theirs = bob.upload(b"shared bytes", name="theirs.txt").file_id
    cluster.files.ShareFile(pb.ShareFileRequest(session_token=bob.token, file_id=theirs,
                                                share_with_email=alice.email,
                                                permission="read"), timeout=10)
    bob_email = f"bob{SHORT}@example.com"
    with database(cluster) as s:
        s.execute(sa.update(FileName).where(FileName.file_id == own)
                  .values(name=f"{HOSTILE}.txt"))
        s.execute(sa.update(FileName).where(FileName.file_id == theirs)
                  .values(name=f"shared{HOSTILE}.txt"))
        s.execute(sa.update(File).where(File.id == theirs).values(mime_type=HOSTILE))
        s.execute(sa.update(Folder).where(Folder.owner_id == alice.user_id,
                                          Folder.name == "folder").values(name=HOSTILE))
        s.execute(sa.update(User).where(User.id == alice.user_id).values(full_name=HOSTILE))
        s.execute(sa.update(User).where(User.id == bob.user_id)
                  .values(full_name=HOSTILE, email=bob_email))
        s.execute(sa.update(StorageTier).where(StorageTier.name == "starter")
                  .values(display_name=HOSTILE, description=HOSTILE))
        tier_id = s.scalar(sa.select(StorageTier.id).where(StorageTier.name == "starter"))
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        payment = Payment(user_id=alice.user_id, tier_id=tier_id, provider="mtn_momo",
                          phone_number=SHORT, amount_xaf=500, charged_xaf=500,
                          storage_bytes=STARTER, status="failed", message=HOSTILE,
                          external_reference=uuid.uuid4().hex, created_at=now,
                          updated_at=now)
        s.add(payment)
        s.add(Event(event_type="payment_failed", timestamp=now, message=HOSTILE,
                    user_id=alice.user_id, details=json.dumps({"reason": HOSTILE})))
        s.flush()
        payment_id = payment.id
    SessionStore(cluster.address).save(Session(email=alice.email, user_id=alice.user_id,
                                               session_token=alice.token))
    return {"alice": alice, "bob_email": bob_email, "payment_id": payment_id,
            "folder_id": folder.folder.folder_id}


def test_cloudgrpc_file_commands_and_shell_print_names_escaped(
        cluster: Cluster, planted: dict[str, object]) -> None:
    cli = [*bin_path("cloudgrpc", "cloudgrpc_fusefs.cli"), "--server", cluster.address]
    piped = {
        "ls": run([*cli, "ls"]),
        "shared": run([*cli, "share", "--with-me"]),
        "shell": run([*cli, "shell"], stdin="ls\nshare --with-me\nexit\n"),
    }
    for out in piped.values():
        assert_safe(out)
    assert_safe(run([*cli, "whoami"]), markup=False)  # the gateway may show a cached name
    assert "\\x1b[2J" in piped["ls"] and "\\u202e" in piped["shared"]
    assert printable(planted["bob_email"]) in piped["shared"]

    # --json stays JSON, carrying the exact names (json.dumps escapes them itself).
    listing = json.loads(run([*cli, "ls", "--json"], stdin=""))
    assert f"{HOSTILE}.txt" in {e["name"] for e in listing}
    assert not any(raw in run([*cli, "ls", "--json"]) for raw in RAW)

    # On a terminal rich draws tables: still no escape of theirs, markup shown literally.
    for argv in (["ls"], ["share", "--with-me"]):
        out = run_on_terminal([*cli, *argv])
        assert_safe(out, terminal=True)
        assert "\x1b" not in clean(out), repr(out)


def test_shell_prompt_shows_a_hostile_folder_escaped(cluster: Cluster,
                                                     planted: dict[str, object]) -> None:
    folder_id = planted["folder_id"]
    assert folder_id
    cli = [*bin_path("cloudgrpc", "cloudgrpc_fusefs.cli"), "--server", cluster.address]
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 300, 0, 0))
    proc = subprocess.Popen([*cli, "shell"], stdin=slave, stdout=slave, stderr=slave,
                            env=cli_env(TERM="xterm-256color"), close_fds=True)
    os.close(slave)
    chunks: list[bytes] = []

    def read_until(marker: bytes, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while marker not in b"".join(chunks) and time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunks.append(os.read(master, 65536))
                except OSError:
                    return

    try:
        read_until(b"> ")
        os.write(master, f"cd {folder_id}\n".encode())
        read_until(b"\\u202e")
        os.write(master, b"exit\n")
        read_until(b"\x00", timeout=3)
    finally:
        os.close(master)
        proc.wait(30)
    out = b"".join(chunks).decode("utf-8", "replace")
    assert "cloudgrpc:/\\x1b[2J\\x1b]0;pwned\\x07\\x9b31m\\u202eevil" in out, repr(out)
    for raw in ("\x1b[2J", "\x1b]0;", "\x07", "\x9b", "\u202e"):
        assert raw not in out, repr(out)


def admin(cluster: Cluster, *args: str, stdin: str = "") -> str:
    return run(bin_path("cloudgrpc-admin", "cloudgrpc_admin.cli") + list(args), stdin=stdin,
               CLOUDGRPC_SERVER=cluster.address, ADMIN_KEY=ADMIN_KEY)


def test_cloudgrpc_admin_tables_monitor_and_menu_print_escaped(
        cluster: Cluster, planted: dict[str, object]) -> None:
    alice = planted["alice"]
    assert isinstance(alice, Account)
    users = admin(cluster, "--users")
    assert_safe(users, markup=False)  # the columns are cut at 20-32 characters
    assert "\\x1b[2J" in users
    details = admin(cluster, "--user", alice.email)
    assert_safe(details)
    assert printable(HOSTILE) in details
    monitor = admin(cluster, "--monitor", "--type", "payment_failed", "--history", "10",
                    "--count", "1")
    assert_safe(monitor)
    menu = admin(cluster, stdin=f"2\n4\n{alice.email}\n8\n")
    assert_safe(menu)
    assert "Goodbye." in menu
    as_json = admin(cluster, "--monitor", "--json", "--type", "payment_failed", "--history",
                    "10", "--count", "1")
    assert json.loads(as_json.splitlines()[0])["message"] == HOSTILE
    assert not any(raw in as_json for raw in RAW)
    # The user listing as JSON keeps the exact names.
    listed = json.loads(admin(cluster, "--users", "--json"))
    assert HOSTILE in {u["full_name"] for u in listed}


def test_cloudgrpc_pay_prints_tiers_and_payments_escaped(
        cluster: Cluster, planted: dict[str, object]) -> None:
    alice = planted["alice"]
    assert isinstance(alice, Account)
    pay = bin_path("cloudgrpc-pay", "cloudgrpc_payment.cli")
    env = {"CLOUDGRPC_SERVER": cluster.address, "CLOUDGRPC_SESSION_TOKEN": alice.token}
    tiers = run([*pay, "tiers"], **env)
    assert_safe(tiers)
    done = subprocess.run([*pay, "status", "--payment-id", str(planted["payment_id"])],
                          capture_output=True, text=True, timeout=60, env=cli_env(**env))
    assert done.returncode == 1, done.stdout + done.stderr  # a failed payment
    assert_safe(done.stdout + done.stderr)
    wide = run([*pay, "history"], **env)
    narrow = run([*pay, "history"], **{**env, "COLUMNS": "100"})
    for out in (wide, narrow):
        assert_safe(out, markup=False)
        assert "\\u202e[red]R" in out  # the planted phone number, literal
    # And on a terminal.
    out = run_on_terminal([*pay, "tiers"], **env)
    assert_safe(out, terminal=True)
    assert "\x1b" not in clean(out)
