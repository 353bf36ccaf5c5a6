"""``cloudgrpc enroll | login | logout | whoami | storage | devices``: the account, its
session and its devices.

Sign-in is SendOTP -> VerifyOTP -> Enroll/Login. The code is prompted on stdin (``--otp`` for
scripts); VerifyOTP's verification token is passed on to Enroll/Login by the client library.
The device name (this host) makes the gateway issue a refresh token, so the session kept in
the keyring outlives its 24 hours for the mount. ``devices`` lists every sign-in of the
account and ``devices revoke ID`` ends one at once.
"""

from __future__ import annotations

import argparse
import re
import socket
import sys
import time

from cloudgrpc_proto import errors
from cloudgrpc_proto.client import not_signed_in
from cloudgrpc_proto.display import printable

from .context import Context, UsageError
from .output import human_size

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
CODE_ATTEMPTS = 3


def _check_email(email: str) -> str:
    email = email.strip()
    if not EMAIL_RE.match(email):
        raise UsageError(f"not an email address: {email!r}")
    return email


def _send_code(ctx: Context, email: str, *, only_send: bool = False) -> None:
    """SendOTP. A refusal by the resend cooldown is fine when a prompt follows (the code sent
    before still works, unless it was used already: then the prompt's check says so).

    With ``--send-code`` (``only_send``) nothing follows that could tell a script no mail went
    out, so the cooldown refusal ends the command as RateLimited (exit 9), saying when to
    retry. Any other refusal (a sign-in lockout, too many requests from this address) ends the
    command with its "try again in N minutes" line either way.
    """
    ctx.out.note(f"Sending a code to {email}...")
    try:
        response = ctx.client.send_otp(email)
    except errors.RateLimited as exc:
        if "just sent" not in exc.message:
            raise
        if only_send:
            when = "" if "try again" in exc.message else "; try again in a minute"
            raise errors.RateLimited(f"no code sent: {exc.message}{when}") from exc
        ctx.out.warn(f"{exc.message}; use the code sent before")
        return
    if response.retry_after_seconds:
        ctx.out.note(f"A code was sent recently (a new one in {response.retry_after_seconds} s)")
    else:
        ctx.out.success(f"Code sent to {email}")


def _code_step(ctx: Context, args: argparse.Namespace, email: str) -> bool:
    """Send and verify the code; False when only sending was asked (``--send-code``).

    ``--otp CODE`` means "I already have this code" (from ``--send-code`` or an earlier
    prompt): sending again would replace it, so nothing is sent then.
    """
    if args.send_code and args.otp:
        raise UsageError("--send-code and --otp do not go together")
    if not args.otp:
        _send_code(ctx, email, only_send=args.send_code)
    if args.send_code:
        return False
    _verify(ctx, email, args.otp)
    return True


def _verify(ctx: Context, email: str, otp: str | None) -> None:
    """VerifyOTP with ``--otp`` or codes typed at the prompt (a few tries on a terminal)."""
    tries = 1 if otp or not sys.stdin.isatty() else CODE_ATTEMPTS
    for attempt in range(tries):
        code = otp or ctx.prompt(f"Enter the 6-digit code sent to {email}: ")
        code = code.strip().replace(" ", "")
        if not code:
            raise UsageError("no code given")
        try:
            response = ctx.client.verify_otp(email, code)
        except (errors.InvalidArgument, errors.PermissionDenied, errors.Unauthenticated) as exc:
            if attempt + 1 < tries:
                ctx.out.warn(exc.message)
                continue
            raise
        if response.verification_token or response.success:
            ctx.out.success("Code verified")
        return


def cmd_enroll(ctx: Context, args: argparse.Namespace) -> int:
    email = _check_email(args.email)
    if not _code_step(ctx, args, email):
        return 0
    response = ctx.client.enroll(email, args.name, device_name=socket.gethostname())
    allocated = (
        f" Allocated {human_size(response.storage_allocated)}."
        if response.storage_allocated
        else ""
    )
    ctx.out.success(f"Enrolled {args.name} <{email}>.{allocated}")
    _say_where_session_lives(ctx)
    return 0


def cmd_login(ctx: Context, args: argparse.Namespace) -> int:
    email = _check_email(args.email)
    if not _code_step(ctx, args, email):
        return 0
    ctx.client.login(email, device_name=socket.gethostname())
    ctx.out.success(f"Signed in as {email}")
    _say_where_session_lives(ctx)
    return 0


def _say_where_session_lives(ctx: Context) -> None:
    if ctx.store.is_plaintext:
        ctx.out.note(f"Session stored with {ctx.store.describe()}")


