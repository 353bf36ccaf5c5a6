"""The whole payment flow through the gateway's gRPC API, against the Campay stand-in over HTTP."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import grpc
import pytest
import requests

from cloudgrpc_proto import cloud_storage_pb2 as pb
from cloudgrpc_proto import cloud_storage_pb2_grpc as pb_grpc
from tests.cluster import Cluster, free_port
from tests.payment.conftest import (
    MTN_PHONE,
    ORANGE_PHONE,
    STARTER,
    Payments,
    rpc_code,
    run_threads,
)

GiB = 1024 * 1024 * 1024


def test_tiers_are_seeded(pay: Payments) -> None:
    reply = pay.tiers()
    tiers = {t.name: t for t in reply.tiers}
    assert list(tiers) == ["starter", "basic", "standard", "premium"]
    assert tiers["starter"].storage_bytes == STARTER and tiers["starter"].price_xaf == 500
    assert tiers["premium"].storage_bytes == 2 * GiB
    assert all(t.active and t.tier_id and t.price_xaf > 0 for t in reply.tiers)
    assert not reply.demo_mode


def test_successful_payment_adds_the_tier_once(pay: Payments) -> None:
    acct = pay.cluster.sign_up()
    before = acct.storage().allocated_bytes
    tier_id = next(t.tier_id for t in pay.tiers().tiers if t.name == "starter")
    started = pay.initiate(acct, tier=tier_id)
    assert started.success and started.payment_id and started.transaction_ref
    assert started.amount_xaf == 500 and started.ussd_code == "*126#"

    done = pay.wait_final(acct, started.payment_id)
    assert done.status == "completed", done
    assert done.storage_added == STARTER
    assert acct.storage().allocated_bytes == before + STARTER
    # Asking again changes nothing.
    assert pay.check(acct, started.payment_id).status == "completed"
    assert acct.storage().allocated_bytes == before + STARTER

    (record,) = pay.history(acct)
    assert record.payment_id == started.payment_id and record.status == "completed"
    assert record.tier_name == "starter" and record.operator == "MTN"
    assert record.phone_number == MTN_PHONE and record.amount_xaf == 500
    assert record.completed_at
    # Events are stored by the gateway's batching writer: give the last one a moment.
    deadline = time.monotonic() + 10
    while (kinds := [k for k, _ in pay.events(started.payment_id)]) != \
            ["payment_initiated", "payment_completed"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert kinds == ["payment_initiated", "payment_completed"]

    # What Campay received: the tier's price from that number, with our reference.
    (sent,) = [r for r in pay.state()["requests"] if r["endpoint"] == "collect"]
    assert '"amount":"500"' in sent["body"] and f'"from":"{MTN_PHONE}"' in sent["body"]
    assert sent["authorization"].startswith("Token ")


def test_orange_money_payment(pay: Payments) -> None:
    acct = pay.cluster.sign_up()
    started = pay.initiate(acct, tier="basic", provider="orange_money", phone=ORANGE_PHONE)
    assert started.ussd_code == "#150*50#"
    assert pay.wait_final(acct, started.payment_id).status == "completed"
    assert pay.history(acct)[0].operator == "ORANGE"


def test_declined_payment_credits_nothing(pay: Payments) -> None:
    acct = pay.cluster.sign_up()
    before = acct.storage().allocated_bytes
    pay.script(MTN_PHONE, "failure", after_s=0.2, reason="Payer declined the request")
    started = pay.initiate(acct)
    done = pay.wait_final(acct, started.payment_id)
    assert done.status == "failed" and not done.success
    assert "declined" in done.message.lower()
    assert done.storage_added == 0
    time.sleep(1.0)  # reconciliation and the webhook had their chance too
    assert acct.storage().allocated_bytes == before
    assert [k for k, _ in pay.events(started.payment_id)] == ["payment_initiated",
                                                               "payment_failed"]


def test_insufficient_balance_is_a_clear_error(pay: Payments) -> None:
    acct = pay.cluster.sign_up()
    pay.script(MTN_PHONE, "insufficient")
    code, details = rpc_code(lambda: pay.initiate(acct))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert "insufficient balance" in details
    assert pay.history(acct)[0].status == "failed"


def test_campay_not_answering_times_out_without_credit(pay: Payments) -> None:
    acct = pay.cluster.sign_up()
    before = acct.storage().allocated_bytes
    pay.script(MTN_PHONE, "pending")
    pay.faults(hang_next={"collect": 1}, hang_s=4)  # the gateway waits 2 s (CAMPAY_TIMEOUT_S)
    t0 = time.monotonic()
    code, details = rpc_code(lambda: pay.initiate(acct))
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "did not answer" in details
    assert time.monotonic() - t0 < 10
    # A collect that may have reached Campay is never sent twice.
    assert pay.count("collect") == 1
    (record,) = pay.history(acct)
    assert record.status == "failed"
    assert acct.storage().allocated_bytes == before


@pytest.mark.payment_env(PAYMENT_EXPIRY_S="2")
def test_payment_never_approved_expires(pay: Payments) -> None:
    acct = pay.cluster.sign_up()
    before = acct.storage().allocated_bytes
    pay.script(MTN_PHONE, "pending")
    started = pay.initiate(acct)
    assert pay.check(acct, started.payment_id).status == "processing"
    done = pay.wait_final(acct, started.payment_id, timeout=15)
    assert done.status == "failed" and "expired" in done.message
    assert acct.storage().allocated_bytes == before


def test_campay_500s_then_success(pay: Payments) -> None:
    acct = pay.cluster.sign_up()
    before = acct.storage().allocated_bytes
    pay.faults(fail_next={"token": 1, "collect": 2, "transaction": 2})
    started = pay.initiate(acct)
    assert started.success and started.transaction_ref
    done = pay.wait_final(acct, started.payment_id)
    assert done.status == "completed"
    assert acct.storage().allocated_bytes == before + STARTER
    counts = pay.state()["counts"]
    assert counts["collect"] == 3  # two 500s, then the one that went through
    assert counts["token"] == 2
    assert len(pay.state()["transactions"]) == 1  # and only one payment at Campay


def test_campay_down_is_unavailable(pay: Payments) -> None:
    acct = pay.cluster.sign_up()
    pay.faults(fail_next={"collect": 10})
    code, details = rpc_code(lambda: pay.initiate(acct))
    assert code == grpc.StatusCode.UNAVAILABLE
    assert "HTTP 500" in details
    assert pay.history(acct)[0].status == "failed"


def test_token_expiry_mid_flow(pay: Payments) -> None:
    acct = pay.cluster.sign_up()
    before = acct.storage().allocated_bytes
    pay.script(MTN_PHONE, "pending")
    started = pay.initiate(acct)
    assert pay.count("token") == 1
    pay.control("expire-tokens").raise_for_status()
    pay.approve(started.transaction_ref)
    done = pay.wait_final(acct, started.payment_id)
    assert done.status == "completed"
    assert acct.storage().allocated_bytes == before + STARTER
    assert pay.count("token") == 2  # renewed once after Campay's 401


@pytest.mark.parametrize("provider, phone, needle", [
    ("mtn_momo", "12345", "country code 237"),
    ("mtn_momo", "670000001", "country code 237"),
    ("mtn_momo", "+44 7700 900123", "country code 237"),
    ("mtn_momo", "2376700000011", "not a Cameroonian mobile number"),
    ("mtn_momo", "237270000001", "not a Cameroonian mobile number"),
    ("mtn_momo", "23767000000a", "not a phone number"),
    ("mtn_momo", ORANGE_PHONE, "is an Orange Money number"),
    ("orange_money", MTN_PHONE, "is an MTN Mobile Money number"),
    ("orange_money", "237660000001", "neither an MTN nor an Orange"),
    ("wave", MTN_PHONE, "unknown provider"),
])
def test_bad_phone_or_provider_refused_before_campay(pay: Payments, provider: str, phone: str,
                                                     needle: str) -> None:
    acct = pay.cluster.sign_up()
    code, details = rpc_code(lambda: pay.initiate(acct, provider=provider, phone=phone))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert needle in details
    assert pay.count("collect") == 0
    assert pay.history(acct) == []


def test_unknown_tier_and_foreign_payment(pay: Payments) -> None:
    alice, bob = pay.cluster.sign_up(), pay.cluster.sign_up()
    code, _ = rpc_code(lambda: pay.initiate(alice, tier="platinum"))
    assert code == grpc.StatusCode.NOT_FOUND
    started = pay.initiate(alice)
    code, _ = rpc_code(lambda: pay.check(bob, started.payment_id))
    assert code == grpc.StatusCode.NOT_FOUND
    code, _ = rpc_code(lambda: pay.stub.InitiatePayment(pb.InitiatePaymentRequest(
        tier_id="starter", provider="mtn_momo", phone_number=MTN_PHONE), timeout=10))
    assert code == grpc.StatusCode.UNAUTHENTICATED


def test_forged_webhook_is_refused(pay: Payments) -> None:
    acct = pay.cluster.sign_up()
    before = acct.storage().allocated_bytes
    pay.script(MTN_PHONE, "pending")
    started = pay.initiate(acct)
    ref = started.transaction_ref

    forged = pay.webhook(ref, key="not-the-webhook-key-but-long-enough-0123")
    assert forged.status_code == 403
    assert pay.webhook(ref, signature="").status_code == 403
    assert pay.webhook(ref, signature="garbage.not.jwt", method="POST").status_code == 403
    # A real signature does not make Campay's PENDING a success: it is confirmed first.
    genuine = pay.webhook(ref, status="SUCCESSFUL")
    assert genuine.status_code == 200 and genuine.json()["status"] == "processing"
    time.sleep(1.0)
    assert pay.check(acct, started.payment_id).status == "processing"
    assert acct.storage().allocated_bytes == before

    pay.approve(ref)  # the payer really approves: the stand-in's own webhook completes it
    done = pay.wait_final(acct, started.payment_id)
    assert done.status == "completed"
    assert acct.storage().allocated_bytes == before + STARTER


def test_webhook_alone_completes_payment(pay: Payments) -> None:
    """No client polls: the stand-in's signed webhook (or reconciliation) credits it."""
    acct = pay.cluster.sign_up()
    before = acct.storage().allocated_bytes
    pay.script(MTN_PHONE, "success", after_s=0.2)
    started = pay.initiate(acct)
    deadline = time.monotonic() + 15
    while acct.storage().allocated_bytes == before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert acct.storage().allocated_bytes == before + STARTER
    # The webhook's delivery is recorded once the gateway has answered it, which may come
    # after the reconciliation credited the payment.
    while not (sent := pay.state()["webhooks_sent"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sent and sent[0]["reference"] == started.transaction_ref and sent[0]["answer"] == 200
    assert acct.storage().allocated_bytes == before + STARTER


def test_concurrent_checks_and_webhooks_credit_exactly_once(pay_any_db: Payments) -> None:
    pay = pay_any_db
    acct = pay.cluster.sign_up()
    before = acct.storage().allocated_bytes
    pay.script(MTN_PHONE, "pending")
    started = pay.initiate(acct)
    ref, pid = started.transaction_ref, started.payment_id

    def poll() -> str:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            reply = pay.check(acct, pid)
            if reply.status != "processing":
                return reply.status
        return "timeout"

    def hook() -> int:
        codes = set()
        for _ in range(5):
            codes.add(pay.webhook(ref, status="SUCCESSFUL").status_code)
        return max(codes)

    def approve() -> None:
        time.sleep(0.2)
        pay.approve(ref)

    results = run_threads([poll] * 20 + [hook] * 2 + [approve])
    assert results[:20] == ["completed"] * 20, results
    assert all(r == 200 for r in results[20:22]), results
    assert acct.storage().allocated_bytes == before + STARTER
    completed = [k for k, _ in pay.events(pid) if k == "payment_completed"]
    assert completed == ["payment_completed"]

    # A gateway restart (reconciliation runs again from the database) changes nothing.
    cluster = pay.cluster
    assert cluster.gateway is not None
    cluster.gateway.stop()
    cluster.start_gateway()
    pay = Payments(cluster)
    assert pay.check(acct, pid).status == "completed"
    pay.webhook(ref, status="SUCCESSFUL")  # the new stand-in does not know it: 404 or 503
    time.sleep(1.5)
    assert acct.storage().allocated_bytes == before + STARTER
    assert [k for k, _ in pay.events(pid) if k == "payment_completed"] == ["payment_completed"]


@pytest.mark.payment_env(CAMPAY_BASE_URL="https://demo.campay.net/api")
def test_demo_mode_caps_the_amount_and_grants_the_tier(pay: Payments) -> None:
    acct = pay.cluster.sign_up()
    before = acct.storage().allocated_bytes
    assert pay.tiers().demo_mode
    started = pay.initiate(acct, tier="premium")
    assert started.demo_mode and started.amount_xaf == 10
    assert "demo mode" in started.message
    assert pay.wait_final(acct, started.payment_id).status == "completed"
    assert acct.storage().allocated_bytes == before + 2 * GiB
    (sent,) = [r for r in pay.state()["requests"] if r["endpoint"] == "collect"]
    assert '"amount":"10"' in sent["body"]


def test_external_campay_and_restart_in_between(tmp_path, stop_all) -> None:
    """Credentials set: the gateway talks to an external Campay (the stand-in as a process).

    The payer approves while the gateway is down; after the restart the background
    reconciliation credits the payment without anyone asking.
    """
    port = free_port()
    standin = subprocess.Popen(
        [sys.executable, "-m", "cloudgrpc_payment.standin", "--port", str(port),
         "--username", "app-user", "--password", "app-pass", "--outcome", "pending"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    stop_all.append(standin)
    assert standin.stdout is not None
    line = standin.stdout.readline()
    assert re.search(r"listening on http://127\.0\.0\.1:\d+/api", line), line
    base = f"http://127.0.0.1:{port}"

    cluster = Cluster(tmp_path, nodes=1)
    cluster.env.update({"CAMPAY_APP_USERNAME": "app-user", "CAMPAY_APP_PASSWORD": "app-pass",
                        "CAMPAY_BASE_URL": f"{base}/api"})
    stop_all.append(cluster)
    cluster.start()
    assert cluster.gateway is not None
    cluster.gateway.wait_for(rf"payments: Campay at {base}/api")
    acct = cluster.sign_up()
    before = acct.storage().allocated_bytes
    stub = pb_grpc.PaymentServiceStub(cluster.channel)
    started = stub.InitiatePayment(pb.InitiatePaymentRequest(
        session_token=acct.token, tier_id="starter", provider="mtn_momo",
        phone_number=MTN_PHONE), timeout=30)
    assert not started.demo_mode

    cluster.gateway.stop()
    requests.post(f"{base}/_standin/approve/{started.transaction_ref}", timeout=10,
                  headers={"Authorization": "Bearer app-pass"}).raise_for_status()
    cluster.start_gateway()
    deadline = time.monotonic() + 20
    while acct.storage().allocated_bytes == before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert acct.storage().allocated_bytes == before + STARTER
    reply = pb_grpc.PaymentServiceStub(cluster.channel).CheckPaymentStatus(
        pb.CheckPaymentStatusRequest(session_token=acct.token,
                                     payment_id=started.payment_id), timeout=10)
    assert reply.status == "completed" and reply.storage_added == STARTER


def test_gateway_killed_while_crediting_credits_exactly_once(tmp_path, stop_all) -> None:
    """kill -9 of the gateway while status checks race the approval: after the restart
    the payment is completed and its storage added once, never twice, never lost."""
    import signal

    port = free_port()
    standin = subprocess.Popen(
        [sys.executable, "-m", "cloudgrpc_payment.standin", "--port", str(port),
         "--username", "app-user", "--password", "app-pass", "--outcome", "pending"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    stop_all.append(standin)
    assert standin.stdout is not None
    standin.stdout.readline()
    base = f"http://127.0.0.1:{port}"
    cluster = Cluster(tmp_path, nodes=1)
    cluster.env.update({"CAMPAY_APP_USERNAME": "app-user", "CAMPAY_APP_PASSWORD": "app-pass",
                        "CAMPAY_BASE_URL": f"{base}/api"})
    stop_all.append(cluster)
    cluster.start()
    acct = cluster.sign_up()
    before = acct.storage().allocated_bytes
    stub = pb_grpc.PaymentServiceStub(cluster.channel)
    started = stub.InitiatePayment(pb.InitiatePaymentRequest(
        session_token=acct.token, tier_id="starter", provider="mtn_momo",
        phone_number=MTN_PHONE), timeout=30)

    def poll() -> str:
        try:
            return stub.CheckPaymentStatus(pb.CheckPaymentStatusRequest(
                session_token=acct.token, payment_id=started.payment_id), timeout=5).status
        except grpc.RpcError as exc:
            return exc.code().name

    def approve_then_kill() -> str:
        requests.post(f"{base}/_standin/approve/{started.transaction_ref}", timeout=10,
                      headers={"Authorization": "Bearer app-pass"}).raise_for_status()
        time.sleep(0.05)
        assert cluster.gateway is not None
        cluster.gateway.stop(signal.SIGKILL)
        return "killed"

    run_threads([poll] * 10 + [approve_then_kill])
    cluster.start_gateway()
    stub = pb_grpc.PaymentServiceStub(cluster.channel)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if poll() == "completed" and acct.storage().allocated_bytes > before:
            break
        time.sleep(0.2)
    time.sleep(1.0)  # let reconciliation and any retried check run again
    assert poll() == "completed"
    assert acct.storage().allocated_bytes == before + STARTER
