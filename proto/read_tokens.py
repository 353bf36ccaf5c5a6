"""Read tokens: the gateway's signed permission to read one chunk from a storage node.

A client that may read a file gets, with the file's chunk list, one token per chunk; a
node accepts ``GetChunk`` with such a token instead of the cluster secret. The token is
an HMAC-SHA256 over the chunk's hash and an expiry, keyed with the cluster secret the
gateway and its nodes already share, so a node checks it with no database and no call
to the gateway (the way SeaweedFS's volume servers check the master's JWTs). It is
scoped: it names exactly one chunk and stops working at its expiry.

Format: ``v1.<expires unix seconds>.<hex HMAC>``.
"""

from __future__ import annotations

import hashlib
import hmac
import time

VERSION = "v1"
_LABEL = b"cloudgrpc read token v1\n"  # domain separation from any other use of the secret


def _mac(secret: str, sha256: str, expires: int) -> str:
    message = _LABEL + f"{sha256}\n{expires}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def issue(secret: str, sha256: str, expires: int) -> str:
    """A token for reading chunk ``sha256`` until ``expires`` (unix seconds)."""
    if not secret:
        raise ValueError("read tokens need a cluster secret")
    return f"{VERSION}.{int(expires)}.{_mac(secret, sha256, int(expires))}"


def valid(secret: str, token: str, sha256: str, now: float | None = None) -> bool:
    """Whether ``token`` was signed with ``secret`` for ``sha256`` and has not expired."""
    if not secret or not token:
        return False
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != VERSION or not parts[1].isdigit():
        return False
    expires = int(parts[1])
    if expires < (time.time() if now is None else now):
        return False
    return hmac.compare_digest(parts[2], _mac(secret, sha256, expires))