def cmd_logout(ctx: Context, args: argparse.Namespace) -> int:
    client = ctx.client
    if not client.signed_in:
        ctx.out.info("not signed in")
        return 0
    email = client.session.email
    try:
        client.logout()
    except errors.CloudError as exc:
        ctx.out.warn(f"the gateway was not told ({exc.message}); the local session is gone")
    ctx.store.clear()
    ctx.out.success(f"Signed out{f' {email}' if email else ''}")
    return 0


def _when(ts: int) -> str:
    if not ts:
        return "unknown"
    left = ts - time.time()
    stamp = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(ts))
    if left <= 0:
        return f"{stamp} (expired)"
    hours, rest = divmod(int(left), 3600)
    return f"{stamp} (in {hours} h {rest // 60} min)"


def cmd_whoami(ctx: Context, args: argparse.Namespace) -> int:
    stored = ctx.store.load()
    backend = ctx.store.describe()
    if stored is None or not stored.signed_in:
        if args.json:
            ctx.out.json({"signed_in": False, "server": ctx.target, "keyring": backend})
        raise errors.Unauthenticated(not_signed_in(ctx.target))
    who = ctx.client.whoami()  # validates (and if needed renews) the session
    session = ctx.client.session
    if args.json:
        ctx.out.json(
            {
                "signed_in": True,
                "email": who.email or session.email,
                "full_name": who.full_name,
                "user_id": who.user_id or session.user_id,
                "session_expires_at": who.session_expires_at or session.expires_at,
                "device_token": bool(session.refresh_token),
                "server": ctx.target,
                "keyring": backend,
            }
        )
        return 0
    name = f"{who.full_name} <{who.email}>" if who.full_name else who.email
    ctx.out.pairs(
        [
            ("user", name),
            ("user id", who.user_id or session.user_id),
            ("server", ctx.target),
            ("session expires", _when(who.session_expires_at or session.expires_at)),
            ("device token", "yes (renews the session)" if session.refresh_token else "no"),
            ("session stored in", backend),
        ],
    )
    return 0


def cmd_storage(ctx: Context, args: argparse.Namespace) -> int:
    info = ctx.signed_in_client().storage_info()
    if args.json:
        ctx.out.json(
            {
                "allocated_bytes": info.allocated_bytes,
                "used_bytes": info.used_bytes,
                "available_bytes": info.available_bytes,
                "usage_percentage": round(info.usage_percentage, 2),
                "file_count": info.file_count,
                "trash_bytes": info.trash_bytes,
                "chunk_size": info.chunk_size,
            }
        )
        return 0
    rows = [
        ("allocated", human_size(info.allocated_bytes)),
        ("used", f"{human_size(info.used_bytes)} ({info.usage_percentage:.1f}%)"),
        ("available", human_size(info.available_bytes)),
        ("files", str(info.file_count)),
    ]
    if info.trash_bytes:
        rows.append(("in the trash", human_size(info.trash_bytes)))
    ctx.out.pairs(rows)
    return 0


# -- devices -----------------------------------------------------------------------------------


def _stamp(ts: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else ""


def cmd_devices(ctx: Context, args: argparse.Namespace) -> int:
    """``devices`` lists the account's devices, ``devices revoke ID`` ends one.

    Exit status: 0 done, 4 no such device of yours, 7 not signed in, 12 gateway unreachable.
    """
    client = ctx.signed_in_client()
    if (args.action or "list") == "revoke":
        return _revoke_device(ctx, args.device_id)
    devices = list(client.list_devices().devices)
    if args.json:
        ctx.out.json([
            {
                "id": d.device_id,
                "name": d.name,
                "created_at": d.created_at,
                "last_used_at": d.last_used_at,
                "last_address": d.last_address,
                "expires_at": d.expires_at,
                "current": d.current,
            }
            for d in devices
        ])
        return 0
    if not devices:
        ctx.out.info("no devices")
        return 0
    rows = [
        (
            ("* " if d.current else "") + (printable(d.name) or "(no name)"),
            _stamp(d.created_at),
            _stamp(d.last_used_at),
            printable(d.last_address),
            _stamp(d.expires_at),
            d.device_id,
        )
        for d in devices
    ]
    ctx.out.table(("name", "signed in", "last used", "last address", "expires", "id"), rows)
    ctx.out.note("* = this device")
    return 0


def _revoke_device(ctx: Context, device_id: str) -> int:
    client = ctx.signed_in_client()
    device_id = device_id.strip()
    if not device_id:
        raise UsageError("devices revoke: a device ID is required (see cloudgrpc devices)")
    current = next((d.device_id for d in client.list_devices().devices if d.current), "")
    response = client.revoke_device(device_id)
    ended = response.sessions_ended
    ctx.out.success(f"Device {device_id} signed out "
                    f"({ended} session{'s' if ended != 1 else ''} ended)")
    if device_id == current:
        ctx.store.clear()
        ctx.out.note("that was this device: the local session is gone")
    return 0
