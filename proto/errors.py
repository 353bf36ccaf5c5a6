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


class DeadlineExceeded(CloudError):
    """The call took too long."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED
    errno = _errno.ETIMEDOUT
    exit_code = 12


class DataLoss(CloudError):
    """Stored data failed its integrity check."""

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


def from_code_name(name: str, details: str | None) -> CloudError:
    """The typed error of one item of a batch reply (its status code's name + details)."""
    code = getattr(grpc.StatusCode, name or "UNKNOWN", grpc.StatusCode.UNKNOWN)
    return from_status(code, details)


def from_rpc_error(exc: grpc.RpcError) -> CloudError:
    """Map a ``grpc.RpcError`` raised by a stub call to the typed error."""
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = exc.details() if hasattr(exc, "details") else str(exc)
    return from_status(code, details)


def abort_with(context: grpc.ServicerContext, error: CloudError) -> None:
    """Abort the current RPC with the status that stands for ``error`` (never returns)."""
    context.abort(error.code, wire_details(error))
