"""Payment test fixtures: the gateway's payment settings, and a handle on its Campay stand-in.

The gateways of these tests run without Campay credentials and opt in to the local stand-in
(``CAMPAY_STANDIN=1``), so each starts it in-process; its address is read from the gateway's
log, its control key from the gateway's data folder, and the tests play the payer (approve,
decline, never answer) and Campay's faults through its control API over real HTTP.
Settings reach the gateway through the environment, set here before the
``cluster``/``sqlite_cluster`` fixtures build it (autouse fixtures run first); a test adds
or overrides some with ``@pytest.mark.payment_env(NAME="value")``.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import jwt
import pytest
import requests
import sqlalchemy as sa

from cloudgrpc_proto import cloud_storage_pb2 as pb
from cloudgrpc_proto import cloud_storage_pb2_grpc as pb_grpc
from tests.cluster import Account, Cluster, free_port

WEBHOOK_KEY = "test-webhook-key-0123456789abcdefghij"
MiB = 1024 * 1024
STARTER = 250 * MiB
MTN_PHONE = "237670000001"
ORANGE_PHONE = "237690000001"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "payment_env(**env): extra gateway environment")


@pytest.fixture(autouse=True)
def payment_env(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
                ) -> dict[str, str]:
    env = {
        "CAMPAY_STANDIN": "1",
        "WEBHOOK_PORT": str(free_port()),
        "CAMPAY_WEBHOOK_KEY": WEBHOOK_KEY,
        "CAMPAY_STANDIN_OUTCOME": "success",
        "CAMPAY_STANDIN_APPROVE_S": "0.3",
        "PAYMENT_RECONCILE_INTERVAL_S": "0.5",
        "PAYMENT_EXPIRY_S": "120",
        "CAMPAY_TIMEOUT_S": "2",
        "CAMPAY_RETRIES": "3",
        "CAMPAY_BACKOFF_S": "0.05",
    }
    for marker in request.node.iter_markers("payment_env"):
        env.update({k: str(v) for k, v in marker.kwargs.items()})
    for key in ("CAMPAY_BASE_URL", "CAMPAY_APP_USERNAME", "CAMPAY_APP_PASSWORD",
                "CLOUDGRPC_SESSION_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


class Payments:
    """The payment API of a running gateway plus its Campay stand-in's control API."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        assert cluster.gateway is not None
        m = cluster.gateway.wait_for(r"stand-in listening on (http://\S+)/api", timeout=30)
        self.standin = m.group(1)
        key_file = cluster.root / "gateway" / "campay_standin_key"
        self.control_headers = {"Authorization": f"Bearer {key_file.read_text().strip()}"}
        self.webhook_url = (f"http://127.0.0.1:{cluster.env['WEBHOOK_PORT']}"
                            "/campay/webhook")

    @property
    def stub(self) -> pb_grpc.PaymentServiceStub:
        return pb_grpc.PaymentServiceStub(self.cluster.channel)

    # --- the stand-in -----------------------------------------------------------------

    def control(self, path: str, body: dict[str, Any] | None = None) -> requests.Response:
        return requests.post(f"{self.standin}/_standin/{path}", json=body or {},
                             headers=self.control_headers, timeout=10)

    def script(self, phone: str, outcome: str, after_s: float = 0.3, reason: str = "") -> None:
        self.control("script", {"phone": phone, "outcome": outcome, "after_s": after_s,
                                "reason": reason}).raise_for_status()

    def faults(self, **body: Any) -> None:
        self.control("faults", body).raise_for_status()

    def approve(self, reference: str) -> None:
        self.control(f"approve/{reference}").raise_for_status()

    def decline(self, reference: str, reason: str = "") -> None:
        self.control(f"decline/{reference}", {"reason": reason}).raise_for_status()

    def state(self) -> dict[str, Any]:
        resp = requests.get(f"{self.standin}/_standin/state", headers=self.control_headers,
                            timeout=10)
        resp.raise_for_status()
        return resp.json()

    def count(self, endpoint: str) -> int:
        return int(self.state()["counts"].get(endpoint, 0))

    # --- the gateway's API ------------------------------------------------------------

    def tiers(self) -> pb.GetStorageTiersResponse:
        return self.stub.GetStorageTiers(pb.GetStorageTiersRequest(), timeout=10)

    def initiate(self, acct: Account, tier: str = "starter", provider: str = "mtn_momo",
                 phone: str = MTN_PHONE) -> pb.InitiatePaymentResponse:
        return self.stub.InitiatePayment(pb.InitiatePaymentRequest(
            session_token=acct.token, tier_id=tier, provider=provider, phone_number=phone),
            timeout=30)

    def check(self, acct: Account, payment_id: str) -> pb.CheckPaymentStatusResponse:
        return self.stub.CheckPaymentStatus(pb.CheckPaymentStatusRequest(
            session_token=acct.token, payment_id=payment_id), timeout=30)

    def history(self, acct: Account) -> list[pb.PaymentRecord]:
        return list(self.stub.GetPaymentHistory(pb.GetPaymentHistoryRequest(
            session_token=acct.token), timeout=10).payments)

    def wait_final(self, acct: Account, payment_id: str, timeout: float = 20.0
                   ) -> pb.CheckPaymentStatusResponse:
        deadline = time.monotonic() + timeout
        while True:
            reply = self.check(acct, payment_id)
            if reply.status in ("completed", "failed") or time.monotonic() > deadline:
                return reply
            time.sleep(0.1)

    # --- webhooks ---------------------------------------------------------------------

    def webhook(self, reference: str, status: str = "SUCCESSFUL", key: str = WEBHOOK_KEY,
                method: str = "GET", signature: str | None = None, **extra: str
                ) -> requests.Response:
        if signature is None:
            signature = jwt.encode({"reference": reference, "status": status}, key,
                                   algorithm="HS256")
        params = {"status": status, "reference": reference, "amount": "500",
                  "currency": "XAF", "operator": "MTN", "signature": signature, **extra}
        if method == "GET":
            return requests.get(self.webhook_url, params=params, timeout=30)
        return requests.post(self.webhook_url, json=params, timeout=30)

    # --- the database -----------------------------------------------------------------

    def events(self, payment_id: str) -> list[tuple[str, dict[str, Any]]]:
        engine = sa.create_engine(self.cluster.database_url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(sa.text(
                    "SELECT event_type, details FROM events WHERE event_type LIKE 'payment_%' "
                    "ORDER BY id")).all()
        finally:
            engine.dispose()
        out = []
        for kind, details in rows:
            data = json.loads(details or "{}")
            if data.get("payment_id") == payment_id:
                out.append((kind, data))
        return out


@pytest.fixture
def pay(sqlite_cluster: Cluster) -> Payments:
    return Payments(sqlite_cluster)


@pytest.fixture
def pay_any_db(cluster: Cluster) -> Payments:
    return Payments(cluster)


def rpc_code(call: Any) -> tuple[grpc.StatusCode, str]:
    """Run ``call``; the status code and details of the RpcError it must raise."""
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()


@pytest.fixture
def stop_all() -> Iterator[list[Any]]:
    """Things with a ``stop()`` (or Popen) the test started; stopped at the end, by PID."""
    items: list[Any] = []
    yield items
    for item in reversed(items):
        if hasattr(item, "terminate"):
            if item.poll() is None:
                item.terminate()
                try:
                    item.wait(10)
                except Exception:  # noqa: BLE001
                    item.kill()
                    item.wait(5)
        else:
            item.stop()


def run_threads(targets: list[Any]) -> list[Any]:
    """Start every callable at once (behind a barrier); their results, or exceptions."""
    barrier = threading.Barrier(len(targets))
    results: list[Any] = [None] * len(targets)

    def runner(i: int, fn: Any) -> None:
        barrier.wait()
        try:
            results[i] = fn()
        except Exception as exc:  # noqa: BLE001 - reported to the test
            results[i] = exc

    threads = [threading.Thread(target=runner, args=(i, fn)) for i, fn in enumerate(targets)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
