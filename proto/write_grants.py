"""Write grants and receipts: how a client writes chunk bytes to the storage nodes itself.

The gateway decides where a chunk goes and signs, per chunk and per node, a *write token*:
an HMAC-SHA256, keyed with the cluster secret the gateway and its nodes share, over the
chunk's hash, its size, the node's id, the grant's id (the quota reservation it was
counted in) and an expiry. A node accepts ``PutChunk`` with such a token instead of the
secret, checks it with no database and no call out (as read tokens are checked), refuses
it a second time (replay) and answers a *receipt*: an HMAC over the same fields under
another label, which only a holder of the secret can make. The client hands the receipts
to the gateway with the chunk's reference; the gateway checks them and records the copies.
So a client can neither write a chunk it was not granted, nor write it elsewhere, nor
claim a copy no node stored.

Formats: token ``w1.<expires>.<grant id>.<hex HMAC>``; receipt ``r1.<expires>.<grant
id>.<hex HMAC>`` (the receipt keeps the grant's expiry: it is refused after it too).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from dataclasses import dataclass

TOKEN_VERSION = "w1"
RECEIPT_VERSION = "r1"
_TOKEN_LABEL = b"cloudgrpc write token v1\n"
_RECEIPT_LABEL = b"cloudgrpc write receipt v1\n"
_GRANT_ID = re.compile(r"^[0-9a-f-]{1,36}$")
MAX_LENGTH = 256  # longer strings are refused before any work


@dataclass(frozen=True)
class Signed:
    """What a valid token or receipt says, beyond what its checker already knew."""

    grant_id: str
    expires: int
    mac: str


def _mac(secret: str, label: bytes, sha256: str, size: int, node_id: str, grant_id: str,
         expires: int) -> str:
    message = label + f"{sha256}\n{size}\n{node_id}\n{grant_id}\n{expires}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _sign(version: str, label: bytes, secret: str, sha256: str, size: int, node_id: str,
          grant_id: str, expires: int) -> str:
    if not secret:
        raise ValueError("write grants need a cluster secret")
    if not _GRANT_ID.match(grant_id):
        raise ValueError("a grant id is a uuid")
    mac = _mac(secret, label, sha256, size, node_id, grant_id, int(expires))
    return f"{version}.{int(expires)}.{grant_id}.{mac}"


def _check(version: str, label: bytes, secret: str, text: str, sha256: str, size: int,
           node_id: str, now: float | None) -> Signed | None:
    if not secret or not text or len(text) > MAX_LENGTH or not node_id:
        return None
    parts = text.split(".")
    if len(parts) != 4 or parts[0] != version or not parts[1].isdigit() \
            or not _GRANT_ID.match(parts[2]):
        return None
    expires = int(parts[1])
    if expires < (time.time() if now is None else now):
        return None
    expected = _mac(secret, label, sha256, size, node_id, parts[2], expires)
    if not hmac.compare_digest(parts[3], expected):
        return None
    return Signed(parts[2], expires, parts[3])


def issue_token(secret: str, sha256: str, size: int, node_id: str, grant_id: str,
                expires: int) -> str:
    """The gateway's permission to write chunk ``sha256`` of ``size`` bytes to ``node_id``."""
    return _sign(TOKEN_VERSION, _TOKEN_LABEL, secret, sha256, size, node_id, grant_id, expires)


def check_token(secret: str, token: str, sha256: str, size: int, node_id: str,
                now: float | None = None) -> Signed | None:
    """A node's check of a write token for the chunk it is given: None when forged,
    expired, or for another chunk, size or node."""
    return _check(TOKEN_VERSION, _TOKEN_LABEL, secret, token, sha256, size, node_id, now)


def issue_receipt(secret: str, sha256: str, size: int, node_id: str, grant: Signed) -> str:
    """A node's statement that it stores the chunk, for the grant it was written under."""
    return _sign(RECEIPT_VERSION, _RECEIPT_LABEL, secret, sha256, size, node_id,
                 grant.grant_id, grant.expires)


def check_receipt(secret: str, receipt: str, sha256: str, size: int, node_id: str,
                  now: float | None = None) -> Signed | None:
    """The gateway's check of a receipt a client hands in: None when forged, expired, or
    for another chunk, size or node."""
    return _check(RECEIPT_VERSION, _RECEIPT_LABEL, secret, receipt, sha256, size, node_id, now)
