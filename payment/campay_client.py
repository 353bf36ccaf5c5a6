"""A client for Campay's HTTP API (mobile-money collections in Cameroon), over ``requests``.

The same code talks to Campay (``https://www.campay.net/api``), its demo
(``https://demo.campay.net/api``) and the local stand-in (``cloudgrpc_payment.standin``):

* ``POST {base}/token/`` with ``{"username", "password"}`` gives a token (renewed when it
  expires or when Campay answers 401);
* ``POST {base}/collect/`` with ``Authorization: Token ...`` and ``{"amount", "currency",
  "from", "description", "external_reference"}`` asks the phone to approve a payment and
  answers ``{"reference", "ussd_code", "operator"}``;
* ``GET {base}/transaction/{reference}/`` answers the transaction, status PENDING,
  SUCCESSFUL or FAILED;
* the webhook Campay calls carries a ``signature``: a JWT (HS256) made with the app's
  webhook key (``verify_webhook_signature``).

Every call has a timeout. Network errors and 5xx answers are retried with exponential
backoff; the collect request is not retried after a read timeout, since Campay may have
received it and a second one could prompt the payer twice.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import requests

log = logging.getLogger(__name__)

DEMO_BASE_URL = "https://demo.campay.net/api"
LIVE_BASE_URL = "https://www.campay.net/api"
DEMO_HOSTS = frozenset({"demo.campay.net"})

PENDING = "PENDING"
SUCCESSFUL = "SUCCESSFUL"
FAILED = "FAILED"

# Campay's documented error codes, in words a payer understands.
ERROR_MESSAGES: dict[str, str] = {
    "ER101": "invalid phone number: it must start with 237 (Cameroon) followed by 9 digits",
    "ER102": "this number is not supported: only MTN Mobile Money and Orange Money numbers "
             "can pay",
    "ER201": "invalid amount: only whole amounts in XAF are accepted",
    "ER301": "insufficient balance on the mobile-money account",
}


def is_demo_url(base_url: str) -> bool:
    """Campay's demo environment (test money, amounts capped) is known by its host."""
    host = (urlsplit(base_url).hostname or "").lower()
    return host in DEMO_HOSTS


