"""A local Campay stand-in: the same HTTP API on loopback, with scripted outcomes.

It approves purchases without any money moving, so it is never chosen silently: the gateway
starts one in-process only with ``CAMPAY_STANDIN=1`` (the one-command demo sets it, and the
tests that need it), and then says so in its banner. Tests also start it alone to play every
situation Campay can produce::

    python -m cloudgrpc_payment.standin --port 8765 [--approve-after 3] [--outcome success]

Campay's API (under ``/api``): ``POST /api/token/``, ``POST /api/collect/``,
``GET /api/transaction/{reference}/``; errors ER101 (number not 237...), ER102 (not MTN or
Orange), ER201 (amount not whole), ER301 (insufficient balance); 401 for a missing, unknown
or expired token. When a transaction ends it calls the webhook URL, if one is set, the way
Campay does: a GET whose query carries the transaction and a ``signature`` JWT (HS256)
made with the webhook key.

The phone's side is played by the script (``/_standin/...``, JSON). This control API
approves payments and shows every request (credentials included), so each call must carry
the stand-in's own credential, ``Authorization: Bearer KEY``: the control key given at start
(``--control-key``, ``$CAMPAY_STANDIN_CONTROL_KEY``), else its app password. A call without
it is answered 401 and changes nothing:

* ``POST /_standin/script`` ``{"phone": "2376...", "outcome": "success|failure|pending|
  insufficient", "after_s": 1.5, "reason": "..."}`` (no phone: the default for all numbers);
* ``POST /_standin/approve/{reference}``, ``POST /_standin/decline/{reference}``: the payer
  answers the USSD prompt now;
* ``POST /_standin/faults`` ``{"fail_next": {"token": 0, "collect": 2, "transaction": 1},
  "hang_next": {"collect": 1}, "hang_s": 5}``: the next N calls answer HTTP 500 or hang;
* ``POST /_standin/expire-tokens``: every issued token is refused from now on (401);
* ``GET /_standin/state``: transactions, request counts and the log of requests.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hmac
import json
import logging
import os
import re
import secrets
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import requests

from .campay_client import ERROR_MESSAGES, FAILED, PENDING, SUCCESSFUL
from .json_http import JsonHandler
from .phone import MTN_MOMO, provider_of

log = logging.getLogger(__name__)

OUTCOMES = ("success", "failure", "pending", "insufficient")
MAX_BODY = 64 * 1024
_TXN_PATH = re.compile(r"^/api/transaction/([^/]+)/?$")
_ANSWER_PATH = re.compile(r"^/_standin/(approve|decline)/([^/]+)/?$")
USSD = {"MTN": "*126#", "ORANGE": "#150*50#"}


@dataclass
class Script:
    outcome: str = "success"
    after_s: float = 3.0
    reason: str = ""


@dataclass
class Txn:
    reference: str
    external_reference: str
    amount: int
    currency: str
    phone: str
    operator: str
    description: str
    status: str = PENDING
    reason: str = ""
    code: str = ""
    operator_reference: str = ""
    created_at: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat())

    def public(self) -> dict[str, Any]:
        return {
            "reference": self.reference, "status": self.status, "amount": self.amount,
            "currency": self.currency, "operator": self.operator, "code": self.code,
            "operator_reference": self.operator_reference, "description": self.description,
            "external_user": "", "external_reference": self.external_reference,
            "reason": self.reason, "phone_number": self.phone,
        }


class CampayStandIn:
    """The stand-in server; ``start()`` serves on a background thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, username: str = "standin",
                 password: str = "standin", outcome: str = "success",
                 approve_after_s: float = 3.0, token_ttl_s: int = 3600,
                 webhook_url: str = "", webhook_key: str = "", control_key: str = "") -> None:
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}")
        if not (control_key or password):
            raise ValueError("the stand-in needs a control key or an app password")
        self.username = username
        self.password = password
        self.control_key = control_key or password
        self.token_ttl_s = token_ttl_s
        self.webhook_url = webhook_url
        self.webhook_key = webhook_key
        self.default = Script(outcome, approve_after_s)
        self.scripts: dict[str, Script] = {}
        self.tokens: dict[str, float] = {}
        self.txns: dict[str, Txn] = {}
        self.counts: dict[str, int] = {}
        self.requests_log: list[dict[str, Any]] = []
        self.fail_next: dict[str, int] = {}
        self.hang_next: dict[str, int] = {}
        self.hang_s = 5.0
        self.webhooks_sent: list[dict[str, Any]] = []
        self.lock = threading.RLock()
        self._timers: list[threading.Timer] = []
        self.httpd = ThreadingHTTPServer((host, port), _handler_for(self))
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    # --- life cycle -------------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @property
    def url(self) -> str:
        host = self.httpd.server_address[0]
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/api"

    def start(self) -> CampayStandIn:
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True,
                                        name="campay-standin")
        self._thread.start()
        return self

    def stop(self) -> None:
        with self.lock:
            for timer in self._timers:
                timer.cancel()
        self.httpd.shutdown()
        self.httpd.server_close()

    # --- the phone's side -------------------------------------------------------------

    def script(self, phone: str = "", outcome: str = "success", after_s: float | None = None,
               reason: str = "") -> None:
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}")
        with self.lock:
            delay = self.default.after_s if after_s is None else float(after_s)
            if phone:
                self.scripts[phone] = Script(outcome, delay, reason)
            else:
                self.default = Script(outcome, delay, reason)

    def finish(self, reference: str, status: str, reason: str = "") -> bool:
        """End a pending transaction (the payer approved or declined); False if not pending."""
        with self.lock:
            txn = self.txns.get(reference)
            if txn is None or txn.status != PENDING:
                return False
            txn.status = status
            txn.reason = reason if status == FAILED else ""
            if status == SUCCESSFUL:
                txn.code = f"CP{time.strftime('%y%m%d')}T{secrets.randbelow(10**5):05d}"
                txn.operator_reference = str(secrets.randbelow(10**10))
            snapshot = txn.public()
        self._send_webhook(snapshot)
        return True

    def _send_webhook(self, txn: dict[str, Any]) -> None:
        if not self.webhook_url:
            return
        import jwt

        claims = {"reference": txn["reference"], "status": txn["status"],
                  "iat": int(time.time())}
        params = {k: txn[k] for k in ("status", "reference", "amount", "currency", "operator",
                                      "code", "operator_reference", "external_reference",
                                      "phone_number", "reason")}
        params["signature"] = jwt.encode(claims, self.webhook_key or "", algorithm="HS256")

        def deliver() -> None:
            try:
                resp = requests.get(self.webhook_url, params=params, timeout=10)
                outcome = resp.status_code
            except requests.RequestException as exc:
                outcome = type(exc).__name__
            with self.lock:
                self.webhooks_sent.append({"reference": txn["reference"],
                                           "status": txn["status"], "answer": outcome})

        threading.Thread(target=deliver, daemon=True, name="standin-webhook").start()

    # --- the API ----------------------------------------------------------------------

    def count(self, name: str) -> int:
        with self.lock:
            self.counts[name] = self.counts.get(name, 0) + 1
            return self.counts[name]

    def fault(self, name: str) -> str:
        """"fail", "hang" or "" for the next call of ``name``."""
        with self.lock:
            if self.fail_next.get(name, 0) > 0:
                self.fail_next[name] -= 1
                return "fail"
            if self.hang_next.get(name, 0) > 0:
                self.hang_next[name] -= 1
                return "hang"
        return ""

    def control_allowed(self, header: str) -> bool:
        """Whether ``Authorization: Bearer KEY`` carries this stand-in's control key."""
        given = header[len("Bearer "):].strip() if header.startswith("Bearer ") else ""
        return bool(given) and hmac.compare_digest(given.encode(), self.control_key.encode())

    def token_ok(self, header: str) -> bool:
        if not header.startswith("Token "):
            return False
        with self.lock:
            expiry = self.tokens.get(header[len("Token "):].strip())
        return expiry is not None and time.monotonic() < expiry

    def issue_token(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if body.get("username") != self.username or body.get("password") != self.password:
            return 400, {"non_field_errors": ["Unable to log in with provided credentials."]}
        token = secrets.token_hex(20)
        with self.lock:
            self.tokens[token] = time.monotonic() + self.token_ttl_s
        return 200, {"token": token, "expires_in": self.token_ttl_s}

    def collect(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        phone = str(body.get("from") or "")
        raw_amount = str(body.get("amount") or "")
        if not re.fullmatch(r"2376[0-9]{8}", phone):
            return 400, {"message": ERROR_MESSAGES["ER101"], "error_code": "ER101"}
        owner = provider_of(phone)
        if owner is None:
            return 400, {"message": ERROR_MESSAGES["ER102"], "error_code": "ER102"}
        if not re.fullmatch(r"[0-9]+", raw_amount) or int(raw_amount) <= 0:
            return 400, {"message": ERROR_MESSAGES["ER201"], "error_code": "ER201"}
        if str(body.get("currency") or "XAF") != "XAF":
            return 400, {"message": "Only XAF is supported", "error_code": "ER201"}
        with self.lock:
            script = self.scripts.get(phone, self.default)
        if script.outcome == "insufficient":
            return 400, {"message": ERROR_MESSAGES["ER301"], "error_code": "ER301"}
        operator = "MTN" if owner == MTN_MOMO else "ORANGE"
        txn = Txn(reference=str(uuid.uuid4()),
                  external_reference=str(body.get("external_reference") or ""),
                  amount=int(raw_amount), currency="XAF", phone=phone, operator=operator,
                  description=str(body.get("description") or ""))
        with self.lock:
            self.txns[txn.reference] = txn
            if script.outcome in ("success", "failure"):
                status = SUCCESSFUL if script.outcome == "success" else FAILED
                reason = script.reason or ("" if status == SUCCESSFUL
                                           else "The payer declined the payment")
                timer = threading.Timer(script.after_s, self.finish,
                                        (txn.reference, status, reason))
                timer.daemon = True
                self._timers.append(timer)
                timer.start()
        return 200, {"reference": txn.reference, "ussd_code": USSD[operator],
                     "operator": operator}

    def transaction(self, reference: str) -> tuple[int, dict[str, Any]]:
        with self.lock:
            txn = self.txns.get(reference)
            if txn is None:
                return 404, {"detail": "Not found."}
            return 200, txn.public()

    def state(self) -> dict[str, Any]:
        with self.lock:
            return {
                "transactions": [t.public() for t in self.txns.values()],
                "counts": dict(self.counts),
                "requests": list(self.requests_log),
                "webhooks_sent": list(self.webhooks_sent),
                "default": asdict(self.default),
            }

    def control(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if path.rstrip("/") == "/_standin/script":
            try:
                self.script(str(body.get("phone") or ""), str(body.get("outcome") or "success"),
                            body.get("after_s"), str(body.get("reason") or ""))
            except ValueError as exc:
                return 400, {"message": str(exc)}
            return 200, {"ok": True}
        if path.rstrip("/") == "/_standin/faults":
            with self.lock:
                for name, n in (body.get("fail_next") or {}).items():
                    self.fail_next[name] = int(n)
                for name, n in (body.get("hang_next") or {}).items():
                    self.hang_next[name] = int(n)
                if "hang_s" in body:
                    self.hang_s = float(body["hang_s"])
            return 200, {"ok": True}
        if path.rstrip("/") == "/_standin/expire-tokens":
            with self.lock:
                self.tokens.clear()
            return 200, {"ok": True}
        m = _ANSWER_PATH.match(path)
        if m:
            status = SUCCESSFUL if m.group(1) == "approve" else FAILED
            reason = str(body.get("reason") or "The payer declined the payment")
            done = self.finish(m.group(2), status, reason)
            return (200, {"ok": True}) if done else (409, {"message": "not pending"})
        return 404, {"detail": "Not found."}


def _handler_for(standin: CampayStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(JsonHandler):
        server_version = "CampayStandIn/1.0"
        log_name = "stand-in"

        def _body(self) -> tuple[bytes, dict[str, Any]]:
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if not 0 <= length <= MAX_BODY:  # never read to the end of a hostile stream
                self.close_connection = True
                return b"", {"__invalid__": True}
            raw = self.rfile.read(length) if length else b""
            try:
                data = json.loads(raw) if raw else {}
            except ValueError:
                data = None
            return raw, data if isinstance(data, dict) else {"__invalid__": True}

        def _control_allowed(self) -> bool:
            """The control API answers only its key's holder (else a 401 is sent)."""
            if standin.control_allowed(self.headers.get("Authorization", "")):
                return True
            log.warning("stand-in control call without its key refused: %s", self.path)
            self.close_connection = True  # its body, if any, is not read
            self._reply(401, {"detail": "the stand-in's control API needs its key "
                                        "(Authorization: Bearer KEY)"})
            return False

        def _api(self, name: str, method: str) -> None:
            raw, body = self._body() if method == "POST" else (b"", {})
            with standin.lock:
                standin.requests_log.append({
                    "endpoint": name, "method": method, "path": self.path,
                    "authorization": self.headers.get("Authorization", ""),
                    "content_type": self.headers.get("Content-Type", ""),
                    "body": raw.decode("utf-8", "replace")})
            standin.count(name)
            fault = standin.fault(name)
            if fault == "hang":
                time.sleep(standin.hang_s)
            elif fault == "fail":
                self._reply(500, {"detail": "Internal server error (scripted)"})
                return
            if body.get("__invalid__"):
                self._reply(400, {"message": "Malformed JSON body"})
                return
            if name != "token" and not standin.token_ok(self.headers.get("Authorization", "")):
                self._reply(401, {"detail": "Invalid token."})
                return
            if name == "token":
                self._reply(*standin.issue_token(body))
            elif name == "collect":
                self._reply(*standin.collect(body))
            else:
                m = _TXN_PATH.match(urlsplit(self.path).path)
                self._reply(*standin.transaction(m.group(1) if m else ""))

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            path = urlsplit(self.path).path
            if _TXN_PATH.match(path):
                self._api("transaction", "GET")
            elif path.rstrip("/") == "/_standin/state":
                if self._control_allowed():
                    self._reply(200, standin.state())
            else:
                self._reply(404, {"detail": "Not found."})

        def do_POST(self) -> None:  # noqa: N802
            path = urlsplit(self.path).path
            if path in ("/api/token/", "/api/token"):
                self._api("token", "POST")
            elif path in ("/api/collect/", "/api/collect"):
                self._api("collect", "POST")
            elif path.startswith("/_standin/"):
                if self._control_allowed():  # before reading anything the caller sends
                    _raw, body = self._body()
                    self._reply(*standin.control(path, body))
            else:
                self._reply(404, {"detail": "Not found."})

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cloudgrpc_payment.standin",
                                     description="Serve a local stand-in of Campay's API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 = any free port")
    parser.add_argument("--username", default="standin", help="app username it accepts")
    parser.add_argument("--password", default="standin", help="app password it accepts")
    parser.add_argument("--outcome", choices=OUTCOMES, default="success",
                        help="what the payer does by default")
    parser.add_argument("--approve-after", type=float, default=3.0,
                        help="seconds before the payer answers")
    parser.add_argument("--token-ttl", type=int, default=3600)
    parser.add_argument("--webhook-url", default="")
    parser.add_argument("--webhook-key", default="")
    parser.add_argument("--control-key", default=os.environ.get("CAMPAY_STANDIN_CONTROL_KEY", ""),
                        help="key of the control API (/_standin/...; default "
                             "$CAMPAY_STANDIN_CONTROL_KEY, else the app password)")
    args = parser.parse_args(argv)
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(message)s")
    standin = CampayStandIn(args.host, args.port, username=args.username,
                            password=args.password, outcome=args.outcome,
                            approve_after_s=args.approve_after, token_ttl_s=args.token_ttl,
                            webhook_url=args.webhook_url, webhook_key=args.webhook_key,
                            control_key=args.control_key)
    print(f"Campay stand-in listening on {standin.base_url}", flush=True)
    try:
        standin.httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        standin.httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
