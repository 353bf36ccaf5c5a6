"""``CloudClient``: the one client library of the mount and of the file, payment and admin CLIs.

Everything a client needs to be a good citizen on the wire lives here once: a deadline on every
call, typed errors instead of ``grpc.RpcError`` (``errors.from_rpc_error``), bounded retries
with jittered backoff for idempotent calls only, transparent renewal of an expired session with
the device refresh token, and the streaming upload that sends chunk references instead of bytes
the server already holds (which is what makes uploads resumable and appends cheap).

Methods are thin and named after the RPCs in snake_case; they take plain Python values and
return the protobuf responses, so callers see the wire contract without wrapping.
"""

from __future__ import annotations

import contextvars
import dataclasses
import hashlib
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from enum import Enum
from typing import Any, BinaryIO, Generic, TypeVar

import grpc

from cloudgrpc_proto import cloud_storage_pb2 as pb
from cloudgrpc_proto import cloud_storage_pb2_grpc as pb_grpc
from cloudgrpc_proto import environment, errors
from cloudgrpc_proto.channel import default_target, open_channel
from cloudgrpc_proto.direct_reads import NodeReads, read_in_order
from cloudgrpc_proto.direct_writes import GRANT_MARGIN_S, NodeWrites, receipt_expiry
from cloudgrpc_proto.retry import RetryPolicy, status_code
from cloudgrpc_proto.session_store import Session, SessionStore
from cloudgrpc_proto.transfer import (
    ChunkPlanEntry,
    ChunkVerifier,
    Progress,
    UploadSource,
    UploadStats,
    Watchdog,
    guess_mime_type,
    hash_chunks,
    iter_payload,
)

__all__ = [
    "CloudClient",
    "Download",
    "ServerStream",
    "UploadStats",
    "NOT_SIGNED_IN",
    "not_signed_in",
    "SESSION_EXPIRED",
]

DEFAULT_TIMEOUT = 30.0
TRANSFER_TIMEOUT = 24 * 3600.0  # total deadline of a transfer; stalls are caught much sooner
FIND_CHUNKS_BATCH = 1000
# Whole-file downloads from this size on read the chunks from the nodes (two chunks: below
# that the two extra calls cost more than the gateway hop saves).
DIRECT_DOWNLOAD_MIN = 8 * 1024 * 1024
REFRESH_MARGIN_S = 60  # renew a session this long before the server would refuse it

NOT_SIGNED_IN = "not signed in: run cloudgrpc login EMAIL"


def not_signed_in(target: str) -> str:
    """NOT_SIGNED_IN naming the gateway: sessions are kept per address, so a typo in
    ``--server`` must not read like a lost session."""
    return f"not signed in to {target}: run cloudgrpc login EMAIL"

SESSION_EXPIRED = "session expired: run cloudgrpc login EMAIL"

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class SmallUpload:
    """One file of ``upload_small_files``: its whole content and where it goes."""

    data: bytes
    filename: str = ""
    parent_folder_id: str = ""
    overwrite_file_id: str = ""
    replace_existing: bool = False
    mime_type: str = ""
    mode: int = 0
    mtime_ns: int = 0
    expected_version: int = 0
    uid: int = 0
    gid: int = 0
    upload_id: str = ""
    parent_mtime_ns: int = 0  # the folder's mtime as the caller shows it (0 = now)
    rdev: int = 0  # a device entry's number (mode holds S_IFCHR or S_IFBLK)


class Auth(Enum):
    """Whether a call carries the session token."""

    NONE = "none"  # sign-in calls, admin calls (admin key instead)
    OPTIONAL = "optional"  # public data that a session may personalise (tiers)
    REQUIRED = "required"


_SUCCESS_HINTS: tuple[tuple[tuple[str, ...], type[errors.CloudError]], ...] = (
    (("not found", "no such", "does not exist"), errors.NotFound),
    (("already exists", "already enrolled", "already registered"), errors.AlreadyExists),
    (("quota", "insufficient storage", "not enough storage"), errors.QuotaExceeded),
    (("too many", "wait "), errors.RateLimited),
    (("session", "not authenticated", "sign in", "log in", "login"), errors.Unauthenticated),
    (("permission", "not allowed", "forbidden", "admin key"), errors.PermissionDenied),
    (("invalid", "expired", "must "), errors.InvalidArgument),
)


# The origin a call is made for (gRPC metadata ``x-cloudgrpc-origin``): a mount sets it to
# its own id around the calls it makes and on its WatchChanges stream, and the gateway then
# does not echo those calls' changes back to it. Unset, nothing is sent.
CALL_ORIGIN: contextvars.ContextVar[str] = contextvars.ContextVar("cloudgrpc_call_origin",
                                                                  default="")


def _origin_metadata() -> tuple[tuple[str, str], ...] | None:
    origin = CALL_ORIGIN.get()
    return (("x-cloudgrpc-origin", origin),) if origin else None


# An upload's session also travels in the call's metadata: the gateway then knows the
# account before the first message and need not give the stream a pre-authentication slot.
SESSION_HEADER = "x-cloudgrpc-session"


def _session_metadata(session_token: str) -> tuple[tuple[str, str], ...] | None:
    pairs = (*(_origin_metadata() or ()), *(((SESSION_HEADER, session_token),)
                                            if session_token else ()))
    return pairs or None


def _has_refs(plan: list[ChunkPlanEntry] | None) -> bool:
    """Whether an upload plan references any chunk instead of sending its bytes."""
    return plan is not None and any(entry.send_ref for entry in plan)


def _check_success(response: T) -> T:
    """Turn a seed-style ``success: false`` answer into the typed error.

    Our gateway reports failures as gRPC status codes; the seed's answered OK with
    ``success=false`` and a message. Accepting both keeps the client honest either way.
    """
    descriptor = getattr(response, "DESCRIPTOR", None)
    if descriptor is None or "success" not in descriptor.fields_by_name:
        return response
    if getattr(response, "success", True):
        return response
    message = str(getattr(response, "message", "") or "request failed")
    lowered = message.lower()
    for needles, cls in _SUCCESS_HINTS:
        if any(n in lowered for n in needles):
            raise cls(message)
    raise errors.CloudError(message)


