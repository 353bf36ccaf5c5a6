"""Small helpers shared by the client tests."""

from __future__ import annotations

import hashlib

from cloudgrpc_proto.client import CloudClient
from cloudgrpc_proto.retry import RetryPolicy

FAST_RETRY = RetryPolicy(attempts=3, initial_backoff=0.01, max_backoff=0.05)


def sign_in(client: CloudClient, email: str = "ada@example.com", name: str = "Ada") -> None:
    """Enroll (or log in) through the fake gateway, whose code is always 123456."""
    client.send_otp(email)
    client.verify_otp(email, "123456")
    try:
        client.enroll(email, name, device_name="testbox")
    except Exception:  # noqa: BLE001 - already enrolled: log in instead
        client.send_otp(email)
        client.verify_otp(email, "123456")
        client.login(email, device_name="testbox")


def payload(size: int, seed: int = 1) -> bytes:
    """Deterministic bytes that do not repeat within a chunk (so dedup is not accidental)."""
    out = bytearray()
    block = hashlib.sha256(str(seed).encode()).digest()
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out.extend(block * 64)
    return bytes(out[:size])
