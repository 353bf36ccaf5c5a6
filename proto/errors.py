"""Typed errors shared by the gateway, the nodes and every client.

An error is raised as one of these classes wherever it happens and mapped exactly once at
the edge: to a gRPC status code by the servers (``abort_with``), back to the same class by
the client library (``from_rpc_error``), to an errno by the mount and to an exit code by the
CLIs. Keeping the table here means both sides of the wire agree on it.
"""

from __future__ import annotations

import errno as _errno

import grpc


class CloudError(Exception):
    """Base of every error the system reports to a user."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN
    errno: int = _errno.EIO
    exit_code: int = 1

    def __init__(self, message: str = "") -> None:
        super().__init__(message or self.__class__.__doc__ or self.__class__.__name__)
        self.message = str(self.args[0])


class InvalidArgument(CloudError):
    """The request is malformed."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    errno = _errno.EINVAL
    exit_code = 2


class NotFound(CloudError):
    """No such file, folder, user or payment."""

    code = grpc.StatusCode.NOT_FOUND
    errno = _errno.ENOENT
    exit_code = 4


class AlreadyExists(CloudError):
    """An entry of that name already exists."""

    code = grpc.StatusCode.ALREADY_EXISTS
    errno = _errno.EEXIST
    exit_code = 5


class PermissionDenied(CloudError):
    """The caller may not do this."""

    code = grpc.StatusCode.PERMISSION_DENIED
    errno = _errno.EACCES
    exit_code = 6


class Unauthenticated(CloudError):
    """No valid session: sign in again."""

    code = grpc.StatusCode.UNAUTHENTICATED
    errno = _errno.EACCES
    exit_code = 7


class QuotaExceeded(CloudError):
    """The account's storage quota is exhausted."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    errno = _errno.EDQUOT
    exit_code = 8


class StorageFull(CloudError):
    """The storage nodes have no room left for new data (an operator must add capacity)."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    errno = _errno.ENOSPC
    exit_code = 8


class RateLimited(CloudError):
    """Too many attempts: wait and try again."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    errno = _errno.EAGAIN
    exit_code = 9


class FailedPrecondition(CloudError):
    """The entry is not in a state that allows this (for example a folder not empty)."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    errno = _errno.ENOTEMPTY
    exit_code = 10


class Conflict(CloudError):
    """Someone else changed the entry meanwhile."""

    code = grpc.StatusCode.ABORTED
    errno = _errno.EAGAIN
    exit_code = 11


class Unavailable(CloudError):
    """The service (gateway, enough storage nodes, database) cannot be reached."""

    code = grpc.StatusCode.UNAVAILABLE
    errno = _errno.EIO
    exit_code = 12


class ClusterUnavailable(Unavailable):
    """The gateway answered, but the cluster behind it cannot serve this now (too few
    storage nodes online, its database down, overloaded): try again later."""

    exit_code = 15


