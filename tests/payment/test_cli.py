"""``cloudgrpc-pay`` run as a user runs it: a subprocess against a real gateway and stand-in."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cloudgrpc_proto.session_store import Session, SessionStore
from tests.cluster import Account
from tests.payment.conftest import MTN_PHONE, STARTER, Payments


def pay_cli() -> list[str]:
    script = Path(sys.executable).with_name("cloudgrpc-pay")
    if script.exists():
        return [str(script)]
    found = shutil.which("cloudgrpc-pay")
    return [found] if found else [sys.executable, "-m", "cloudgrpc_payment.cli"]


def run(pay: Payments, *args: str, stdin: str = "", token: str | None = None,
        env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "COLUMNS": "200", "CLOUDGRPC_SERVER": pay.cluster.address,
                **(env or {})}
    full_env.pop("CLOUDGRPC_SESSION_TOKEN", None)
    if token is not None:
        full_env["CLOUDGRPC_SESSION_TOKEN"] = token
    return subprocess.run([*pay_cli(), *args, "--interval", "0.2"] if args[0] in ("buy",)
                          else [*pay_cli(), *args], input=stdin, capture_output=True,
                          text=True, env=full_env, timeout=timeout)


def test_tiers(pay: Payments) -> None:
    out = run(pay, "tiers")
    assert out.returncode == 0, out.stderr
    for words in ("Starter Pack", "250 MB", "500 XAF", "Premium Pack", "2 GB", "2,500 XAF"):
        assert words in out.stdout
    assert "DEMO MODE" not in out.stdout


def test_non_interactive_buy_then_status_and_history(pay: Payments) -> None:
    acct = pay.cluster.sign_up()
    before = acct.storage().allocated_bytes
    out = run(pay, "buy", "--tier", "starter", "--provider", "mtn_momo", "--phone", MTN_PHONE,
              "--yes", token=acct.token)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Approve the payment on your phone (no prompt? dial *126#)" in out.stdout
    assert "Payment completed" in out.stdout and "250 MB added" in out.stdout
    assert acct.storage().allocated_bytes == before + STARTER

    (record,) = pay.history(acct)
    status = run(pay, "status", "--payment-id", record.payment_id, token=acct.token)
    assert status.returncode == 0 and "completed" in status.stdout
    history = run(pay, "history", token=acct.token)
    assert history.returncode == 0
    assert record.payment_id in history.stdout and "completed" in history.stdout
    assert "MTN Mobile Money" in history.stdout


def test_interactive_buy_answered_on_stdin(pay: Payments) -> None:
    acct = pay.cluster.sign_up()
    before = acct.storage().allocated_bytes
    # Tier 2 (basic), provider 1 (MTN), an Orange number first (refused), then an MTN one.
    answers = "2\n1\n237690000001\n237 67 00 00 002\ny\n"
    out = run(pay, "buy", stdin=answers, token=acct.token)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Storage tiers" in out.stdout
    assert "is an Orange Money number" in out.stdout
    assert "Buy Basic Pack (+500 MB) for 900 XAF from 237670000002 with MTN Mobile Money?" \
        in out.stdout
    assert "Payment completed" in out.stdout
    assert acct.storage().allocated_bytes == before + 500 * 1024 * 1024


def test_interactive_buy_cancelled(pay: Payments) -> None:
    acct = pay.cluster.sign_up()
    out = run(pay, "buy", "--tier", "starter", "--provider", "orange_money",
              stdin="237690000001\nn\n", token=acct.token)
    assert out.returncode == 1 and "Cancelled" in out.stdout
    assert pay.history(acct) == []


def test_declined_buy_exits_nonzero(pay: Payments) -> None:
    acct = pay.cluster.sign_up()
    pay.script(MTN_PHONE, "failure", after_s=0.2, reason="Payer declined the request")
    out = run(pay, "buy", "--tier", "starter", "--provider", "mtn", "--phone", MTN_PHONE,
              "--yes", token=acct.token)
    assert out.returncode == 1
    assert "Payment failed" in out.stdout and "declined" in out.stdout


def test_bad_phone_and_not_signed_in(pay: Payments, tmp_path: Path) -> None:
    acct = pay.cluster.sign_up()
    out = run(pay, "buy", "--tier", "starter", "--provider", "orange_money", "--phone",
              MTN_PHONE, "--yes", token=acct.token)
    assert out.returncode == 2 and "is an MTN Mobile Money number" in out.stderr
    assert pay.count("collect") == 0

    keyring_env = {"PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring",
                   "XDG_DATA_HOME": str(tmp_path / "xdg")}
    out = run(pay, "buy", "--tier", "starter", "--provider", "mtn_momo", "--phone", MTN_PHONE,
              "--yes", env=keyring_env)
    assert out.returncode == 7 and "not signed in" in out.stderr


def test_session_from_the_keyring(pay: Payments, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI uses the session ``cloudgrpc login`` keeps in the keyring."""
    acct: Account = pay.cluster.sign_up()
    env = {"PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring",
           "XDG_DATA_HOME": str(tmp_path / "xdg")}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    SessionStore(pay.cluster.address).save(Session(email=acct.email, user_id=acct.user_id,
                                                   session_token=acct.token))
    out = run(pay, "buy", "--tier", "starter", "--provider", "mtn_momo", "--phone", MTN_PHONE,
              "--yes", env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Payment completed" in out.stdout
    history = run(pay, "history", env=env)
    assert history.returncode == 0 and "completed" in history.stdout


@pytest.mark.payment_env(CAMPAY_BASE_URL="https://demo.campay.net/api")
def test_cli_says_demo_mode(pay: Payments) -> None:
    acct = pay.cluster.sign_up()
    assert "DEMO MODE" in run(pay, "tiers").stdout
    out = run(pay, "buy", "--tier", "standard", "--provider", "mtn_momo", "--phone",
              MTN_PHONE, "--yes", token=acct.token)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "DEMO MODE" in out.stdout and "10 XAF collected instead of 1500 XAF" in out.stdout
    assert "1 GB added" in out.stdout


@pytest.mark.payment_env(CAMPAY_STANDIN="0")
def test_buy_on_a_gateway_without_campay_says_what_to_set(sqlite_cluster) -> None:
    """No credentials, no stand-in opt-in: a clear refusal, exit 10, nothing granted."""
    from types import SimpleNamespace

    acct = sqlite_cluster.sign_up()
    before = acct.storage().allocated_bytes
    gateway = SimpleNamespace(cluster=sqlite_cluster)
    out = run(gateway, "buy", "--tier", "starter", "--provider", "mtn_momo",  # type: ignore[arg-type]
              "--phone", MTN_PHONE, "--yes", token=acct.token)
    assert out.returncode == 10, out.stdout + out.stderr
    assert "payments are not configured on this gateway" in out.stderr
    assert "CAMPAY_APP_USERNAME" in out.stderr
    assert acct.storage().allocated_bytes == before
    assert "Storage tiers" in run(gateway, "tiers").stdout  # type: ignore[arg-type]
