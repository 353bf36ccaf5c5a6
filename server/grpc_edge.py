"""The one place where typed errors become gRPC statuses.

Handlers raise ``CloudError`` subclasses (or let them pass up from the layers below); these
decorators turn them into the status code of the shared table and turn anything unexpected
into INTERNAL with the traceback logged, so no handler repeats that mapping.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import grpc

from cloudgrpc_proto.errors import CloudError, abort_with

from .change_feed import ORIGIN_HEADER, REQUEST_ORIGIN

log = logging.getLogger("cloudgrpc_server.rpc")

F = TypeVar("F", bound=Callable[..., Any])


def _fail(name: str, context: grpc.ServicerContext, exc: BaseException) -> None:
    if isinstance(exc, CloudError):
        log.info("%s -> %s: %s", name, exc.code.name, exc.message)
        abort_with(context, exc)
    log.exception("%s failed unexpectedly", name)
    context.abort(grpc.StatusCode.INTERNAL, f"internal error in {name}; see the gateway log")


def rpc(func: F) -> F:
    """Wrap a unary-response or stream-response handler."""
    name = func.__name__
    if inspect.isgeneratorfunction(func):
        @functools.wraps(func)
        def stream_wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
            try:
                yield from func(self, request, context)
            except Exception as exc:  # noqa: BLE001 - mapped to a status right here
                if _is_abort(exc):
                    raise
                _fail(name, context, exc)
        return stream_wrapper  # type: ignore[return-value]

    @functools.wraps(func)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        token = REQUEST_ORIGIN.set(request_origin(context))
        try:
            return func(self, request, context)
        except Exception as exc:  # noqa: BLE001 - mapped to a status right here
            if _is_abort(exc):
                raise
            _fail(name, context, exc)
        finally:
            REQUEST_ORIGIN.reset(token)
    return wrapper  # type: ignore[return-value]


def request_origin(context: grpc.ServicerContext) -> str:
    """The caller's ``x-cloudgrpc-origin`` metadata ("" when it sent none)."""
    for key, value in context.invocation_metadata() or ():
        if key == ORIGIN_HEADER:
            return str(value)[:64]
    return ""


def _is_abort(exc: BaseException) -> bool:
    # context.abort() ends the handler by raising a bare ``Exception()``: let it through.
    return type(exc) is Exception and not exc.args