class ServerStream(Generic[T]):
    """A server-streaming call: iterate it for messages, ``cancel()`` it from any thread.

    Errors come out as typed errors; a cancel by the caller simply ends the iteration.
    """

    def __init__(self, call: Any) -> None:
        self._call = call
        self._cancelled = False

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        try:
            return next(self._call)
        except grpc.RpcError as exc:
            if self._cancelled or status_code(exc) == grpc.StatusCode.CANCELLED:
                raise StopIteration from None
            raise errors.from_rpc_error(exc) from None

    def cancel(self) -> None:
        self._cancelled = True
        self._call.cancel()

    def __enter__(self) -> ServerStream[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()


class _Stubs:
    def __init__(self, channel: grpc.Channel) -> None:
        self.auth = pb_grpc.AuthServiceStub(channel)
        self.file = pb_grpc.FileServiceStub(channel)
        self.storage = pb_grpc.StorageServiceStub(channel)
        self.payment = pb_grpc.PaymentServiceStub(channel)
        self.admin = pb_grpc.AdminServiceStub(channel)


class CloudClient:
    """A connection to one gateway, acting for (at most) one signed-in user.

    Thread-safe: the mount calls it from many worker threads and the file CLI uploads files
    in parallel; the channel is shared and a session refresh happens once for all of them.
    """

    def __init__(
        self,
        target: str | None = None,
        *,
        channel: grpc.Channel | None = None,
        session: Session | None = None,
        session_token: str = "",
        refresh_token: str = "",
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        tls_ca: str | None = None,
        admin_key: str | None = None,
        on_tokens_changed: Callable[[Session], None] | None = None,
        device_name: str | None = None,
        stall_timeout: float | None = None,
        transfer_timeout: float = TRANSFER_TIMEOUT,
    ) -> None:
        self.target = default_target(target)
        self._own_channel = channel is None
        self.channel = channel if channel is not None else open_channel(self.target, tls_ca=tls_ca)
        self._stubs = _Stubs(self.channel)
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.stall_timeout = stall_timeout if stall_timeout is not None else timeout
        self.transfer_timeout = transfer_timeout
        self.admin_key = admin_key
        self.device_name = device_name
        self.on_tokens_changed = on_tokens_changed
        self.session_store: SessionStore | None = None
        base = dataclasses.replace(session) if session else Session()
        if session_token:
            base.session_token = session_token
        if refresh_token:
            base.refresh_token = refresh_token
        self._session = base
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._verification: dict[str, str] = {}
        self._chunk_size: int | None = None
        # Direct writes (``direct_writes``): chunk bytes to the nodes under the gateway's
        # grants; off for good once the gateway says it takes bytes only in the stream.
        self.direct_writes = environment.get_bool("CLOUDGRPC_DIRECT_WRITES", True)
        # Direct reads (``direct_reads``): a whole-file download of a file larger than
        # DIRECT_DOWNLOAD_MIN takes its chunks from the nodes with the gateway's read tokens.
        self.direct_reads = environment.get_bool("CLOUDGRPC_DIRECT_READS", True)
        self.node_reads: NodeReads | None = None  # shared channels to the nodes
        self._writes: NodeWrites | None = None

    # -- construction helpers ------------------------------------------------------------

    @classmethod
    def from_session_store(
        cls, target: str | None = None, *, store: SessionStore | None = None, **kwargs: Any
    ) -> CloudClient:
        """A client carrying the session kept in the keyring for ``target``.

        Renewed tokens are written back to the keyring, so the mount and the CLI keep
        sharing one session however long the mount lives.
        """
        address = default_target(target)
        store = store or SessionStore(address)
        loaded = store.load() or Session()

        def persist(session: Session) -> None:
            if session.signed_in:
                store.save(session)
            else:
                store.clear()

        kwargs.setdefault("on_tokens_changed", persist)
        client = cls(address, session=loaded, **kwargs)
        client.session_store = store
        return client

    def close(self) -> None:
        if self._writes is not None:
            self._writes.close()
        if self._own_channel:
            self.channel.close()

    def __enter__(self) -> CloudClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- session -------------------------------------------------------------------------

    @property
    def session(self) -> Session:
        """A copy of the current session (tokens included: do not log it)."""
        with self._lock:
            return dataclasses.replace(self._session)

    @property
    def session_token(self) -> str:
        return self._session.session_token

    @property
    def refresh_token(self) -> str:
        return self._session.refresh_token

    @property
    def signed_in(self) -> bool:
        return self._session.signed_in

    def set_session(self, session: Session, *, notify: bool = False) -> None:
        with self._lock:
            self._session = dataclasses.replace(session)
        if notify:
            self._notify()

    def _notify(self) -> None:
        if self.on_tokens_changed is not None:
            self.on_tokens_changed(self.session)

    def _adopt(self, *, email: str | None = None, notify: bool = True, **fields: Any) -> None:
        with self._lock:
            updated = dataclasses.replace(self._session)
            if email is not None:
                updated.email = email
            for key, value in fields.items():
                if value not in (None, ""):
                    setattr(updated, key, value)
            self._session = updated
        if notify:
            self._notify()

    def _stored_session(self) -> Session | None:
        """The keyring's session when it belongs to the same user as ours, else None."""
        if self.session_store is None:
            return None
        try:
            stored = self.session_store.load()
        except Exception:  # noqa: BLE001 - an unreadable keyring: renew with what we hold
            return None
        mine = self._session.user_id
        if stored is None or not stored.user_id or not mine or stored.user_id != mine:
            return None
        return stored

    def _sync_from_store(self, stale_token: str) -> bool:
        """Take the tokens another process (the mount, another CLI) renewed into the keyring.

        The refresh token rotates on every use and a replaced one must not be used again
        (the gateway would end the device), so before renewing we re-read the keyring: if
        another process sharing it rotated the token, we adopt its tokens. True when its
        session is fresh, so no renewal is needed at all.
        """
        stored = self._stored_session()
        if stored is None or not stored.refresh_token or \
                stored.refresh_token == self._session.refresh_token:
            return False
        with self._lock:
            self._session = dataclasses.replace(stored)
        return bool(stored.session_token and stored.session_token != stale_token
                    and (not stored.expires_at
                         or stored.expires_at - REFRESH_MARGIN_S > time.time()))

    def _keyring_has_other_user(self) -> bool:
        """True when someone else signed in to the keyring since we loaded it: a renewal of
        ours must not overwrite their session."""
        if self.session_store is None:
            return False
        try:
            stored = self.session_store.load()
        except Exception:  # noqa: BLE001 - unreadable: the write will report it
            return False
        mine = self._session.user_id
        return bool(stored and stored.user_id and mine and stored.user_id != mine)

    def _token_for_call(self, auth: Auth) -> str:
        if auth is Auth.NONE:
            return ""
        session = self._session
        stale = session.expires_at and session.expires_at - REFRESH_MARGIN_S < time.time()
        if (not session.session_token or stale) and session.refresh_token:
            self._refresh(session.session_token)
            return self._session.session_token
        if auth is Auth.REQUIRED and not session.session_token:
            raise errors.Unauthenticated(not_signed_in(self.target))
        return session.session_token

    def _refresh(self, stale_token: str) -> None:
        """Trade the refresh token for a new session, once for all threads that hit expiry.

        The gateway answers a new refresh token each time (rotation); it is written back to
        the keyring at once so the other processes sharing it (the mount, the CLI) pick it
        up instead of reusing the replaced one.
        """
        with self._refresh_lock:
            current = self._session
            if current.session_token and current.session_token != stale_token:
                return  # another thread renewed it meanwhile
            if self._sync_from_store(stale_token):
                return  # another process renewed it meanwhile
            current = self._session
            if not current.refresh_token:
                raise errors.Unauthenticated(SESSION_EXPIRED)
            try:
                response = self._stubs.auth.RefreshSession(
                    pb.RefreshSessionRequest(refresh_token=current.refresh_token),
                    timeout=self.timeout,
                )
            except grpc.RpcError as exc:
                error = errors.from_rpc_error(exc)
                if isinstance(error, errors.Unauthenticated | errors.PermissionDenied):
                    raise errors.Unauthenticated(SESSION_EXPIRED) from None
                raise error from None
            if not response.success or not response.session_token:
                raise errors.Unauthenticated(SESSION_EXPIRED)
            if not response.refresh_token:
                # Our token had just been rotated by another process sharing the keyring
                # (the gateway's grace answer): keep the new session in memory only and
                # take the rotated token that process stored.
                self._adopt(session_token=response.session_token,
                            expires_at=response.expires_at, notify=False)
                stored = self._stored_session()
                if stored is not None and stored.refresh_token:
                    self._adopt(refresh_token=stored.refresh_token, notify=False)
                return
            self._adopt(
                session_token=response.session_token,
                refresh_token=response.refresh_token,
                expires_at=response.expires_at,
                user_id=response.user_id,
                notify=not self._keyring_has_other_user(),
            )

    # -- the call machinery ----------------------------------------------------------------

    def _unary(
        self,
        rpc: Callable[..., Any],
        build: Callable[[str], Any],
        *,
        idempotent: bool,
        auth: Auth = Auth.REQUIRED,
        timeout: float | None = None,
        check: bool = True,
    ) -> Any:
        """Call ``rpc`` with the request ``build(session_token)`` makes.

        The request is rebuilt for each try so a retry after a refresh carries the new token.
        """
        retries = 0
        refreshed = False
        while True:
            token = self._token_for_call(auth)
            try:
                response = rpc(build(token), timeout=timeout or self.timeout,
                               metadata=_origin_metadata())
            except grpc.RpcError as exc:
                code = status_code(exc)
                if (
                    code == grpc.StatusCode.UNAUTHENTICATED
                    and auth is not Auth.NONE
                    and not refreshed
                    and self._session.refresh_token
                ):
                    refreshed = True
                    self._refresh(token)
                    continue
                if idempotent and self.retry.should_retry(code, retries + 1):
                    self.retry.sleep(retries)
                    retries += 1
                    continue
                raise errors.from_rpc_error(exc) from None
            return _check_success(response) if check else response

    def _admin_key(self, admin_key: str | None) -> str:
        key = admin_key or self.admin_key or environment.get_str("ADMIN_KEY", "")
        if not key:
            raise errors.PermissionDenied("no admin key: pass --admin-key or set ADMIN_KEY")
        return key

    # -- authentication ------------------------------------------------------------------

    def send_otp(self, email: str) -> pb.SendOTPResponse:
        """Ask for a code by mail. Not retried: a retry could send a second mail."""
        return self._unary(
            self._stubs.auth.SendOTP,
            lambda _t: pb.SendOTPRequest(email=email),
            idempotent=False,
            auth=Auth.NONE,
        )

    def verify_otp(self, email: str, otp: str) -> pb.VerifyOTPResponse:
        """Check the code; the one-time verification token is kept for the next enroll/login."""
        response = self._unary(
            self._stubs.auth.VerifyOTP,
            lambda _t: pb.VerifyOTPRequest(email=email, otp=otp.strip()),
            idempotent=False,
            auth=Auth.NONE,
        )
        if response.verification_token:
            with self._lock:
                self._verification[email.lower()] = response.verification_token
        return response

    def _take_verification(self, email: str, explicit: str | None) -> str:
        with self._lock:
            kept = self._verification.pop(email.lower(), "")
        return explicit if explicit is not None else kept

    def _device(self, device_name: str | None) -> str:
        if device_name is not None:
            return device_name
        if self.device_name is not None:
            return self.device_name
        return socket.gethostname()

    def enroll(
        self,
        email: str,
        full_name: str,
        *,
        verification_token: str | None = None,
        device_name: str | None = None,
    ) -> pb.EnrollResponse:
        """Create the account after ``verify_otp``; the new session becomes this client's."""
        token = self._take_verification(email, verification_token)
        device = self._device(device_name)
        response = self._unary(
            self._stubs.auth.Enroll,
            lambda _t: pb.EnrollRequest(
                email=email, full_name=full_name, verification_token=token, device_name=device
            ),
            idempotent=False,
            auth=Auth.NONE,
        )
        self._adopt_login(email, response)
        return response

    def login(
        self,
        email: str,
        *,
        verification_token: str | None = None,
        device_name: str | None = None,
    ) -> pb.LoginResponse:
        """Sign in after ``verify_otp``; with a device name the gateway issues a refresh token."""
        token = self._take_verification(email, verification_token)
        device = self._device(device_name)
        response = self._unary(
            self._stubs.auth.Login,
            lambda _t: pb.LoginRequest(email=email, verification_token=token, device_name=device),
            idempotent=False,
            auth=Auth.NONE,
        )
        self._adopt_login(email, response)
        return response

    def _adopt_login(self, email: str, response: Any) -> None:
        if not response.session_token:
            return
        with self._lock:
            self._session = Session(
                email=email,
                user_id=response.user_id,
                session_token=response.session_token,
                refresh_token=response.refresh_token,
                expires_at=int(response.expires_at),
            )
        self._notify()

    def logout(self, *, forget_device: bool = True) -> pb.LogoutResponse:
        """End the session on the server (and the device token), then forget it locally.

        The local session is forgotten even when the server cannot be told, so a user who
        signs out on a plane is signed out.
        """
        session = self.session
        try:
            return self._unary(
                self._stubs.auth.Logout,
                lambda _t: pb.LogoutRequest(
                    session_token=session.session_token,
                    refresh_token=session.refresh_token if forget_device else "",
                ),
                idempotent=True,
                auth=Auth.NONE,
            )
        finally:
            with self._lock:
                self._session = Session(email=session.email)
            self._notify()

    def whoami(self) -> pb.WhoAmIResponse:
        return self._unary(
            self._stubs.auth.WhoAmI,
            lambda t: pb.WhoAmIRequest(session_token=t),
            idempotent=True,
        )

    def refresh(self) -> Session:
        """Renew the session now with the refresh token; returns the new session."""
        self._refresh(self._session.session_token)
        return self.session

    def list_devices(self) -> pb.ListDevicesResponse:
        """The account's signed-in devices (``current`` marks this client's own)."""
        return self._unary(
            self._stubs.auth.ListDevices,
            lambda t: pb.ListDevicesRequest(session_token=t),
            idempotent=True,
        )

    def revoke_device(self, device_id: str) -> pb.RevokeDeviceResponse:
        """End one of the account's devices and its live sessions now."""
        return self._unary(
            self._stubs.auth.RevokeDevice,
            lambda t: pb.RevokeDeviceRequest(session_token=t, device_id=device_id),
            idempotent=True,
        )

    # -- files and folders ---------------------------------------------------------------

    def list_files(
        self, folder_id: str = "", path: str = "", include_deleted: bool = False
    ) -> pb.ListFilesResponse:
        return self._unary(
            self._stubs.file.ListFiles,
            lambda t: pb.ListFilesRequest(
                session_token=t, folder_id=folder_id, path=path, include_deleted=include_deleted
            ),
            idempotent=True,
        )

    def stat(
        self, entry_id: str = "", path: str = "", parent_folder_id: str = "", name: str = ""
    ) -> pb.EntryResponse:
        """One entry by id, by path from the account root, or by name in a folder."""
        return self._unary(
            self._stubs.file.StatEntry,
            lambda t: pb.StatEntryRequest(
                session_token=t,
                entry_id=entry_id,
                path=path,
                parent_folder_id=parent_folder_id,
                name=name,
            ),
            idempotent=True,
        )

    def create_folder(
        self,
        name: str,
        parent_folder_id: str = "",
        *,
        mode: int = 0,
        uid: int = 0,
        gid: int = 0,
        exist_ok: bool = False,
        folder_id: str = "",
    ) -> pb.EntryResponse:
        """Create a folder; with ``exist_ok`` or a ``folder_id`` of the caller's choosing it
        is idempotent and retried like a read."""
        return self._unary(
            self._stubs.file.CreateFolder,
            lambda t: pb.CreateFolderRequest(
                session_token=t,
                name=name,
                parent_folder_id=parent_folder_id,
                mode=mode,
                uid=uid,
                gid=gid,
                exist_ok=exist_ok,
                folder_id=folder_id,
            ),
            idempotent=exist_ok or bool(folder_id),
        )

    def delete_folder(
        self, folder_id: str, *, recursive: bool = False, permanent: bool = False
    ) -> pb.DeleteFileResponse:
        return self._unary(
            self._stubs.file.DeleteFolder,
            lambda t: pb.DeleteFolderRequest(
                session_token=t, folder_id=folder_id, recursive=recursive, permanent=permanent
            ),
            idempotent=False,
        )

    def move_entry(
        self,
        entry_id: str,
        new_parent_folder_id: str = "",
        new_name: str = "",
        *,
        replace_existing: bool = False,
        old_parent_folder_id: str = "",
        old_name: str = "",
    ) -> pb.EntryResponse:
        """Move or rename; ``old_parent_folder_id``/``old_name`` pick which name of a file
        with several (hard links) moves."""
        return self._unary(
            self._stubs.file.MoveEntry,
            lambda t: pb.MoveEntryRequest(
                session_token=t,
                entry_id=entry_id,
                new_parent_folder_id=new_parent_folder_id,
                new_name=new_name,
                replace_existing=replace_existing,
                old_parent_folder_id=old_parent_folder_id,
                old_name=old_name,
            ),
            idempotent=False,
        )

    def set_attributes(
        self,
        entry_id: str,
        *,
        mode: int | None = None,
        uid: int | None = None,
        gid: int | None = None,
        atime_ns: int | None = None,
        mtime_ns: int | None = None,
        size: int | None = None,
    ) -> pb.EntryResponse:
        """Set absolute attribute values: doing it twice is harmless, so it is retried."""
        fields = {
            k: v
            for k, v in {
                "mode": mode,
                "uid": uid,
                "gid": gid,
                "atime_ns": atime_ns,
                "mtime_ns": mtime_ns,
                "size": size,
            }.items()
            if v is not None
        }
        return self._unary(
            self._stubs.file.SetAttributes,
            lambda t: pb.SetAttributesRequest(session_token=t, entry_id=entry_id, **fields),
            idempotent=True,
        )

    def create_symlink(
        self, parent_folder_id: str, name: str, target: str, *, uid: int = 0, gid: int = 0
    ) -> pb.EntryResponse:
        return self._unary(
            self._stubs.file.CreateSymlink,
            lambda t: pb.CreateSymlinkRequest(
                session_token=t,
                parent_folder_id=parent_folder_id,
                name=name,
                target=target,
                uid=uid,
                gid=gid,
            ),
            idempotent=False,
        )

    def delete_file(self, file_id: str, *, permanent: bool = False, parent_folder_id: str = "",
                    name: str = "") -> pb.DeleteFileResponse:
        """To the trash (or away); with ``name`` only that name of a file with several."""
        return self._unary(
            self._stubs.file.DeleteFile,
            lambda t: pb.DeleteFileRequest(session_token=t, file_id=file_id, permanent=permanent,
                                           parent_folder_id=parent_folder_id, name=name),
            idempotent=False,
        )

    def link_file(self, file_id: str, parent_folder_id: str, name: str) -> pb.EntryResponse:
        """A further name (hard link) for one of the caller's own files."""
        return self._unary(
            self._stubs.file.LinkFile,
            lambda t: pb.LinkFileRequest(session_token=t, file_id=file_id,
                                         parent_folder_id=parent_folder_id, name=name),
            idempotent=False,
        )

    def apply_folder_changes(self, changes: list[pb.FolderChange]
                             ) -> list[pb.EntryResponse | errors.CloudError]:
        """Queued folder changes (creates and moves, at most 256) in one call, in order:
        each one's entry or error. Fewer results than changes: the gateway stopped at a
        passing error (the last result) and did not apply the rest. NotImplementedYet from
        a gateway without the call: send them one by one. Not retried here (a move is not
        idempotent); the caller retries what is left."""
        reply = self._unary(
            self._stubs.file.ApplyFolderChanges,
            lambda t: pb.ApplyFolderChangesRequest(session_token=t, changes=changes),
            idempotent=False,
        )
        return [r.entry if not r.error_code
                else errors.from_code_name(r.error_code, r.error_message)
                for r in reply.results]

    def delete_files(
        self, file_ids: Iterable[str], *, permanent: bool = False
    ) -> dict[str, errors.CloudError | None]:
        """Delete many files in one call (at most 1000): each id's error, None = done.

        Retried like a read after UNAVAILABLE/DEADLINE_EXCEEDED: if a lost reply's batch was
        in fact applied, the retry answers NotFound ("already in the trash") for those ids,
        which is what a caller that only wants them gone treats as done.
        """
        ids = list(file_ids)
        reply = self._unary(
            self._stubs.file.DeleteFiles,
            lambda t: pb.DeleteFilesRequest(session_token=t, file_ids=ids, permanent=permanent),
            idempotent=True,
        )
        return {
            r.file_id: None if r.success else errors.from_code_name(r.error_code,
                                                                    r.error_message)
            for r in reply.results
        }

    def restore_file(
        self, file_id: str, *, new_parent_folder_id: str = "", new_name: str = ""
    ) -> pb.EntryResponse:
        return self._unary(
            self._stubs.file.RestoreFile,
            lambda t: pb.RestoreFileRequest(
                session_token=t,
                file_id=file_id,
                new_parent_folder_id=new_parent_folder_id,
                new_name=new_name,
            ),
            idempotent=False,
        )

    def list_trash(self) -> pb.ListFilesResponse:
        return self._unary(
            self._stubs.file.ListTrash,
            lambda t: pb.ListTrashRequest(session_token=t),
            idempotent=True,
        )

    def empty_trash(self, entry_ids: Iterable[str] = ()) -> pb.EmptyTrashResponse:
        ids = list(entry_ids)
        return self._unary(
            self._stubs.file.EmptyTrash,
            lambda t: pb.EmptyTrashRequest(session_token=t, entry_ids=ids),
            idempotent=False,
        )

    def share_file(
        self, file_id: str, email: str, permission: str = "read"
    ) -> pb.ShareFileResponse:
        return self._unary(
            self._stubs.file.ShareFile,
            lambda t: pb.ShareFileRequest(
                session_token=t, file_id=file_id, share_with_email=email, permission=permission
            ),
            idempotent=False,
        )

    def list_shares(self, file_id: str = "") -> pb.ListSharesResponse:
        return self._unary(
            self._stubs.file.ListShares,
            lambda t: pb.ListSharesRequest(session_token=t, file_id=file_id),
            idempotent=True,
        )

    def revoke_share(
        self, share_id: str = "", *, file_id: str = "", shared_with_email: str = ""
    ) -> pb.RevokeShareResponse:
        return self._unary(
            self._stubs.file.RevokeShare,
            lambda t: pb.RevokeShareRequest(
                session_token=t,
                share_id=share_id,
                file_id=file_id,
                shared_with_email=shared_with_email,
            ),
            idempotent=False,
        )

    def list_shared_with_me(self) -> pb.ListFilesResponse:
        return self._unary(
            self._stubs.file.ListSharedWithMe,
            lambda t: pb.ListSharedWithMeRequest(session_token=t),
            idempotent=True,
        )

    def find_chunks(self, hashes: Iterable[str]) -> pb.FindChunksResponse:
        wanted = list(hashes)
        return self._unary(
            self._stubs.file.FindChunks,
            lambda t: pb.FindChunksRequest(session_token=t, sha256=wanted),
            idempotent=True,
        )

    def get_file_chunks(self, file_id: str, with_sources: bool = False
                        ) -> pb.GetFileChunksResponse:
        """The file's chunk list; ``with_sources`` adds node addresses and read tokens
        (``cloudgrpc_proto.direct_reads``) when the gateway offers direct reads."""
        return self._unary(
            self._stubs.file.GetFileChunks,
            lambda t: pb.GetFileChunksRequest(session_token=t, file_id=file_id,
                                              with_sources=with_sources),
            idempotent=True,
        )

    def download_small_files(
        self, file_ids: Iterable[str], max_file_size: int = 0
    ) -> ServerStream[pb.SmallFileContent]:
        """The whole content of many small files in one call (DownloadSmallFiles).

        Iterate for one ``SmallFileContent`` per file id (``error`` set instead of ``data``
        when that file could not be read, is a symlink or is larger than ``max_file_size``;
        0 = the gateway's default of 1 MiB).
        """
        token = self._token_for_call(Auth.REQUIRED)
        call = self._stubs.file.DownloadSmallFiles(
            pb.DownloadSmallFilesRequest(
                session_token=token, file_ids=list(file_ids), max_file_size=max_file_size
            ),
            timeout=self.transfer_timeout,
        )
        return ServerStream(call)

    def upload_small_files(
        self, files: Iterable[SmallUpload]
    ) -> list[pb.UploadFileResponse | errors.CloudError]:
        """Upload many small files in one call (UploadSmallFiles): one answer per file.

        Each file's answer is its ``UploadFileResponse``, or the typed error that refused
        that file alone (a name taken, quota, a changed version...); a failure of the call
        itself (gateway down, session) raises. Not retried: a retry after a lost answer
        could find its own files already there; callers with a queue retry per file.
        """
        items = [
            pb.SmallFileUpload(
                metadata=pb.FileMetadata(
                    filename=f.filename,
                    file_size=len(f.data),
                    mime_type=f.mime_type or guess_mime_type(f.filename),
                    parent_folder_id=f.parent_folder_id,
                    overwrite_file_id=f.overwrite_file_id,
                    replace_existing=f.replace_existing,
                    mode=f.mode,
                    mtime_ns=f.mtime_ns,
                    expected_version=f.expected_version,
                    uid=f.uid,
                    gid=f.gid,
                    upload_id=f.upload_id,
                    parent_mtime_ns=f.parent_mtime_ns,
                    rdev=f.rdev,
                ),
                data=f.data,
            )
            for f in files
        ]
        response = self._unary(
            self._stubs.file.UploadSmallFiles,
            lambda t: pb.UploadSmallFilesRequest(session_token=t, files=items),
            idempotent=False,
            timeout=self.transfer_timeout,
            check=False,
        )
        return [
            r.upload if not r.error_code
            else errors.from_status(getattr(grpc.StatusCode, r.error_code,
                                            grpc.StatusCode.UNKNOWN), r.error)
            for r in response.results
        ]

    def watch_changes(self, *, timeout: float | None = None) -> ServerStream[pb.ChangeEvent]:
        """Subscribe to the change feed of the caller's tree.

        Long-lived: no deadline unless ``timeout`` is given; keepalive notices a dead gateway
        and the iteration then raises ``Unavailable``, so the subscriber can re-subscribe.
        """
        token = self._token_for_call(Auth.REQUIRED)
        call = self._stubs.file.WatchChanges(
            pb.WatchChangesRequest(session_token=token),
            timeout=timeout,
            metadata=_origin_metadata(),
        )
        return ServerStream(call)

    # -- storage -------------------------------------------------------------------------

    def storage_info(self) -> pb.StorageInfoResponse:
        response = self._unary(
            self._stubs.storage.GetStorageInfo,
            lambda t: pb.StorageInfoRequest(session_token=t),
            idempotent=True,
        )
        if response.chunk_size:
            self._chunk_size = int(response.chunk_size)
        return response

    def chunk_size(self) -> int:
        """The gateway's CHUNK_SIZE (cached after the first ask; 0 when it does not say)."""
        if self._chunk_size is None:
            self._chunk_size = int(self.storage_info().chunk_size or 0)
        return self._chunk_size

    # -- uploads -------------------------------------------------------------------------

    def upload(
        self,
        source: BinaryIO | str | Any,
        *,
        filename: str = "",
        parent_folder_id: str = "",
        file_size: int | None = None,
        mime_type: str | None = None,
        overwrite_file_id: str = "",
        replace_existing: bool = False,
        mode: int = 0,
        mtime_ns: int = 0,
        expected_version: int = 0,
        uid: int = 0,
        gid: int = 0,
        progress: Progress | None = None,
        known_chunks: bool = True,
        upload_id: str = "",
        stats: UploadStats | None = None,
        parent_mtime_ns: int = 0,
        rdev: int = 0,
        ahead: dict[str, list[pb.ChunkReceipt]] | None = None,
        hashed: dict[int, str] | None = None,
    ) -> pb.UploadFileResponse:
        """Stream a file to the gateway: metadata first, then 1 MiB data messages.

        With ``known_chunks`` every whole chunk the server already holds (FindChunks) is sent
        as a ``chunk_ref`` instead of its bytes; re-running an interrupted upload therefore
        only sends what is missing, and an appended file only its changed tail.
        ``progress`` gets the number of bytes newly done (sent or referenced) as they go;
        ``stats`` (optional) is filled with what actually travelled. ``ahead``: receipts
        of chunks already written to the nodes for this ``upload_id`` (``write_ahead``),
        by hash; a chunk whose content changed since simply has another hash. ``hashed``:
        SHA-256 of whole chunks by offset that the caller vouches for (write-behind hashed
        them and no write touched them since): not read again to plan the upload.
        """
        src = UploadSource.open(source, filename, file_size)
        stats = stats if stats is not None else UploadStats()
        try:
            plan = (self._plan_known_chunks(src, stats, hashed, set(ahead or ()))
                    if known_chunks and src.size else None)
            report = _HighWater(progress)
            refreshed = False
            while True:
                token = self._token_for_call(Auth.REQUIRED)
                metadata = pb.FileMetadata(
                    session_token=token,
                    filename=src.filename,
                    file_size=src.size,
                    mime_type=mime_type or guess_mime_type(src.filename),
                    parent_folder_id=parent_folder_id,
                    overwrite_file_id=overwrite_file_id,
                    replace_existing=replace_existing,
                    mode=mode,
                    mtime_ns=mtime_ns,
                    expected_version=expected_version,
                    uid=uid,
                    gid=gid,
                    upload_id=upload_id or str(uuid.uuid4()),
                    parent_mtime_ns=parent_mtime_ns,
                    rdev=rdev,
                )
                attempt_stats = UploadStats(chunk_size=stats.chunk_size, present=stats.present)
                try:
                    response = self._stream_upload(metadata, src, plan, attempt_stats, report,
                                                   ahead)
                except grpc.RpcError as exc:
                    if (
                        status_code(exc) == grpc.StatusCode.UNAUTHENTICATED
                        and not refreshed
                        and self._session.refresh_token
                    ):
                        refreshed = True
                        self._refresh(token)
                        report.restart()
                        continue
                    error = errors.from_rpc_error(exc)
                    if isinstance(error, errors.FailedPrecondition) and _has_refs(plan):
                        # A chunk we referenced lost its live copies since FindChunks
                        # answered: send every byte this time.
                        plan = None
                        report.restart()
                        continue
                    raise error from None
                finally:
                    _copy_stats(attempt_stats, stats)
                return _check_success(response)
        finally:
            src.close()

    def _plan_known_chunks(
        self, src: UploadSource, stats: UploadStats, hashed: dict[int, str] | None = None,
        receipted: set[str] | None = None,
    ) -> list[ChunkPlanEntry] | None:
        """Hash the source chunk by chunk (but for the ``hashed`` ones) and mark the chunks
        the server already holds (not asked of those ``receipted``: written ahead)."""
        try:
            chunk_size = self.chunk_size()
        except errors.NotImplementedYet:
            return None
        if chunk_size <= 0:
            return None
        plan = hash_chunks(src, chunk_size, hashed)
        unique = [sha for sha in dict.fromkeys(entry.sha256 for entry in plan)
                  if sha not in (receipted or ())]
        present: set[str] = set()
        for start in range(0, len(unique), FIND_CHUNKS_BATCH):
            try:
                found = self.find_chunks(unique[start : start + FIND_CHUNKS_BATCH])
            except errors.NotImplementedYet:
                return None
            if found.chunk_size and found.chunk_size != chunk_size:
                # The gateway's chunk size changed under us: our boundaries are not its
                # boundaries, so no reference would be valid. Send bytes this time.
                self._chunk_size = int(found.chunk_size)
                return None
            present.update(found.present)
        stats.chunk_size = chunk_size
        stats.present = present
        return [dataclasses.replace(e, send_ref=e.sha256 in present) for e in plan]

    def _stream_upload(
        self,
        metadata: pb.FileMetadata,
        src: UploadSource,
        plan: list[ChunkPlanEntry] | None,
        stats: UploadStats,
        progress: Progress | None,
        ahead: dict[str, list[pb.ChunkReceipt]] | None = None,
    ) -> pb.UploadFileResponse:
        watchdog = Watchdog(self.stall_timeout)
        failure: list[BaseException] = []

        def requests() -> Iterator[pb.UploadFileRequest]:
            try:
                yield pb.UploadFileRequest(metadata=metadata)
                watchdog.kick()
                written = (self._write_directly(metadata, src, plan, ahead)
                           if plan is not None and self.direct_writes else None)
                for kind, item in iter_payload(src, plan, stats, progress, written):
                    if kind == "data":
                        yield pb.UploadFileRequest(chunk_data=item)
                    else:
                        sha, size, *receipts = item
                        yield pb.UploadFileRequest(chunk_ref=pb.ChunkRef(
                            sha256=sha, size=size, receipts=receipts[0] if receipts else []))
                    stats.messages += 1
                    watchdog.kick()
            except BaseException as exc:  # recorded: gRPC only logs what a generator raises
                failure.append(exc)
                raise
            watchdog.kick()  # the server now commits: give it a full stall period

        src.rewind()
        future = self._stubs.file.UploadFile.future(
            requests(), timeout=self.transfer_timeout,
            metadata=_session_metadata(metadata.session_token))
        watchdog.start(future.cancel)
        try:
            return future.result()
        except (grpc.RpcError, grpc.FutureCancelledError):
            if failure and not isinstance(failure[0], GeneratorExit):
                raise failure[0] from None
            if watchdog.fired:
                raise errors.DeadlineExceeded(
                    f"upload stalled: no progress for {self.stall_timeout:g} s"
                ) from None
            raise
        finally:
            watchdog.stop()

    def _write_directly(self, metadata: pb.FileMetadata, src: UploadSource,
                        plan: list[ChunkPlanEntry],
                        ahead: dict[str, list[pb.ChunkReceipt]] | None = None,
                        ) -> Iterator[tuple[ChunkPlanEntry, list[pb.ChunkReceipt] | None]]:
        """The plan's chunks to send, written to the nodes under grants where possible
        (``direct_writes.NodeWrites``), in file order with their receipts or None."""

        def read(entry: ChunkPlanEntry) -> bytes:
            src.handle.seek(src.start + entry.offset)
            data = src.handle.read(entry.size)
            if len(data) != entry.size:
                raise OSError(f"{src.filename}: file shrank while being uploaded")
            return data

        # receipts written ahead, but only those the gateway will still take
        usable = {sha: receipts for sha, receipts in (ahead or {}).items()
                  if receipt_expiry(receipts) > time.time() + GRANT_MARGIN_S}
        entries = [e for e in plan if not e.send_ref]
        for done in self._node_writes().chunks(
                entries, read, self._granter(metadata.session_token, metadata.upload_id),
                metadata.upload_id, usable):
            yield done.entry, done.receipts

    def _granter(self, token: str, upload_id: str
                 ) -> Callable[[list[ChunkPlanEntry]], pb.PrepareChunkWritesResponse | None]:
        """Asks the gateway for write grants for one upload (None: write through it)."""

        def prepare(batch: list[ChunkPlanEntry]) -> pb.PrepareChunkWritesResponse | None:
            if not self.direct_writes:
                return None
            try:
                return self._stubs.file.PrepareChunkWrites(pb.PrepareChunkWritesRequest(
                    session_token=token, upload_id=upload_id,
                    chunks=[pb.ChunkRef(sha256=e.sha256, size=e.size) for e in batch]),
                    timeout=self.timeout)
            except grpc.RpcError as exc:
                code = status_code(exc)
                if code in (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.FAILED_PRECONDITION):
                    self.direct_writes = False  # this gateway takes bytes only in the stream
                return None  # anything else: the stream through the gateway says what
        return prepare

    def write_ahead(self, upload_id: str, entries: list[ChunkPlanEntry],
                    read: Callable[[ChunkPlanEntry], bytes]) -> dict[str, list[pb.ChunkReceipt]]:
        """Write whole chunks of a file still being written to the nodes, for the upload
        ``upload_id`` that will follow (write-behind): the receipts to pass to
        ``upload(ahead=...)``, by hash. ``entries`` are hashed already; ``read`` gives a
        chunk's bytes when its turn comes (it may raise ``StopAhead``). Best effort: what
        fails is sent by the upload."""
        if not self.direct_writes or not entries:
            return {}
        try:
            token = self._token_for_call(Auth.REQUIRED)
        except errors.CloudError:
            return {}
        return self._node_writes().ahead(entries, read, self._granter(token, upload_id),
                                         upload_id)

    def _node_writes(self) -> NodeWrites:
        reads = self._shared_node_reads()  # (takes the lock itself)
        with self._lock:
            if self._writes is None:
                self._writes = NodeWrites(reads)
            return self._writes

    def _shared_node_reads(self) -> NodeReads:
        with self._lock:
            if self.node_reads is None:
                self.node_reads = NodeReads()
            return self.node_reads

    # -- downloads -----------------------------------------------------------------------

    def download(self, file_id: str, offset: int = 0, length: int = 0) -> Download:
        """Open a (ranged) download; ``.info`` is the file's FileInfo, iterate for the bytes.

        Errors such as NotFound surface here, before any byte; a connection lost midway is
        resumed from the last byte received (the file's version must not have changed).
        """
        return Download(self, file_id, offset, length)

    def download_to(
        self,
        file_id: str,
        dest: BinaryIO,
        progress: Progress | None = None,
        *,
        offset: int = 0,
        length: int = 0,
        verify: bool = True,
    ) -> pb.FileInfo:
        """Write a file (or a range of it) to ``dest``; returns its FileInfo.

        A whole-file download is checked against the file's chunk manifest (SHA-256 per
        chunk) when ``verify`` is on and the gateway offers GetFileChunks.
        """
        if verify and not offset and not length:
            info = self._download_direct(file_id, dest, progress)
            if info is not None:
                return info
        with self.download(file_id, offset, length) as stream:
            verifier = self._verifier(stream.info) if verify and not offset and not length else None
            for data in stream:
                if verifier is not None:
                    try:
                        verifier.feed(data)
                    except ValueError as exc:
                        raise errors.InternalError(
                            f"download of {file_id} corrupted: {exc}"
                        ) from None
                dest.write(data)
                if progress:
                    progress(len(data))
            if verifier is not None:
                try:
                    verifier.finish()
                except ValueError as exc:
                    raise errors.InternalError(f"download of {file_id} incomplete: {exc}") from None
            return stream.info

    def _download_direct(self, file_id: str, dest: BinaryIO, progress: Progress | None
                         ) -> pb.FileInfo | None:
        """A whole file straight from the nodes (``direct_reads.read_in_order``), each chunk
        checked against its SHA-256; a chunk no node gives comes through the gateway as a
        ranged download, checked the same way. None, with nothing written, when this
        download should stream through the gateway instead: direct reads off or not
        offered, a file smaller than DIRECT_DOWNLOAD_MIN, or one that changed meanwhile."""
        if not self.direct_reads:
            return None
        try:
            entry = self.stat(entry_id=file_id)
            if entry.WhichOneof("entry") != "file" or entry.file.symlink_target:
                return None
            found = entry.file
            if found.file_size < DIRECT_DOWNLOAD_MIN or found.is_deleted:
                return None
            plan = self.get_file_chunks(file_id, with_sources=True)
        except errors.CloudError:
            return None  # (a shared file StatEntry does not name, an older gateway...)
        if (not plan.sources or plan.version != found.version
                or sum(int(c.size) for c in plan.chunks) != found.file_size):
            return None
        for offset, chunk, data in read_in_order(self._shared_node_reads(), plan):
            if data is None:
                data = self._chunk_through_gateway(file_id, offset, chunk, plan.version)
            dest.write(data)
            if progress:
                progress(len(data))
        return pb.FileInfo(file_id=file_id, filename=found.filename, file_size=found.file_size,
                           mime_type=found.mime_type, created_at=found.created_at,
                           modified_at=found.modified_at, length=found.file_size,
                           version=plan.version, nlink=found.nlink)

    def _chunk_through_gateway(self, file_id: str, offset: int, chunk: pb.ChunkRef,
                               version: int) -> bytes:
        """One chunk of a direct download that no node gave, read through the gateway."""
        with self.download(file_id, offset, int(chunk.size)) as stream:
            if stream.info.version and stream.info.version != version:
                raise errors.Conflict(f"{file_id} changed during the download: try again")
            data = b"".join(stream)
        if hashlib.sha256(data).hexdigest() != chunk.sha256:
            raise errors.InternalError(f"download of {file_id} corrupted at byte {offset}")
        return data

    def _verifier(self, info: pb.FileInfo) -> ChunkVerifier | None:
        try:
            manifest = self.get_file_chunks(info.file_id)
        except (errors.NotImplementedYet, errors.NotFound, errors.PermissionDenied):
            return None
        if info.version and manifest.version and info.version != manifest.version:
            return None  # changed between the two calls: the version check covers it
        chunks = [(c.sha256, int(c.size)) for c in manifest.chunks]
        verifier = ChunkVerifier(chunks)
        if not chunks or (info.file_size and verifier.total != info.file_size):
            return None
        return verifier

    # -- payments ------------------------------------------------------------------------

    def storage_tiers(self) -> pb.GetStorageTiersResponse:
        return self._unary(
            self._stubs.payment.GetStorageTiers,
            lambda t: pb.GetStorageTiersRequest(session_token=t),
            idempotent=True,
            auth=Auth.OPTIONAL,
        )

    def initiate_payment(
        self, tier_id: str, provider: str, phone_number: str
    ) -> pb.InitiatePaymentResponse:
        """Start a mobile-money collection. Never retried: a retry could charge twice."""
        return self._unary(
            self._stubs.payment.InitiatePayment,
            lambda t: pb.InitiatePaymentRequest(
                session_token=t, tier_id=tier_id, provider=provider, phone_number=phone_number
            ),
            idempotent=False,
        )

    def check_payment_status(self, payment_id: str) -> pb.CheckPaymentStatusResponse:
        """The payment's status; not raised on ``success=false`` so a failed payment reads."""
        return self._unary(
            self._stubs.payment.CheckPaymentStatus,
            lambda t: pb.CheckPaymentStatusRequest(session_token=t, payment_id=payment_id),
            idempotent=True,
            check=False,
        )

    def payment_history(self, limit: int = 0) -> pb.GetPaymentHistoryResponse:
        return self._unary(
            self._stubs.payment.GetPaymentHistory,
            lambda t: pb.GetPaymentHistoryRequest(session_token=t, limit=limit),
            idempotent=True,
        )

    # -- administration ------------------------------------------------------------------

    def system_status(self, admin_key: str | None = None) -> pb.SystemStatusResponse:
        key = self._admin_key(admin_key)
        return self._unary(
            self._stubs.admin.GetSystemStatus,
            lambda _t: pb.SystemStatusRequest(admin_key=key),
            idempotent=True,
            auth=Auth.NONE,
        )

    def list_users(self, admin_key: str | None = None) -> pb.ListUsersResponse:
        key = self._admin_key(admin_key)
        return self._unary(
            self._stubs.admin.ListAllUsers,
            lambda _t: pb.ListUsersRequest(admin_key=key),
            idempotent=True,
            auth=Auth.NONE,
        )

    def stream_events(
        self,
        admin_key: str | None = None,
        *,
        history: int = 0,
        event_types: Iterable[str] = (),
        timeout: float | None = None,
    ) -> ServerStream[pb.SystemEvent]:
        """The live event stream (recent history first); ``cancel()`` it to stop."""
        key = self._admin_key(admin_key)
        call = self._stubs.admin.StreamSystemEvents(
            pb.StreamEventsRequest(admin_key=key, history=history, event_types=list(event_types)),
            timeout=timeout,
        )
        return ServerStream(call)

    def fsck(
        self,
        admin_key: str | None = None,
        *,
        repair: bool = False,
        presence_only: bool = False,
        timeout: float | None = None,
    ) -> ServerStream[pb.FsckMessage]:
        """Check the metadata against the nodes (``--repair``: fix what can be fixed).

        Messages stream as the gateway finds things: ``finding``, ``progress``, then one
        ``summary`` last. The gateway bounds the call itself (``FSCK_MAX_S``), so no
        deadline is set unless ``timeout`` is given. Not retried: a repair is not replayed.
        """
        key = self._admin_key(admin_key)
        call = self._stubs.admin.Fsck(
            pb.FsckRequest(admin_key=key, repair=repair, presence_only=presence_only),
            timeout=timeout,
        )
        return ServerStream(call)

    def backup_metadata(self, admin_key: str | None = None) -> ServerStream[pb.BackupPiece]:
        """The gateway's metadata snapshot in pieces (the last one carries its size and
        SHA-256); no deadline: the caller watches for a stall and ``cancel()``s."""
        key = self._admin_key(admin_key)
        call = self._stubs.admin.BackupMetadata(pb.BackupRequest(admin_key=key),
                                                metadata=_origin_metadata())
        return ServerStream(call)

    def list_nodes(self, admin_key: str | None = None) -> pb.ListNodesResponse:
        key = self._admin_key(admin_key)
        return self._unary(
            self._stubs.admin.ListNodes,
            lambda _t: pb.ListNodesRequest(admin_key=key),
            idempotent=True,
            auth=Auth.NONE,
        )

    def user_details(self, email: str, admin_key: str | None = None) -> pb.GetUserDetailsResponse:
        key = self._admin_key(admin_key)
        return self._unary(
            self._stubs.admin.GetUserDetails,
            lambda _t: pb.GetUserDetailsRequest(admin_key=key, email=email),
            idempotent=True,
            auth=Auth.NONE,
        )

    def set_user_quota(
        self, email: str, storage_bytes: int, admin_key: str | None = None
    ) -> pb.SetUserQuotaResponse:
        key = self._admin_key(admin_key)
        return self._unary(
            self._stubs.admin.SetUserQuota,
            lambda _t: pb.SetUserQuotaRequest(
                admin_key=key, email=email, storage_bytes=storage_bytes
            ),
            idempotent=True,
            auth=Auth.NONE,
        )

    def upsert_tier(
        self, tier: pb.StorageTier | None = None, admin_key: str | None = None, **fields: Any
    ) -> pb.UpsertTierResponse:
        """Create or update a tier (matched by name); give a StorageTier or its fields."""
        key = self._admin_key(admin_key)
        message = tier if tier is not None else pb.StorageTier(**fields)
        return self._unary(
            self._stubs.admin.UpsertTier,
            lambda _t: pb.UpsertTierRequest(admin_key=key, tier=message),
            idempotent=True,
            auth=Auth.NONE,
        )

    def payment_analytics(
        self, since: int = 0, until: int = 0, admin_key: str | None = None
    ) -> pb.PaymentAnalyticsResponse:
        key = self._admin_key(admin_key)
        return self._unary(
            self._stubs.admin.GetPaymentAnalytics,
            lambda _t: pb.PaymentAnalyticsRequest(admin_key=key, since=since, until=until),
            idempotent=True,
            auth=Auth.NONE,
        )

    def drain_node(self, node_name: str, admin_key: str | None = None) -> pb.DrainNodeResponse:
        key = self._admin_key(admin_key)
        return self._unary(
            self._stubs.admin.DrainNode,
            lambda _t: pb.DrainNodeRequest(admin_key=key, node_name=node_name),
            idempotent=False,
            auth=Auth.NONE,
        )


class _HighWater:
    """Reports progress only beyond what was already reported (a replayed upload)."""

    def __init__(self, progress: Progress | None) -> None:
        self._progress = progress
        self._done = 0
        self._reported = 0

    def __call__(self, amount: int) -> None:
        self._done += amount
        if self._progress and self._done > self._reported:
            self._progress(self._done - self._reported)
            self._reported = self._done

    def restart(self) -> None:
        self._done = 0


def _copy_stats(src: UploadStats, dst: UploadStats) -> None:
    for f in dataclasses.fields(UploadStats):
        setattr(dst, f.name, getattr(src, f.name))


class Download:
    """A ranged download in progress: ``.info`` first, then iterate the bytes.

    Resumes from the last byte received when the connection drops (idempotent), at most
    ``retry.attempts`` times, and refuses to stitch together two versions of the file.
    """

    def __init__(self, client: CloudClient, file_id: str, offset: int = 0, length: int = 0):
        self._client = client
        self.file_id = file_id
        self.offset = offset
        self.length = length
        self.received = 0
        self._cancelled = False
        self._call: Any = None
        self._pending: bytes | None = None
        self._watchdog: Watchdog | None = None
        self._retries = 0
        self.info: pb.FileInfo = self._open(offset, length)

    # -- opening ---------------------------------------------------------------------------

    def _open(self, offset: int, length: int) -> pb.FileInfo:
        client = self._client
        refreshed = False
        while True:
            token = client._token_for_call(Auth.REQUIRED)
            request = pb.DownloadFileRequest(
                session_token=token, file_id=self.file_id, offset=offset, length=length
            )
            call = client._stubs.file.DownloadFile(request, timeout=client.transfer_timeout)
            watchdog = Watchdog(client.stall_timeout).start(call.cancel)
            try:
                first = next(call)
            except StopIteration:
                watchdog.stop()
                self._call = None
                return pb.FileInfo(file_id=self.file_id, offset=offset)
            except grpc.RpcError as exc:
                watchdog.stop()
                code = status_code(exc)
                if watchdog.fired:
                    code = grpc.StatusCode.DEADLINE_EXCEEDED
                if (
                    code == grpc.StatusCode.UNAUTHENTICATED
                    and not refreshed
                    and client._session.refresh_token
                ):
                    refreshed = True
                    client._refresh(token)
                    continue
                if client.retry.should_retry(code, self._retries + 1):
                    client.retry.sleep(self._retries)
                    self._retries += 1
                    continue
                if watchdog.fired:
                    raise errors.DeadlineExceeded("download stalled") from None
                raise errors.from_rpc_error(exc) from None
            watchdog.kick()
            self._call = call
            self._watchdog = watchdog
            if first.WhichOneof("data") == "chunk_data":
                self._pending = first.chunk_data
                return pb.FileInfo(file_id=self.file_id, offset=offset)
            return first.file_info

    def _expected(self) -> int:
        """Bytes this download should yield in total (0 when the server did not say)."""
        if self.info.length:
            return int(self.info.length)
        if self.length:
            return self.length
        if self.info.file_size:
            return max(0, int(self.info.file_size) - self.offset)
        return 0

    def _resume(self) -> None:
        """Reopen after a dropped stream at the first byte not yet received."""
        version = self.info.version
        remaining = self.length - self.received if self.length else 0
        info = self._open(self.offset + self.received, remaining)
        if version and info.version and info.version != version:
            raise errors.Conflict(f"file {self.file_id} changed during the download")

    # -- iteration -------------------------------------------------------------------------

    def __iter__(self) -> Iterator[bytes]:
        client = self._client
        while True:
            if self._pending:
                data, self._pending = self._pending, None
                self.received += len(data)
                yield data
            if self._call is None:
                return
            try:
                for message in self._call:
                    if self._watchdog:
                        self._watchdog.kick()
                    data = message.chunk_data
                    if not data:
                        continue
                    self.received += len(data)
                    yield data
            except grpc.RpcError as exc:
                self._stop_watchdog()
                if self._cancelled:
                    return
                fired = self._watchdog_fired()
                code = grpc.StatusCode.DEADLINE_EXCEEDED if fired else status_code(exc)
                if client.retry.should_retry(code, self._retries + 1):
                    client.retry.sleep(self._retries)
                    self._retries += 1
                    self._resume()
                    continue
                if fired:
                    raise errors.DeadlineExceeded("download stalled") from None
                raise errors.from_rpc_error(exc) from None
            self._stop_watchdog()
            expected = self._expected()
            if expected and self.received < expected and not self._cancelled:
                if client.retry.should_retry(grpc.StatusCode.UNAVAILABLE, self._retries + 1):
                    self._retries += 1
                    self._resume()
                    continue
                raise errors.Unavailable(
                    f"download of {self.file_id} ended after {self.received} of {expected} bytes"
                )
            return

    def _watchdog_fired(self) -> bool:
        return bool(self._watchdog and self._watchdog.fired)

    def _stop_watchdog(self) -> None:
        if self._watchdog:
            self._watchdog.stop()

    def read_all(self) -> bytes:
        return b"".join(self)

    def cancel(self) -> None:
        self._cancelled = True
        self._stop_watchdog()
        if self._call is not None:
            self._call.cancel()

    def __enter__(self) -> Download:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()