class DeadlineExceeded(CloudError):
    """The call took too long."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED
    errno = _errno.ETIMEDOUT
    exit_code = 12


class DataLoss(CloudError):
    """Stored data cannot be read back intact (every copy of a chunk is missing, corrupt or
    on a node that does not answer)."""

    code = grpc.StatusCode.DATA_LOSS
    errno = _errno.EIO
    exit_code = 14


class NotImplementedYet(CloudError):
    """This call is not available on this gateway."""

    code = grpc.StatusCode.UNIMPLEMENTED
    errno = _errno.ENOSYS
    exit_code = 13


class InternalError(CloudError):
    """Unexpected server error; it has been logged."""

    code = grpc.StatusCode.INTERNAL
    errno = _errno.EIO
    exit_code = 1


# Trailing metadata every error the gateway (or a node) answers carries: a client tells
# "the server said UNAVAILABLE" (the cluster behind it) from "no server answered".
ANSWERED_KEY = "cloudgrpc-answered"

# RESOURCE_EXHAUSTED carries two meanings; the detail prefix tells them apart on the wire.
_QUOTA_PREFIX = "quota: "
_RATE_PREFIX = "rate: "
_FULL_PREFIX = "full: "

_BY_CODE: dict[grpc.StatusCode, type[CloudError]] = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        NotFound,
        AlreadyExists,
        PermissionDenied,
        Unauthenticated,
        FailedPrecondition,
        Conflict,
        Unavailable,
        DeadlineExceeded,
        DataLoss,
        NotImplementedYet,
        InternalError,
    )
}


def wire_details(error: CloudError) -> str:
    """The status details string sent for ``error``."""
    if isinstance(error, QuotaExceeded):
        return _QUOTA_PREFIX + error.message
    if isinstance(error, RateLimited):
        return _RATE_PREFIX + error.message
    if isinstance(error, StorageFull):
        return _FULL_PREFIX + error.message
    return error.message


def from_status(code: grpc.StatusCode, details: str | None) -> CloudError:
    """Rebuild the typed error a server raised from its status code and details."""
    details = details or ""
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        if details.startswith(_RATE_PREFIX):
            return RateLimited(details[len(_RATE_PREFIX) :])
        if details.startswith(_FULL_PREFIX):
            return StorageFull(details[len(_FULL_PREFIX) :])
        if details.startswith(_QUOTA_PREFIX):
            details = details[len(_QUOTA_PREFIX) :]
        return QuotaExceeded(details or "storage quota exceeded")
    if code == grpc.StatusCode.CANCELLED:
        return Unavailable(details or "call cancelled")
    cls = _BY_CODE.get(code, InternalError)
    return cls(details or cls.__doc__ or code.name)


# Errors that pass: the same call may succeed later. A batch call that meets one stops
# there (ApplyFolderChanges), and the caller retries what was not applied, in order.
PASSING: tuple[type[CloudError], ...] = (Unavailable, DeadlineExceeded, InternalError,
                                         RateLimited)


def from_code_name(name: str, details: str | None) -> CloudError:
    """The typed error of one item of a batch reply (its status code's name + details)."""
    code = getattr(grpc.StatusCode, name or "UNKNOWN", grpc.StatusCode.UNKNOWN)
    if code == grpc.StatusCode.UNAVAILABLE:  # a batch reply: the server did answer
        return ClusterUnavailable(details or "the cluster cannot serve this now")
    return from_status(code, details)


def answered_by_server(exc: grpc.RpcError) -> bool:
    """Whether a failed call's status came from our server (``abort_with``), not from the
    channel (nothing listening, connection lost) or a proxy on the way."""
    trailing = getattr(exc, "trailing_metadata", None)
    try:
        pairs = trailing() if callable(trailing) else ()
    except Exception:  # noqa: BLE001 - a broken error object must not mask the failure
        return False
    return any(key == ANSWERED_KEY for key, _ in pairs or ())


def from_rpc_error(exc: grpc.RpcError) -> CloudError:
    """Map a ``grpc.RpcError`` raised by a stub call to the typed error.

    UNAVAILABLE the server itself answered becomes ``ClusterUnavailable`` (the gateway is
    there, the cluster behind it is not ready); without the server's mark it means the
    server could not be reached. RESOURCE_EXHAUSTED from gRPC's own concurrency cap (no
    mark, no prefix) is an overloaded server, not a full quota."""
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = exc.details() if hasattr(exc, "details") else str(exc)
    answered = answered_by_server(exc)
    if code == grpc.StatusCode.UNAVAILABLE and answered:
        return ClusterUnavailable(details or "the cluster cannot serve this now")
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and not answered and \
            "concurrent rpc limit" in (details or "").lower():
        return RateLimited(f"the gateway is overloaded ({details}): try again shortly")
    return from_status(code, details)


def abort_with(context: grpc.ServicerContext, error: CloudError) -> None:
    """Abort the current RPC with the status that stands for ``error`` (never returns),
    marked as answered by this server (kept with any trailing metadata already set)."""
    try:
        earlier = tuple(context.trailing_metadata() or ())
    except Exception:  # noqa: BLE001 - a context without the accessor: mark only
        earlier = ()
    context.set_trailing_metadata((*earlier, (ANSWERED_KEY, "1")))
    context.abort(error.code, wire_details(error))
