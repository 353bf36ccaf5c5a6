"""The HTTP endpoint Campay calls when a transaction ends (started when ``WEBHOOK_PORT`` is set).

Campay calls the webhook URL registered for the app with the transaction in the query string
(GET); a POST with a form or JSON body is accepted as well. Nothing in the call is trusted:
the ``signature`` must be a JWT made with ``CAMPAY_WEBHOOK_KEY``, and even then the ledger
asks Campay's transaction endpoint before changing anything.

Nor is its size: the body is read up to ``MAX_BODY`` whatever ``Content-Length`` claims
(negative, missing, or a chunked body), a larger one answers 413 without being buffered,
and a sender that stalls meets the read timeout.
"""

from __future__ import annotations

import json
import logging
import threading
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import BinaryIO
from urllib.parse import parse_qsl, urlsplit

from cloudgrpc_payment.json_http import JsonHandler

from .payments import PaymentLedger

log = logging.getLogger(__name__)

PATHS = ("/campay/webhook", "/campay/webhook/", "/webhook", "/webhook/")
MAX_BODY = 64 * 1024
READ_TIMEOUT_S = 10.0
MAX_CHUNK_LINE = 1024


class BodyRefused(Exception):
    """A request body this endpoint will not read; the reply's status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def read_body(headers: Message, rfile: BinaryIO, limit: int) -> bytes:
    """The request's body, never reading more than ``limit`` bytes of it.

    ``Content-Length`` is trusted only as an upper bound that must fit the limit; a negative
    or malformed one is refused, a chunked body is decoded chunk by chunk and refused as soon
    as it passes the limit, and a request with neither has no body (HTTP/1.1). A stalled
    sender hits the socket's read timeout.
    """
    encoding = (headers.get("Transfer-Encoding") or "").strip().lower()
    length_header = headers.get("Content-Length")
    try:
        if encoding:
            if encoding != "chunked" or length_header is not None:
                raise BodyRefused(400, "unsupported transfer encoding")
            return _read_chunked(rfile, limit)
        if length_header is None:
            return b""
        text = length_header.strip()
        if not text.isdigit():
            raise BodyRefused(400, "malformed Content-Length")
        if len(text) > 12 or int(text) > limit:
            raise BodyRefused(413, f"body too large (at most {limit} bytes)")
        length = int(text)
        raw = rfile.read(length) if length else b""
        if len(raw) != length:
            raise BodyRefused(400, "body shorter than its Content-Length")
        return raw
    except (TimeoutError, OSError) as exc:
        raise BodyRefused(408, "request body not received in time") from exc


def _read_chunked(rfile: BinaryIO, limit: int) -> bytes:
    parts: list[bytes] = []
    total = 0
    while True:
        line = rfile.readline(MAX_CHUNK_LINE + 1)
        if len(line) > MAX_CHUNK_LINE or not line.endswith(b"\n"):
            raise BodyRefused(400, "malformed chunked body")
        size_text = line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise BodyRefused(400, "malformed chunked body") from None
        if size < 0:
            raise BodyRefused(400, "malformed chunked body")
        if size == 0:
            while rfile.readline(MAX_CHUNK_LINE + 1) not in (b"\r\n", b"\n", b""):
                pass  # trailers: skipped
            return b"".join(parts)
        total += size
        if total > limit:
            raise BodyRefused(413, f"body too large (at most {limit} bytes)")
        piece = rfile.read(size)
        if len(piece) != size:
            raise BodyRefused(400, "chunked body ended early")
        parts.append(piece)
        rfile.readline(MAX_CHUNK_LINE + 1)  # the CRLF after the chunk


class WebhookServer:
    def __init__(self, ledger: PaymentLedger, host: str, port: int) -> None:
        self.ledger = ledger
        self.httpd = ThreadingHTTPServer((host, port), _handler_for(ledger))
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True,
                                        name="campay-webhook")

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @property
    def url(self) -> str:
        host = self.httpd.server_address[0]
        return f"http://{host}:{self.port}{PATHS[0]}"

    def start(self) -> WebhookServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _handler_for(ledger: PaymentLedger) -> type[BaseHTTPRequestHandler]:
    class Handler(JsonHandler):
        server_version = "CloudGrpcWebhook/1.0"
        log_name = "webhook"
        timeout = READ_TIMEOUT_S  # the socket's: a request (headers or body) that stalls ends

        def _handle(self, params: dict[str, str]) -> None:
            try:
                status, data = ledger.handle_webhook(params)
            except Exception:  # noqa: BLE001 - Campay retries on a 5xx
                log.exception("webhook handling failed")
                status, data = 500, {"ok": False, "message": "internal error"}
            self._reply(status, data)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            parts = urlsplit(self.path)
            if parts.path not in PATHS:
                self._reply(404, {"ok": False, "message": "not found"})
                return
            self._handle(dict(parse_qsl(parts.query, keep_blank_values=True)))

        def do_POST(self) -> None:  # noqa: N802
            parts = urlsplit(self.path)
            if parts.path not in PATHS:
                self._reply(404, {"ok": False, "message": "not found"})
                return
            try:
                raw = read_body(self.headers, self.rfile, MAX_BODY)
            except BodyRefused as refused:
                self.close_connection = True  # what is left of the body is never read
                self._reply(refused.status, {"ok": False, "message": refused.message})
                return
            params = dict(parse_qsl(parts.query, keep_blank_values=True))
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            try:
                if ctype == "application/json":
                    data = json.loads(raw or b"{}")
                    if isinstance(data, dict):
                        params.update({k: str(v) for k, v in data.items() if v is not None})
                else:
                    params.update(parse_qsl(raw.decode("utf-8", "replace"),
                                            keep_blank_values=True))
            except ValueError:
                self._reply(400, {"ok": False, "message": "malformed body"})
                return
            self._handle(params)

    return Handler