class CampayError(Exception):
    """Campay could not do what was asked."""

    def __init__(self, message: str, *, error_code: str = "", http_status: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.error_code = error_code
        self.http_status = http_status


class CampayRejected(CampayError):
    """Campay refused the request (4xx): nothing was collected."""


class CampayNotFound(CampayError):
    """Campay does not know this transaction."""


class CampayAuthError(CampayError):
    """Campay refused the app credentials."""


class CampayUnavailable(CampayError):
    """Campay could not be reached or kept failing (network errors, 5xx)."""


class CampayTimeout(CampayUnavailable):
    """Campay did not answer in time."""


class WebhookSignatureError(CampayError):
    """A webhook whose signature is missing or was not made with our webhook key."""


@dataclass(frozen=True)
class Collection:
    reference: str
    ussd_code: str
    operator: str


@dataclass(frozen=True)
class Transaction:
    reference: str
    status: str
    amount: int
    currency: str
    operator: str = ""
    code: str = ""
    operator_reference: str = ""
    external_reference: str = ""
    reason: str = ""
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


def _amount(value: Any) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return -1
    return int(number) if number == int(number) else -1


def encode_body(payload: dict[str, Any]) -> bytes:
    """The exact bytes sent: compact JSON, keys in the documented order."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class CampayClient:
    """Thread-safe: one client serves every payment of a gateway."""

    def __init__(self, base_url: str, username: str, password: str, *,
                 timeout: float = 30.0, connect_timeout: float = 5.0, retries: int = 3,
                 backoff_s: float = 0.5, max_backoff_s: float = 8.0,
                 session: requests.Session | None = None) -> None:
        self.base_url = (base_url or DEMO_BASE_URL).rstrip("/")
        self.username = username
        self.password = password
        self.timeout = timeout
        self.connect_timeout = min(connect_timeout, timeout)
        self.retries = max(0, retries)
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.http = session or requests.Session()
        self._token = ""
        self._token_expires = 0.0
        self._token_lock = threading.Lock()

    @property
    def demo_mode(self) -> bool:
        return is_demo_url(self.base_url)

    def close(self) -> None:
        self.http.close()

    # --- plumbing ---------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return f"{self.base_url}/{path}"

    def _sleep(self, attempt: int) -> None:
        base = min(self.max_backoff_s, self.backoff_s * 2 ** attempt)
        time.sleep(base / 2 + random.uniform(0, base / 2))

    def _request(self, method: str, path: str, body: bytes | None, headers: dict[str, str],
                 *, idempotent: bool) -> requests.Response:
        """One HTTP exchange with retries on network errors and 5xx answers."""
        url = self._url(path)
        attempt = 0
        while True:
            try:
                resp = self.http.request(method, url, data=body, headers=headers,
                                         timeout=(self.connect_timeout, self.timeout),
                                         allow_redirects=False)
            except requests.exceptions.ReadTimeout as exc:
                if not idempotent or attempt >= self.retries:
                    raise CampayTimeout(
                        f"Campay did not answer within {self.timeout:g} s ({method} /{path})"
                    ) from exc
                log.warning("Campay %s /%s timed out; retrying", method, path)
            except requests.exceptions.RequestException as exc:
                if attempt >= self.retries:
                    raise CampayUnavailable(
                        f"cannot reach Campay at {self.base_url}: {type(exc).__name__}"
                    ) from exc
                log.warning("Campay %s /%s failed (%s); retrying", method, path,
                            type(exc).__name__)
            else:
                if resp.status_code < 500:
                    return resp
                if attempt >= self.retries:
                    raise CampayUnavailable(
                        f"Campay keeps failing (HTTP {resp.status_code} on {method} /{path}); "
                        "try again later", http_status=resp.status_code)
                log.warning("Campay %s /%s answered HTTP %d; retrying", method, path,
                            resp.status_code)
            self._sleep(attempt)
            attempt += 1

    def _token_value(self, *, renew: bool = False, stale: str = "") -> str:
        with self._token_lock:
            if renew and self._token == stale:
                self._token = ""
            if self._token and time.monotonic() < self._token_expires:
                return self._token
            body = encode_body({"username": self.username, "password": self.password})
            resp = self._request("POST", "token/", body, {"Content-Type": "application/json"},
                                 idempotent=True)
            data = _json(resp)
            token = str(data.get("token") or "")
            if resp.status_code != 200 or not token:
                raise CampayAuthError(
                    "Campay refused the app credentials (check CAMPAY_APP_USERNAME and "
                    f"CAMPAY_APP_PASSWORD): HTTP {resp.status_code} {_detail(data)}".rstrip(),
                    http_status=resp.status_code)
            try:
                ttl = float(data.get("expires_in") or 3600)
            except (TypeError, ValueError):
                ttl = 3600.0
            self._token = token
            self._token_expires = time.monotonic() + max(1.0, ttl - min(60.0, ttl / 10))
            return token

    def _authorized(self, method: str, path: str, payload: dict[str, Any] | None, *,
                    idempotent: bool) -> requests.Response:
        body = encode_body(payload) if payload is not None else None
        renewed = False
        while True:
            token = self._token_value()
            headers = {"Authorization": f"Token {token}"}
            if body is not None:
                headers["Content-Type"] = "application/json"
            resp = self._request(method, path, body, headers, idempotent=idempotent)
            if resp.status_code == 401 and not renewed:
                # The token expired (or was revoked) meanwhile: a 401 means nothing was done.
                log.info("Campay token refused; renewing it")
                renewed = True
                self._token_value(renew=True, stale=token)
                continue
            if resp.status_code == 401:
                raise CampayAuthError("Campay refuses the gateway's token even after renewal",
                                      http_status=401)
            return resp

    # --- the API ----------------------------------------------------------------------

    def token(self) -> str:
        """A valid access token (fetched or renewed as needed)."""
        return self._token_value()

    def collect(self, *, amount: int, phone: str, description: str,
                external_reference: str, currency: str = "XAF") -> Collection:
        """Ask ``phone`` to approve paying ``amount``; Campay answers at once, the payer later."""
        payload = {
            "amount": str(int(amount)),
            "currency": currency,
            "from": phone,
            "description": description,
            "external_reference": external_reference,
        }
        resp = self._authorized("POST", "collect/", payload, idempotent=False)
        data = _json(resp)
        if resp.status_code not in (200, 201) or not data.get("reference"):
            raise _rejection(resp.status_code, data, "collect")
        return Collection(reference=str(data["reference"]),
                          ussd_code=str(data.get("ussd_code") or ""),
                          operator=str(data.get("operator") or ""))

    def transaction(self, reference: str) -> Transaction:
        """The transaction's current state as Campay knows it."""
        resp = self._authorized("GET", f"transaction/{quote(reference, safe='')}/", None,
                                idempotent=True)
        data = _json(resp)
        if resp.status_code == 404:
            raise CampayNotFound(f"Campay knows no transaction {reference}", http_status=404)
        if resp.status_code != 200 or "status" not in data:
            raise _rejection(resp.status_code, data, "transaction")
        status = str(data.get("status") or "").upper()
        if status not in (PENDING, SUCCESSFUL, FAILED):
            status = PENDING  # an unknown interim state: keep waiting
        return Transaction(
            reference=str(data.get("reference") or reference), status=status,
            amount=_amount(data.get("amount")), currency=str(data.get("currency") or ""),
            operator=str(data.get("operator") or ""), code=str(data.get("code") or ""),
            operator_reference=str(data.get("operator_reference") or ""),
            external_reference=str(data.get("external_reference") or ""),
            reason=str(data.get("reason") or ""), raw=data)


def verify_webhook_signature(signature: str, webhook_key: str) -> dict[str, Any]:
    """The signature's claims if it is a JWT made with ``webhook_key``; else raise."""
    import jwt

    if not webhook_key:
        raise WebhookSignatureError("no webhook key configured (CAMPAY_WEBHOOK_KEY)")
    if not signature:
        raise WebhookSignatureError("webhook without signature")
    try:
        claims = jwt.decode(signature, webhook_key, algorithms=["HS256"],
                            options={"require": []})
    except jwt.PyJWTError as exc:
        raise WebhookSignatureError(f"invalid webhook signature: {exc}") from exc
    return claims if isinstance(claims, dict) else {}


def _json(resp: requests.Response) -> dict[str, Any]:
    try:
        data = resp.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _detail(data: dict[str, Any]) -> str:
    for key in ("message", "detail", "error"):
        if data.get(key):
            return str(data[key])
    return ""


def _rejection(status: int, data: dict[str, Any], what: str) -> CampayError:
    code = str(data.get("error_code") or data.get("code") or "")
    if code in ERROR_MESSAGES:
        return CampayRejected(ERROR_MESSAGES[code], error_code=code, http_status=status)
    detail = _detail(data) or "no details"
    return CampayRejected(f"Campay refused the {what} request (HTTP {status}): {detail}",
                          error_code=code, http_status=status)
