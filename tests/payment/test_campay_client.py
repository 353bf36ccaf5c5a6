"""The Campay client's HTTP requests, byte for byte, against a tiny recording HTTP server.

The shapes are Campay's documented ones: ``POST /api/token/`` with a JSON body
``{"username", "password"}``; ``POST /api/collect/`` with ``Authorization: Token ...`` and
``{"amount", "currency", "from", "description", "external_reference"}``;
``GET /api/transaction/{reference}/`` with the same header and no body.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest

from cloudgrpc_payment import phone as phones
from cloudgrpc_payment.campay_client import (
    CampayAuthError,
    CampayClient,
    CampayNotFound,
    CampayRejected,
    CampayTimeout,
    CampayUnavailable,
    WebhookSignatureError,
    is_demo_url,
    verify_webhook_signature,
)

TOKEN_REPLY = (200, {"token": "tok-1", "expires_in": 3600})


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Recorder:
    """Replies come from ``replies[path]`` (a list used in order; the last one repeats)."""

    replies: dict[str, list[tuple[int, Any]]] = field(default_factory=dict)
    seen: list[Recorded] = field(default_factory=list)
    delay_s: dict[str, float] = field(default_factory=dict)
    url: str = ""

    def reply_for(self, path: str) -> tuple[int, Any]:
        queue = self.replies.get(path) or [(404, {"detail": "Not found."})]
        return queue.pop(0) if len(queue) > 1 else queue[0]

    def paths(self) -> list[str]:
        return [f"{r.method} {r.path}" for r in self.seen]


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    rec = Recorder()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            rec.seen.append(Recorded(self.command, self.path,
                                     {k.lower(): v for k, v in self.headers.items()}, body))
            delay = rec.delay_s.get(self.path, 0.0)
            if delay:
                time.sleep(delay)
            status, data = rec.reply_for(self.path)
            out = json.dumps(data).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        do_GET = do_POST = _serve  # noqa: N815

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    rec.url = f"http://127.0.0.1:{server.server_address[1]}/api"
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()


def client(rec: Recorder, **kw: Any) -> CampayClient:
    kw.setdefault("backoff_s", 0.01)
    return CampayClient(rec.url, "app-user", "app-pass", **kw)


def test_token_collect_and_transaction_requests_byte_for_byte(recorder: Recorder) -> None:
    recorder.replies = {
        "/api/token/": [TOKEN_REPLY],
        "/api/collect/": [(200, {"reference": "ref-123", "ussd_code": "*126#",
                                 "operator": "MTN"})],
        "/api/transaction/ref-123/": [(200, {
            "reference": "ref-123", "status": "SUCCESSFUL", "amount": 500, "currency": "XAF",
            "operator": "MTN", "code": "CP201027T00005", "operator_reference": "1880106956",
            "external_reference": "ext-1"})],
    }
    c = client(recorder)
    got = c.collect(amount=500, phone="237670000001", description="CloudGrpc Starter Pack",
                    external_reference="ext-1")
    assert (got.reference, got.ussd_code, got.operator) == ("ref-123", "*126#", "MTN")
    txn = c.transaction("ref-123")
    assert (txn.status, txn.amount, txn.currency, txn.external_reference) == (
        "SUCCESSFUL", 500, "XAF", "ext-1")
    assert txn.code == "CP201027T00005" and txn.operator_reference == "1880106956"

    token, collect, status = recorder.seen
    assert (token.method, token.path) == ("POST", "/api/token/")
    assert token.body == b'{"username":"app-user","password":"app-pass"}'
    assert token.headers["content-type"] == "application/json"
    assert "authorization" not in token.headers

    assert (collect.method, collect.path) == ("POST", "/api/collect/")
    assert collect.body == (b'{"amount":"500","currency":"XAF","from":"237670000001",'
                            b'"description":"CloudGrpc Starter Pack",'
                            b'"external_reference":"ext-1"}')
    assert collect.headers["authorization"] == "Token tok-1"
    assert collect.headers["content-type"] == "application/json"
    assert collect.headers["content-length"] == str(len(collect.body))

    assert (status.method, status.path, status.body) == ("GET", "/api/transaction/ref-123/", b"")
    assert status.headers["authorization"] == "Token tok-1"
    assert "content-type" not in status.headers


def test_token_is_reused_then_renewed_after_401(recorder: Recorder) -> None:
    recorder.replies = {
        "/api/token/": [(200, {"token": "tok-1", "expires_in": 3600}),
                        (200, {"token": "tok-2", "expires_in": 3600})],
        "/api/transaction/r/": [(200, {"reference": "r", "status": "PENDING", "amount": 5}),
                                (401, {"detail": "Invalid token."}),
                                (200, {"reference": "r", "status": "FAILED", "amount": 5,
                                       "reason": "declined"})],
    }
    c = client(recorder)
    assert c.transaction("r").status == "PENDING"
    txn = c.transaction("r")
    assert txn.status == "FAILED" and txn.reason == "declined"
    assert recorder.paths() == ["POST /api/token/", "GET /api/transaction/r/",
                                "GET /api/transaction/r/", "POST /api/token/",
                                "GET /api/transaction/r/"]
    assert [r.headers.get("authorization") for r in recorder.seen[1:]] == [
        "Token tok-1", "Token tok-1", None, "Token tok-2"]


def test_bad_credentials(recorder: Recorder) -> None:
    recorder.replies = {"/api/token/": [(400, {"non_field_errors": ["Unable to log in"]})]}
    with pytest.raises(CampayAuthError, match="CAMPAY_APP_USERNAME"):
        client(recorder).token()


def test_5xx_retried_with_backoff_then_success(recorder: Recorder) -> None:
    recorder.replies = {
        "/api/token/": [(502, {}), TOKEN_REPLY],
        "/api/collect/": [(500, {}), (503, {}), (200, {"reference": "ref", "ussd_code": "",
                                                        "operator": "ORANGE"})],
    }
    got = client(recorder).collect(amount=10, phone="237690000001", description="d",
                                   external_reference="e")
    assert got.operator == "ORANGE"
    assert recorder.paths() == ["POST /api/token/"] * 2 + ["POST /api/collect/"] * 3


def test_5xx_exhausted(recorder: Recorder) -> None:
    recorder.replies = {"/api/token/": [TOKEN_REPLY], "/api/transaction/x/": [(500, {})]}
    with pytest.raises(CampayUnavailable, match="HTTP 500"):
        client(recorder, retries=2).transaction("x")
    assert recorder.paths().count("GET /api/transaction/x/") == 3


def test_network_error_is_unavailable() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    c = CampayClient(f"http://127.0.0.1:{port}/api", "u", "p", retries=1, backoff_s=0.01)
    with pytest.raises(CampayUnavailable, match="cannot reach Campay"):
        c.token()


def test_collect_read_timeout_is_not_retried(recorder: Recorder) -> None:
    recorder.replies = {"/api/token/": [TOKEN_REPLY],
                        "/api/collect/": [(200, {"reference": "late"})],
                        "/api/transaction/t/": [(200, {"reference": "t", "status": "PENDING",
                                                       "amount": 1})]}
    recorder.delay_s = {"/api/collect/": 1.0, "/api/transaction/t/": 1.0}
    c = client(recorder, timeout=0.3, retries=2)
    with pytest.raises(CampayTimeout, match="did not answer"):
        c.collect(amount=10, phone="237670000001", description="d", external_reference="e")
    assert recorder.paths().count("POST /api/collect/") == 1
    with pytest.raises(CampayTimeout):
        c.transaction("t")
    assert recorder.paths().count("GET /api/transaction/t/") == 3  # reads are retried


@pytest.mark.parametrize("code, words", [
    ("ER101", "must start with 237"),
    ("ER102", "only MTN Mobile Money and Orange Money"),
    ("ER201", "whole amounts"),
    ("ER301", "insufficient balance"),
])
def test_campay_error_codes_become_clear_messages(recorder: Recorder, code: str,
                                                  words: str) -> None:
    recorder.replies = {"/api/token/": [TOKEN_REPLY],
                        "/api/collect/": [(400, {"message": "raw", "error_code": code})]}
    with pytest.raises(CampayRejected) as info:
        client(recorder).collect(amount=10, phone="237670000001", description="d",
                                 external_reference="e")
    assert info.value.error_code == code and words in info.value.message


def test_unknown_transaction(recorder: Recorder) -> None:
    recorder.replies = {"/api/token/": [TOKEN_REPLY]}
    with pytest.raises(CampayNotFound):
        client(recorder).transaction("nope")


def test_demo_mode_is_detected_from_the_base_url() -> None:
    assert is_demo_url("https://demo.campay.net/api")
    assert is_demo_url("https://demo.campay.net/api/")
    assert not is_demo_url("https://www.campay.net/api")
    assert not is_demo_url("http://127.0.0.1:8000/api")
    assert CampayClient("https://demo.campay.net/api", "u", "p").demo_mode


def test_webhook_signature() -> None:
    key = "k" * 32
    good = jwt.encode({"reference": "r"}, key, algorithm="HS256")
    assert verify_webhook_signature(good, key)["reference"] == "r"
    for bad in (jwt.encode({"reference": "r"}, "x" * 32, algorithm="HS256"), "", "a.b.c",
                jwt.encode({"reference": "r", "exp": 1}, key, algorithm="HS256")):
        with pytest.raises(WebhookSignatureError):
            verify_webhook_signature(bad, key)
    with pytest.raises(WebhookSignatureError):
        verify_webhook_signature(good, "")
    # "none" algorithm tokens are refused.
    unsigned = jwt.encode({"reference": "r"}, None, algorithm="none")
    with pytest.raises(WebhookSignatureError):
        verify_webhook_signature(unsigned, key)


@pytest.mark.parametrize("provider, raw, expected", [
    ("mtn_momo", "237670000001", "237670000001"),
    ("MTN", "+237 6 70 00 00 01", "237670000001"),
    ("mtn", "00237-650-123-456", "237650123456"),
    ("mtn_momo", "237654999999", "237654999999"),
    ("mtn_momo", "237683000000", "237683000000"),
    ("orange_money", "237690000001", "237690000001"),
    ("Orange", "237655000000", "237655000000"),
    ("orange_money", "237659123456", "237659123456"),
])
def test_phone_accepted(provider: str, raw: str, expected: str) -> None:
    assert phones.validate(provider, raw)[1] == expected


@pytest.mark.parametrize("provider, raw", [
    ("mtn_momo", "237655000000"), ("mtn_momo", "237690000001"), ("mtn_momo", "237684000000"),
    ("orange_money", "237650000000"), ("orange_money", "237670000000"),
    ("orange_money", "237680000000"), ("mtn_momo", "237660000000"),
    ("mtn_momo", "237570000001"), ("mtn_momo", "23767000001"), ("mtn_momo", ""),
    ("airtel", "237670000001"),
])
def test_phone_refused(provider: str, raw: str) -> None:
    with pytest.raises(phones.PhoneError):
        phones.validate(provider, raw)
