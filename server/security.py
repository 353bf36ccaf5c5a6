"""Secrets: random tokens, their stored hashes, one-time codes and constant-time checks.

Session and refresh tokens are 256-bit random strings: a plain SHA-256 of them is a safe
lookup key. One-time codes are short (10^6 values): a plain hash of them is reversed in
under a second, so they are stored as HMAC-SHA256 under the gateway's OTP key, which lives
outside the database (``DATA_DIR/otp_key`` or ``OTP_KEY``). A copy of the database alone
then reveals no code.
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


def otp_hash(key: str, email: str, code: str, salt: str) -> str:
    """The keyed hash of a code as stored: without ``key`` nobody can test a guess offline."""
    if not key:
        raise ValueError("no OTP key: the gateway resolves one at start (resolve_keys)")
    material = f"{salt}:{email.lower()}:{code.strip()}".encode()
    return hmac.new(key.encode("utf-8"), material, hashlib.sha256).hexdigest()


def otp_key_id(key: str) -> str:
    """A short public fingerprint of the OTP key, kept with each code: a gateway can tell a
    code hashed under another key (gateways sharing a database must share the key) from a
    wrong code. It is an HMAC output, so it says nothing about the key."""
    return hmac.new(key.encode("utf-8"), b"cloudgrpc otp key id", hashlib.sha256).hexdigest()[:16]


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison of two secrets (an empty expected secret never matches)."""
    if not expected:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))
