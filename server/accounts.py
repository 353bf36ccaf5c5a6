"""Accounts: one-time codes, enrolment, sign-in, sessions and device refresh tokens.

A code is bound to one email. Enroll and Login succeed only by consuming a fresh, verified,
unused code for that same email inside the same transaction that creates the session, so a
bare ``LoginRequest { email }`` never opens an account and a code opens at most one session.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
import time
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session as DbSession

from cloudgrpc_proto.errors import (
    AlreadyExists,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    RateLimited,
    Unauthenticated,
)

from . import security
from .config import Settings
from .db import Database
from .events import EventBus
from .mailer import OtpMailer
from .models import Device, Folder, OtpCode, Session, User, utcnow

log = logging.getLogger(__name__)

_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
_MAX_CODES_PER_HOUR = 10


def normalize_email(email: str) -> str:
    email = (email or "").strip().lower()
    if len(email) > 254 or not _EMAIL.match(email):
        raise InvalidArgument(f"not a valid email address: {email!r}")
    return email


@dataclass(frozen=True)
class IssuedSession:
    user_id: str
    session_token: str
    expires_at: dt.datetime
    refresh_token: str
    storage_allocated: int


@dataclass(frozen=True)
class Caller:
    """The authenticated user of a request."""

    user_id: str
    email: str
    full_name: str
    root_folder_id: str
    session_expires_at: dt.datetime


class Accounts:
    def __init__(self, settings: Settings, db: Database, events: EventBus,
                 mailer: OtpMailer) -> None:
        self.settings = settings
        self.db = db
        self.events = events
        self.mailer = mailer
        self._sessions: dict[str, tuple[Caller, float]] = {}
        self._sessions_lock = threading.Lock()

    # --- one-time codes -------------------------------------------------------------

    def send_otp(self, email: str) -> str:
        email = normalize_email(email)
        now = utcnow()
        code = security.new_otp_code()
        with self.db.write() as s:
            recent = list(s.scalars(
                select(OtpCode).where(OtpCode.email == email,
                                      OtpCode.created_at > now - dt.timedelta(hours=1))
                .order_by(OtpCode.created_at.desc())
            ))
            if recent:
                age = int((now - recent[0].created_at).total_seconds())
                wait = self.settings.otp_resend_cooldown_s - age
                if wait > 0:
                    raise RateLimited(f"a code was just sent; try again in {wait} s")
            if len(recent) >= _MAX_CODES_PER_HOUR:
                raise RateLimited("too many codes requested for this address; try in an hour")
            salt = security.new_salt()
            s.add(OtpCode(
                email=email, salt=salt, code_hash=security.otp_hash(email, code, salt),
                created_at=now, expires_at=now + dt.timedelta(seconds=self.settings.otp_ttl_s),
            ))
        how = self.mailer.send_code(email, code, max(1, self.settings.otp_ttl_s // 60))
        self.events.emit("otp_sent", f"sign-in code sent to {email}", None, email=email, via=how)
        return how

    def verify_otp(self, email: str, code: str) -> tuple[str, int]:
        """Check ``code``; returns (verification token, attempts left)."""
        email = normalize_email(email)
        code = (code or "").strip()
        now = utcnow()
        failure: str | None = None
        with self.db.write() as s:
            otp = s.scalars(
                select(OtpCode).where(OtpCode.email == email, OtpCode.consumed_at.is_(None))
                .order_by(OtpCode.created_at.desc()).limit(1).with_for_update()
            ).first()
            if otp is None or otp.expires_at <= now:
                failure = "no valid code for this address: request a new one"
            elif otp.attempts >= self.settings.otp_max_attempts:
                failure = "too many wrong attempts: request a new code"
            elif otp.verified_at is not None:
                failure = "this code was already used: request a new one"
            else:
                ok = security.same_secret(security.otp_hash(email, code, otp.salt), otp.code_hash)
                if ok:
                    token = security.new_token()
                    otp.verified_at = now
                    otp.verification_token_hash = security.token_hash(token)
                    return token, self.settings.otp_max_attempts - otp.attempts
                otp.attempts += 1
                left = self.settings.otp_max_attempts - otp.attempts
                failure = f"wrong code ({left} attempt{'s' if left != 1 else ''} left)"
        self.events.emit("otp_failed", f"failed code check for {email}: {failure}", None,
                         email=email)
        raise PermissionDenied(failure)

    def _consume_verified(self, s: DbSession, email: str, verification_token: str) -> None:
        now = utcnow()
        q = (select(OtpCode)
             .where(OtpCode.email == email, OtpCode.verified_at.is_not(None),
                    OtpCode.consumed_at.is_(None), OtpCode.expires_at > now)
             .order_by(OtpCode.verified_at.desc()).with_for_update())
        if verification_token:
            q = q.where(OtpCode.verification_token_hash == security.token_hash(verification_token))
        otp = s.scalars(q.limit(1)).first()
        if otp is None:
            raise Unauthenticated("verify a fresh one-time code for this email first")
        # Guarded update: of two racing sign-ins with one code, exactly one wins.
        won = s.execute(
            update(OtpCode).where(OtpCode.id == otp.id, OtpCode.consumed_at.is_(None))
            .values(consumed_at=now)
        ).rowcount
        if won != 1:
            raise Unauthenticated("this code was already used: request a new one")

    # --- enrolment and sign-in ------------------------------------------------------

    def enroll(self, email: str, full_name: str, verification_token: str = "",
               device_name: str = "") -> IssuedSession:
        email = normalize_email(email)
        full_name = (full_name or "").strip()
        if not full_name or len(full_name) > 200:
            raise InvalidArgument("a full name (1 to 200 characters) is required")
        with self.db.write() as s:
            self._consume_verified(s, email, verification_token)
            if s.scalars(select(User).where(User.email == email)).first() is not None:
                raise AlreadyExists(f"{email} is already enrolled: use login")
            now = utcnow()
            user = User(email=email, full_name=full_name, created_at=now, last_login=now,
                        storage_allocated=self.settings.default_quota_bytes, storage_used=0)
            s.add(user)
            s.flush()
            now_ns = int(now.replace(tzinfo=dt.UTC).timestamp() * 1e9)
            root = Folder(owner_id=user.id, parent_id=None, name="", mode=0o755,
                          atime_ns=now_ns, mtime_ns=now_ns, ctime_ns=now_ns)
            s.add(root)
            s.flush()
            user.root_folder_id = root.id
            issued = self._issue(s, user, device_name)
        self.events.emit("enrollment", f"{email} enrolled", issued.user_id, email=email)
        return issued

    def login(self, email: str, verification_token: str = "", device_name: str = ""
              ) -> IssuedSession:
        email = normalize_email(email)
        with self.db.write() as s:
            self._consume_verified(s, email, verification_token)
            user = s.scalars(select(User).where(User.email == email)).first()
            if user is None:
                raise NotFound(f"no account for {email}: enroll first")
            if not user.is_active:
                raise PermissionDenied("this account is disabled")
            user.last_login = utcnow()
            issued = self._issue(s, user, device_name)
        self.events.emit("login", f"{email} signed in", issued.user_id, email=email)
        return issued

    def _issue(self, s: DbSession, user: User, device_name: str,
               device: Device | None = None) -> IssuedSession:
        now = utcnow()
        refresh = ""
        if device is None and device_name:
            refresh = security.new_token()
            device = Device(user_id=user.id, name=device_name[:200],
                            token_hash=security.token_hash(refresh), last_used_at=now,
                            expires_at=now + dt.timedelta(seconds=self.settings.refresh_ttl_s))
            s.add(device)
            s.flush()
        token = security.new_token()
        expires = now + dt.timedelta(seconds=self.settings.session_ttl_s)
        s.add(Session(user_id=user.id, device_id=device.id if device else None,
                      token_hash=security.token_hash(token), created_at=now, expires_at=expires))
        return IssuedSession(user.id, token, expires, refresh, user.storage_allocated)

    def refresh(self, refresh_token: str) -> IssuedSession:
        now = utcnow()
        with self.db.write() as s:
            device = s.scalars(select(Device).where(
                Device.token_hash == security.token_hash(refresh_token or ""))).first()
            if device is None or device.revoked_at is not None or device.expires_at <= now:
                raise Unauthenticated("this device is signed out: sign in again")
            user = s.get(User, device.user_id)
            if user is None or not user.is_active:
                raise Unauthenticated("account unavailable: sign in again")
            device.last_used_at = now
            device.expires_at = now + dt.timedelta(seconds=self.settings.refresh_ttl_s)
            issued = self._issue(s, user, "", device=device)
        return IssuedSession(issued.user_id, issued.session_token, issued.expires_at,
                             refresh_token, issued.storage_allocated)

    def logout(self, session_token: str, refresh_token: str = "") -> None:
        self.forget_session(session_token)
        now = utcnow()
        with self.db.write() as s:
            sess = s.scalars(select(Session).where(
                Session.token_hash == security.token_hash(session_token or ""))).first()
            if sess is None or sess.revoked_at is not None:
                raise Unauthenticated("not signed in")
            sess.revoked_at = now
            if refresh_token:
                s.execute(update(Device).where(
                    Device.token_hash == security.token_hash(refresh_token),
                    Device.user_id == sess.user_id).values(revoked_at=now))
            user_id = sess.user_id
        self.events.emit("logout", "signed out", user_id)

    # --- per-request authentication -------------------------------------------------

    def authenticate(self, session_token: str) -> Caller:
        """The caller a session token belongs to.

        Every call authenticates, so a verified session is remembered for a few seconds
        (``SESSION_CACHE_S``): a burst of small operations costs one lookup, not one each. A
        logout on this gateway forgets it at once; on another gateway it stops working
        within that window.
        """
        if not session_token:
            raise Unauthenticated("no session token: sign in first")
        key = security.token_hash(session_token)
        now = utcnow()
        cached = self._sessions.get(key)
        if cached is not None:
            caller, at = cached
            if time.monotonic() - at < self.settings.session_cache_s and \
                    caller.session_expires_at > now:
                return caller
        caller = self._lookup(session_token, now)
        with self._sessions_lock:
            if len(self._sessions) > 10_000:
                self._sessions.clear()
            self._sessions[key] = (caller, time.monotonic())
        return caller

    def forget_session(self, session_token: str) -> None:
        with self._sessions_lock:
            self._sessions.pop(security.token_hash(session_token or ""), None)

    def _lookup(self, session_token: str, now: dt.datetime) -> Caller:
        with self.db.read() as s:
            row = s.execute(
                select(Session, User).join(User, User.id == Session.user_id)
                .where(Session.token_hash == security.token_hash(session_token))
            ).first()
            if row is None:
                raise Unauthenticated("unknown session: sign in again")
            sess, user = row
            if sess.revoked_at is not None:
                raise Unauthenticated("this session was signed out: sign in again")
            if sess.expires_at <= now:
                raise Unauthenticated("session expired: sign in again")
            if not user.is_active:
                raise Unauthenticated("account disabled")
            return Caller(user.id, user.email, user.full_name, user.root_folder_id or "",
                          sess.expires_at)
