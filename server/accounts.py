"""Accounts: one-time codes, enrolment, sign-in, sessions and devices.

Sign-in is SendOTP -> VerifyOTP -> Enroll/Login. VerifyOTP answers a one-time verification
token, and Enroll/Login consume the verified code *only* with that token, inside the
transaction that creates the session: the client that typed the code is the only one that
can use it, so an attacker looping ``Login(email=victim)`` never gets the victim's session,
and a code opens at most one session.

Guessing is bounded per email in the database (every gateway shares the count): at most
``SIGN_IN_FAILURES_PER_HOUR`` wrong codes an hour, whatever the number of codes requested,
then a lockout. Each gateway also limits SendOTP/VerifyOTP per client address
(``address_limits``). Codes are stored as an HMAC under the gateway's OTP key.

Every sign-in is a device the owner can list and end (ending it ends its sessions at once).
A named device also gets a refresh token, which rotates on every use; see ``refresh``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import threading
import time
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session as DbSession

from cloudgrpc_proto.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)

from . import security
from .address_limits import AddressLimiter, minutes, rate_limited
from .config import Settings
from .db import Database
from .events import EventBus
from .mailer import OtpMailer
from .models import Device, Folder, OtpCode, Session, SignInFailure, User, utcnow
from .text_checks import check_printable

log = logging.getLogger(__name__)

_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
_MAX_CODES_PER_HOUR = 10
# Wrong codes per email per hour, all codes together; then a lockout until the oldest of
# them is an hour old.
SIGN_IN_FAILURES_PER_HOUR = 20
FAILURE_WINDOW = dt.timedelta(hours=1)
MAX_DEVICE_NAME = 200
# Events that end a device: every gateway drops that device's cached sessions.
REVOCATION_EVENTS = {"device_revoked", "refresh_reuse", "logout"}


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
    device_id: str = ""
    session_id: str = ""  # not a secret: names the session in events (logout on every gateway)


@dataclass(frozen=True)
class DeviceView:
    """One device as its owner sees it (ListDevices)."""

    device_id: str
    name: str
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    last_address: str
    expires_at: dt.datetime
    current: bool



class Accounts:
    def __init__(self, settings: Settings, db: Database, events: EventBus,
                 mailer: OtpMailer) -> None:
        self.settings = settings
        self.db = db
        self.events = events
        self.mailer = mailer
        self._sessions: dict[str, tuple[Caller, float]] = {}
        self._sessions_lock = threading.Lock()
        self._send_limits = AddressLimiter("code requests", settings.otp_sends_per_address_hour)
        self._verify_limits = AddressLimiter("code checks",
                                             settings.otp_verifies_per_address_hour)
        self._key_id = security.otp_key_id(settings.otp_key) if settings.otp_key else ""
        self._listener: threading.Thread | None = None

    def start_revocation_listener(self) -> None:
        """Forget cached sessions of devices other gateways end, and of sessions they sign
        out (PostgreSQL relays their events within about a second), so a revocation or a
        logout does not wait out SESSION_CACHE_S there either. Runs until the event bus
        closes."""
        if self._listener is not None:
            return
        subscription = self.events.subscribe(REVOCATION_EVENTS)

        def listen() -> None:
            try:
                while not self.events.closing.is_set():
                    record = subscription.get(timeout=1.0)
                    if record is None:
                        continue
                    try:
                        details = json.loads(record.details or "{}")
                    except ValueError:
                        continue
                    if not isinstance(details, dict):
                        continue
                    if details.get("device_id"):
                        self.forget_device(str(details["device_id"]))
                    if details.get("session_id"):
                        self.forget_session_id(str(details["session_id"]))
            finally:
                subscription.close()

        self._listener = threading.Thread(target=listen, name="revocations", daemon=True)
        self._listener.start()

    # --- one-time codes -------------------------------------------------------------

    def _check_lockout(self, s: DbSession, email: str, now: dt.datetime) -> int:
        """Wrong codes for ``email`` in the last hour; RateLimited once there are too many."""
        since = now - FAILURE_WINDOW
        failures = s.scalar(select(func.count()).select_from(SignInFailure).where(
            SignInFailure.email == email, SignInFailure.at > since)) or 0
        if failures >= SIGN_IN_FAILURES_PER_HOUR:
            wait = self._lockout_left(s, email, now)
            raise rate_limited(f"too many wrong codes for this email: sign-in is locked; "
                               f"try again in {minutes(wait)}", wait)
        return int(failures)

    @staticmethod
    def _lockout_left(s: DbSession, email: str, now: dt.datetime) -> float:
        """Seconds until the oldest counted failure leaves the hour (and the lock lifts)."""
        oldest = s.scalar(select(func.min(SignInFailure.at)).where(
            SignInFailure.email == email, SignInFailure.at > now - FAILURE_WINDOW)) or now
        return (oldest + FAILURE_WINDOW - now).total_seconds()

    def send_otp(self, email: str, address: str = "") -> str:
        self._send_limits.check(address)
        email = normalize_email(email)
        now = utcnow()
        code = security.new_otp_code()
        with self.db.write() as s:
            self._check_lockout(s, email, now)
            recent = list(s.scalars(
                select(OtpCode).where(OtpCode.email == email,
                                      OtpCode.created_at > now - dt.timedelta(hours=1))
                .order_by(OtpCode.created_at.desc())
            ))
            if recent:
                age = int((now - recent[0].created_at).total_seconds())
                wait = self.settings.otp_resend_cooldown_s - age
                if wait > 0:
                    raise rate_limited(f"a code was just sent; try again in {wait} s", wait)
            if len(recent) >= _MAX_CODES_PER_HOUR:
                raise rate_limited("too many codes requested for this address; try in an hour",
                                   3600)
            salt = security.new_salt()
            s.add(OtpCode(
                email=email, salt=salt,
                code_hash=security.otp_hash(self.settings.otp_key, email, code, salt),
                key_id=self._key_id,
                created_at=now, expires_at=now + dt.timedelta(seconds=self.settings.otp_ttl_s),
            ))
        how = self.mailer.send_code(email, code, max(1, self.settings.otp_ttl_s // 60))
        self.events.emit("otp_sent", f"sign-in code sent to {email}", None, email=email, via=how)
        return how

    def verify_otp(self, email: str, code: str, address: str = "") -> tuple[str, int]:
        """Check ``code``; returns (verification token, attempts left).

        A wrong code counts against the code (``OTP_MAX_ATTEMPTS``) and against the email
        (``SIGN_IN_FAILURES_PER_HOUR``, in the database); during a lockout even the right
        code is refused.
        """
        self._verify_limits.check(address)
        email = normalize_email(email)
        code = (code or "").strip()
        now = utcnow()
        failure: str | None = None
        with self.db.write() as s:
            # The row lock serializes the checks of one email across gateways (PostgreSQL),
            # so parallel guesses cannot overrun the counts.
            otp = s.scalars(
                select(OtpCode).where(OtpCode.email == email, OtpCode.consumed_at.is_(None))
                .order_by(OtpCode.created_at.desc()).limit(1).with_for_update()
            ).first()
            failures = self._check_lockout(s, email, now)
            if otp is None or otp.expires_at <= now:
                failure = "no valid code for this address: request a new one"
            elif otp.attempts >= self.settings.otp_max_attempts:
                failure = "too many wrong attempts: request a new code"
            elif otp.verified_at is not None:
                failure = "this code was already used: request a new one"
            elif otp.key_id and otp.key_id != self._key_id:
                # Not a guess: another gateway on this database hashed it with another key.
                log.error("a code for %s was issued by a gateway with another OTP key: "
                          "gateways sharing a database must share OTP_KEY", email)
                raise FailedPrecondition("this code was issued by another gateway that does "
                                         "not share this gateway's OTP key: request a new code")
            else:
                expected = security.otp_hash(self.settings.otp_key, email, code, otp.salt)
                if security.same_secret(expected, otp.code_hash):
                    token = security.new_token()
                    otp.verified_at = now
                    otp.verification_token_hash = security.token_hash(token)
                    return token, self.settings.otp_max_attempts - otp.attempts
                otp.attempts += 1
                s.add(SignInFailure(email=email, at=now, address=address[:200]))
                left = min(self.settings.otp_max_attempts - otp.attempts,
                           SIGN_IN_FAILURES_PER_HOUR - failures - 1)
                failure = f"wrong code ({left} attempt{'s' if left != 1 else ''} left)"
                if failures + 1 >= SIGN_IN_FAILURES_PER_HOUR:
                    s.flush()
                    wait = self._lockout_left(s, email, now)
                    failure = ("wrong code; too many wrong codes for this email: sign-in "
                               f"is locked; try again in {minutes(wait)}")
        self.events.emit("otp_failed", f"failed code check for {email}: {failure}", None,
                         email=email)
        raise PermissionDenied(failure)

    def _consume_verified(self, s: DbSession, email: str, verification_token: str) -> None:
        """Consume the code that ``verification_token`` proves was verified by this caller.

        Only the token binds: without it nothing is consumed, so whoever did not type the
        code cannot use it, however they time their call.
        """
        if not verification_token:
            raise InvalidArgument("verification_token is required: verify the code with "
                                  "VerifyOTP and pass the verification_token it returned")
        now = utcnow()
        otp = s.scalars(
            select(OtpCode)
            .where(OtpCode.email == email,
                   OtpCode.verification_token_hash == security.token_hash(verification_token),
                   OtpCode.verified_at.is_not(None), OtpCode.consumed_at.is_(None),
                   OtpCode.expires_at > now)
            .limit(1).with_for_update()).first()
        if otp is None:
            raise Unauthenticated("verification_token does not match a verified, unused code "
                                  "for this email: verify a fresh one-time code")
        # Guarded update: of two racing sign-ins with one token, exactly one wins.
        won = s.execute(
            update(OtpCode).where(OtpCode.id == otp.id, OtpCode.consumed_at.is_(None))
            .values(consumed_at=now)
        ).rowcount
        if won != 1:
            raise Unauthenticated("this code was already used: request a new one")

    # --- enrolment and sign-in ------------------------------------------------------

    @staticmethod
    def _device_name(device_name: str) -> str:
        name = (device_name or "").strip()
        if len(name) > MAX_DEVICE_NAME:
            raise InvalidArgument(f"device_name: at most {MAX_DEVICE_NAME} characters")
        return check_printable(name, "device_name")

    def enroll(self, email: str, full_name: str, verification_token: str = "",
               device_name: str = "", address: str = "") -> IssuedSession:
        email = normalize_email(email)
        full_name = (full_name or "").strip()
        if not full_name or len(full_name) > 200:
            raise InvalidArgument("a full name (1 to 200 characters) is required")
        check_printable(full_name, "full_name")
        device_name = self._device_name(device_name)
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
            issued = self._sign_in(s, user, device_name, address)
        self.events.emit("enrollment", f"{email} enrolled", issued.user_id, email=email)
        return issued

    def login(self, email: str, verification_token: str = "", device_name: str = "",
              address: str = "") -> IssuedSession:
        email = normalize_email(email)
        device_name = self._device_name(device_name)
        with self.db.write() as s:
            self._consume_verified(s, email, verification_token)
            user = s.scalars(select(User).where(User.email == email)).first()
            if user is None:
                raise NotFound(f"no account for {email}: enroll first")
            if not user.is_active:
                raise PermissionDenied("this account is disabled")
            user.last_login = utcnow()
            issued = self._sign_in(s, user, device_name, address)
        self.events.emit("login", f"{email} signed in", issued.user_id, email=email)
        return issued

    def _sign_in(self, s: DbSession, user: User, device_name: str,
                 address: str) -> IssuedSession:
        """A new device and its first session. Only a named device gets a refresh token;
        an unnamed one lives as long as its session, but is listed and can be ended too."""
        now = utcnow()
        refresh = security.new_token()
        renewable = bool(device_name)
        expires = now + dt.timedelta(seconds=self.settings.refresh_ttl_s if renewable
                                     else self.settings.session_ttl_s)
        device = Device(user_id=user.id, name=device_name, token_hash=security.token_hash(refresh),
                        created_at=now, last_used_at=now, last_address=address[:200],
                        expires_at=expires, previous_reuses=0)
        s.add(device)
        s.flush()
        return self._new_session(s, user, device, refresh if renewable else "")

    def _new_session(self, s: DbSession, user: User, device: Device,
                     refresh_token: str) -> IssuedSession:
        now = utcnow()
        token = security.new_token()
        expires = now + dt.timedelta(seconds=self.settings.session_ttl_s)
        s.add(Session(user_id=user.id, device_id=device.id,
                      token_hash=security.token_hash(token), created_at=now, expires_at=expires))
        return IssuedSession(user.id, token, expires, refresh_token, user.storage_allocated)

    # --- device refresh tokens ------------------------------------------------------

    def refresh(self, refresh_token: str, address: str = "") -> IssuedSession:
        """A new session for the device of ``refresh_token``, and the device's next token.

        The token rotates on every use. The token it replaced is accepted once more within
        ``REFRESH_REUSE_GRACE_S`` of the rotation (two processes sharing a keyring entry may
        both renew at once); that answer carries no new refresh token: the client keeps
        the one the other process stored. Any other reuse of a replaced token means two
        parties hold it, so the device and all its sessions end.
        """
        now = utcnow()
        presented = security.token_hash(refresh_token or "")
        reused = False
        with self.db.write() as s:
            device = s.scalars(select(Device).where(Device.token_hash == presented)
                               .with_for_update()).first()
            previous = device is None
            if previous:
                device = s.scalars(select(Device).where(Device.previous_token_hash == presented)
                                   .with_for_update()).first()
            if device is None or device.revoked_at is not None or device.expires_at <= now \
                    or not device.name:
                raise Unauthenticated("this device is signed out: sign in again")
            user = s.get(User, device.user_id)
            if user is None or not user.is_active:
                raise Unauthenticated("account unavailable: sign in again")
            new_refresh = ""
            if previous:
                rotated = device.rotated_at or now
                in_grace = (now - rotated).total_seconds() <= self.settings.refresh_reuse_grace_s
                if not in_grace or device.previous_reuses >= 1:
                    self._end_device(s, device, now)
                    reused = True
                else:
                    device.previous_reuses += 1
            else:
                new_refresh = security.new_token()
                device.previous_token_hash = device.token_hash
                device.token_hash = security.token_hash(new_refresh)
                device.rotated_at = now
                device.previous_reuses = 0
            if not reused:
                device.last_used_at = now
                device.last_address = address[:200]
                device.expires_at = now + dt.timedelta(seconds=self.settings.refresh_ttl_s)
                issued = self._new_session(s, user, device, new_refresh)
            device_id, user_id = device.id, device.user_id
        if reused:
            self.forget_device(device_id)
            self.events.emit("refresh_reuse", "a replaced refresh token was used again: the "
                             "device was signed out", user_id, device_id=device_id,
                             address=address)
            raise Unauthenticated("this refresh token was already used (a copy of it is in "
                                  "use elsewhere): the device is signed out; sign in again")
        return issued

    def _end_device(self, s: DbSession, device: Device, now: dt.datetime) -> int:
        """Revoke ``device`` and its live sessions; returns how many sessions ended."""
        if device.revoked_at is None:
            device.revoked_at = now
        return int(s.execute(
            update(Session).where(Session.device_id == device.id, Session.revoked_at.is_(None),
                                  Session.expires_at > now)
            .values(revoked_at=now)).rowcount or 0)

    # --- devices ----------------------------------------------------------------------

    def list_devices(self, caller: Caller) -> list[DeviceView]:
        """The caller's devices that can still be used (not ended, not expired)."""
        now = utcnow()
        with self.db.read() as s:
            rows = s.scalars(
                select(Device).where(Device.user_id == caller.user_id,
                                     Device.revoked_at.is_(None), Device.expires_at > now)
                .order_by(Device.last_used_at.desc(), Device.created_at.desc())).all()
            return [DeviceView(d.id, d.name, d.created_at, d.last_used_at, d.last_address or "",
                               d.expires_at, d.id == caller.device_id) for d in rows]

    def revoke_device(self, caller: Caller, device_id: str) -> int:
        """End one of the caller's devices and its live sessions now; returns the sessions
        ended. Another user's device (or none) is NOT_FOUND: nothing tells them apart."""
        now = utcnow()
        with self.db.write() as s:
            device = s.scalars(select(Device).where(
                Device.id == (device_id or "")[:36], Device.user_id == caller.user_id,
                Device.revoked_at.is_(None)).with_for_update()).first()
            if device is None:
                raise NotFound(f"no such device: {device_id[:40]!r}")
            ended = self._end_device(s, device, now)
        self.forget_device(device_id)
        self.events.emit("device_revoked", "a device was signed out", caller.user_id,
                         device_id=device_id, sessions=ended)
        return ended

    def logout(self, session_token: str, refresh_token: str = "") -> None:
        """End the session; with the refresh token (or for a device that has none) the
        device too. A refresh token ends its device even when the session is already gone
        (a user signing out after a day offline)."""
        self.forget_session(session_token)
        now = utcnow()
        ended: str | None = None
        with self.db.write() as s:
            sess = s.scalars(select(Session).where(
                Session.token_hash == security.token_hash(session_token or ""))).first()
            live = sess is not None and sess.revoked_at is None
            if sess is not None and live:
                sess.revoked_at = now
            device = s.get(Device, sess.device_id) if sess and sess.device_id else None
            if refresh_token:
                presented = security.token_hash(refresh_token)
                owner = [Device.user_id == sess.user_id] if sess is not None else []
                device = s.scalars(select(Device).where(
                    *owner, Device.revoked_at.is_(None),
                    (Device.token_hash == presented) | (Device.previous_token_hash == presented)
                )).first()
                if device is not None:
                    self._end_device(s, device, now)
                    ended = device.id
            elif device is not None and live and not device.name:
                self._end_device(s, device, now)
                ended = device.id
            if not live and ended is None:
                raise Unauthenticated("not signed in")
            user_id = sess.user_id if sess is not None else device.user_id  # type: ignore[union-attr]
            # The session's id (not its token) lets the other gateways drop it from their
            # caches when this event reaches them.
            session_id = {"session_id": sess.id} if sess is not None and live else {}
        if ended:
            self.forget_device(ended)
            self.events.emit("logout", "signed out (device ended)", user_id, device_id=ended,
                             **session_id)
        else:
            self.events.emit("logout", "signed out", user_id, **session_id)

    # --- per-request authentication -------------------------------------------------

    def authenticate(self, session_token: str) -> Caller:
        """The caller a session token belongs to.

        Every call authenticates, so a verified session is remembered for a few seconds
        (``SESSION_CACHE_S``): a burst of small operations costs one lookup, not one each. A
        logout or a device revocation on this gateway forgets it at once; a session or
        device ended on another gateway is forgotten when its event arrives (PostgreSQL
        relays it within about a second), and any other session change within the cache
        window.
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

    def forget_session_id(self, session_id: str) -> None:
        """Drop the cached session ``session_id`` (ended by a logout on another gateway)."""
        with self._sessions_lock:
            for key in [k for k, (c, _) in self._sessions.items() if c.session_id == session_id]:
                del self._sessions[key]

    def forget_device(self, device_id: str) -> None:
        """Drop the cached sessions of a device that was just ended."""
        with self._sessions_lock:
            for key in [k for k, (c, _) in self._sessions.items() if c.device_id == device_id]:
                del self._sessions[key]

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
                          sess.expires_at, sess.device_id or "", sess.id)


def active_sessions(s: DbSession) -> int:
    """Sessions of every user that are neither expired nor ended (logout, device revoked)."""
    live = select(func.count()).select_from(Session).where(
        Session.revoked_at.is_(None), Session.expires_at > utcnow())
    return int(s.scalar(live) or 0)
