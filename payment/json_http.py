"""The small JSON-over-HTTP handler base shared by the Campay stand-in and the webhook.

Both speak HTTP/1.1 with keep-alive and answer JSON bodies with an exact Content-Length;
only their routes differ.
"""

from __future__ import annotations

import json
import logging
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger(__name__)


class JsonHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    log_name = "http"

    def log_message(self, fmt: str, *args: Any) -> None:
        log.debug(f"{self.log_name}: " + fmt, *args)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # The path only: a webhook's query string carries its signature.
        log.debug("%s: %s %s -> %s", self.log_name, self.command,
                  urlsplit(self.path).path, code)

    def _reply(self, status: int, data: dict[str, Any]) -> None:
        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
