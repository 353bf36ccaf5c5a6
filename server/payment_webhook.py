"""The HTTP endpoint Campay calls when a transaction ends (started when ``WEBHOOK_PORT`` is set).

Campay calls the webhook URL registered for the app with the transaction in the query string
(GET); a POST with a form or JSON body is accepted as well. Nothing in the call is trusted:
the ``signature`` must be a JWT made with ``CAMPAY_WEBHOOK_KEY``, and even then the ledger
asks Campay's transaction endpoint before changing anything.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from cloudgrpc_payment.json_http import JsonHandler

from .payments import PaymentLedger

log = logging.getLogger(__name__)

PATHS = ("/campay/webhook", "/campay/webhook/", "/webhook", "/webhook/")
MAX_BODY = 64 * 1024


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
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self._reply(413, {"ok": False, "message": "body too large"})
                return
            raw = self.rfile.read(length) if length else b""
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
