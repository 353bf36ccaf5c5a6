"""Secrets: random tokens, their stored hashes, one-time codes and constant-time checks.

Session and refresh tokens are 256-bit random strings: a plain SHA-256 of them is a safe
lookup key. One-time codes are short, so each gets its own salt and is compared in
constant time; their real protection is the short expiry and the attempt limit.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_otp_code() -> str:
    return f"{secrets.randbelow(1_000_000):06d}"


def new_salt() -> str:
    return secrets.token_hex(16)


def otp_hash(email: str, code: str, salt: str) -> str:
    material = f"{salt}:{email.lower()}:{code.strip()}".encode()
    return hashlib.sha256(material).hexdigest()


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison of two secrets (an empty expected secret never matches)."""
    if not expected:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))
