"""The gateway's edge: where typed errors become gRPC statuses, and where every call is
bounded before its handler runs.

Handlers raise ``CloudError`` subclasses (or let them pass up from the layers below); these
decorators turn them into the status code of the shared table and turn anything unexpected
into INTERNAL with the traceback logged, so no handler repeats that mapping.

``EdgeInterceptor`` checks each request message against the field limits of
``request_limits``, gives long-lived calls a place per account and in total
(``stream_admission``) and puts request streams under a watchdog, so no caller, signed in
or not, can hold every worker of the gateway.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

from cloudgrpc_proto.errors import (
    CloudError,
    DeadlineExceeded,
    InvalidArgument,
    Unauthenticated,
    abort_with,
)

from .change_feed import ORIGIN_HEADER, REQUEST_ORIGIN
from .client_address import ClientAddresses
from .config import Settings
from .request_limits import check_request
from .stream_admission import (
    PREAUTH,
    STREAM,
    UPLOAD,
    AddressSlots,
    AdmissionLimits,
    StallWatchdog,
    StreamAdmission,
    Ticket,
)

log = logging.getLogger("cloudgrpc_server.rpc")

F = TypeVar("F", bound=Callable[..., Any])


def _fail(name: str, context: grpc.ServicerContext, exc: BaseException) -> None:
    if isinstance(exc, CloudError):
        log.info("%s -> %s: %s", name, exc.code.name, exc.message)
        abort_with(context, exc)
    if isinstance(exc, grpc.RpcError) and not context.is_active():
        # The caller went away (cancelled, deadline, connection lost) while the handler
        # still read its requests: nothing is left to answer, and it is no server fault.
        log.info("%s -> CANCELLED: the caller went away mid-call", name)
        context.abort(grpc.StatusCode.CANCELLED, "the call was cancelled")
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


# --- bounded resources: request limits and stream admission -------------------------------

SESSION_HEADER = "x-cloudgrpc-session"
UPLOAD_METHOD = "/cloudstorage.FileService/UploadFile"
BACKUP_METHOD = "/cloudstorage.AdminService/BackupMetadata"
# Server-streaming calls that stay open for long: each holds a worker while it lasts, so
# each takes a place among the long-lived calls. Their request is one message, read under
# the request watchdog; the handler's own work afterwards is not watched (an fsck may
# work for long between two findings) but bounded by the handler (FSCK_MAX_S, one fsck at
# a time per gateway; one backup at a time, paced by its reader, below).
LONG_LIVED = frozenset({
    "/cloudstorage.FileService/DownloadFile",
    "/cloudstorage.FileService/WatchChanges",
    "/cloudstorage.AdminService/StreamSystemEvents",
    "/cloudstorage.AdminService/Fsck",
    BACKUP_METHOD,
})
# Server streams that hold more than a worker while they last (the backup holds a database
# transaction open): each message must be taken by the client within STREAM_IDLE_S, or
# the call is cancelled. A client that keeps reading is never cut off, however long.
READER_PACED = frozenset({BACKUP_METHOD})
# The health service answers without our checks: its Watch does not hold a worker
# (non-blocking) and Check must answer even when everything else is busy.
UNGUARDED_PREFIXES = ("/grpc.health.v1.Health/",)


@dataclass(frozen=True)
class StreamTimings:
    first_message_s: float  # a request stream's first message (an upload's metadata)
    idle_s: float           # between two messages of a request stream


class EdgeInterceptor(grpc.ServerInterceptor):
    """Every call passes here before its handler: string and count limits on each request
    message, a place among the long-lived calls (per account and in total), and a watchdog
    on request streams so a client that stops sending loses its worker."""

    def __init__(self, authenticate: Callable[[str], Any], admission: StreamAdmission,
                 watchdog: StallWatchdog, timings: StreamTimings, waiting: AddressSlots,
                 addresses: ClientAddresses | None = None) -> None:
        self._authenticate = authenticate
        # Behind a trusted load balancer: the client's address, not the balancer's.
        self.addresses = addresses or ClientAddresses()
        self.admission = admission
        self.watchdog = watchdog
        self.timings = timings
        self.waiting = waiting
        # A unary request may be large (a batch of small files): it gets the idle limit.
        self.request_timings = StreamTimings(timings.idle_s, timings.idle_s)

    @classmethod
    def from_settings(cls, settings: Settings, authenticate: Callable[[str], Any]
                      ) -> EdgeInterceptor:
        """Long-lived calls kept below the worker count minus a reserve, so short calls
        (SendOTP, health, listings) always find a worker."""
        limits = AdmissionLimits(
            total=max(1, settings.max_workers - settings.reserved_workers),
            preauth=settings.upload_preauth_slots, uploads_per_user=settings.uploads_per_user,
            streams_per_user=settings.streams_per_user)
        return cls(authenticate, StreamAdmission(limits), StallWatchdog(),
                   StreamTimings(settings.upload_first_message_s, settings.stream_idle_s),
                   AddressSlots(settings.waiting_per_address),
                   ClientAddresses(settings.trusted_proxies))

    def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        handler = continuation(details)
        method = details.method or ""
        if handler is None or method.startswith(UNGUARDED_PREFIXES):
            return handler
        if handler.request_streaming:
            return self._guard_request_stream(handler, method)
        return self._guard_unary_request(handler, method)

    # --- unary requests -----------------------------------------------------------------

    def _guard_unary_request(self, handler: Any, method: str) -> Any:
        # Served as a request stream so the one message is read under the watchdog (the
        # sync server would otherwise wait for it on a worker without any deadline).
        if not handler.response_streaming:
            inner = handler.unary_unary

            def unary(request_iterator: Any, context: grpc.ServicerContext) -> Any:
                return inner(self._read_request(request_iterator, context, method), context)

            return grpc.stream_unary_rpc_method_handler(
                unary, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)

        inner_stream = handler.unary_stream
        long_lived = method in LONG_LIVED
        reader_paced = method in READER_PACED

        def streaming(request_iterator: Any, context: grpc.ServicerContext) -> Any:
            request = self._read_request(request_iterator, context, method)
            ticket = self._admit_stream(request, context, method) if long_lived else None
            try:
                responses = inner_stream(request, context)
                if reader_paced:
                    responses = self._paced_by_reader(responses, context)
                yield from responses
            finally:
                if ticket is not None:
                    ticket.release()

        return grpc.stream_stream_rpc_method_handler(
            streaming, request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer)

    def _paced_by_reader(self, responses: Iterator[Any], context: grpc.ServicerContext
                         ) -> Iterator[Any]:
        """``responses``, each under the watchdog until the client has taken it: the server
        resumes the handler only once the previous message is sent, so a client that stops
        reading holds it at that ``yield``; after the idle limit the call is cancelled and
        the handler closed (its ``finally`` blocks and transactions end)."""
        try:
            for response in responses:
                watch = self.watchdog.arm(self.timings.idle_s, context.cancel)
                try:
                    yield response
                finally:
                    if self.watchdog.disarm(watch):
                        log.info("a stream's client took no message within %g s: cancelled",
                                 self.timings.idle_s)
        finally:
            close = getattr(responses, "close", None)
            if close is not None:
                close()

    def _read_request(self, request_iterator: Any, context: grpc.ServicerContext,
                      method: str) -> Any:
        """A unary call's request: within the deadline, checked against the field limits,
        with few calls per client address waiting for theirs at once."""
        address = self.addresses.of(context)
        try:
            self.waiting.take(address)
        except CloudError as exc:
            log.info("%s refused: %s", method, exc.message)
            abort_with(context, exc)
        try:
            requests = GuardedRequests(request_iterator, context, self.watchdog,
                                       self.request_timings)
            return next(requests)
        except StopIteration:
            context.abort(grpc.StatusCode.UNIMPLEMENTED,
                          f"{method} requires exactly one request message")
        except CloudError as exc:
            log.info("%s refused: %s", method, exc.message)
            abort_with(context, exc)
        finally:
            self.waiting.give_back(address)
        raise AssertionError("not reached: abort raises")

    def _admit_stream(self, request: Any, context: grpc.ServicerContext, method: str
                      ) -> Ticket:
        try:
            token = _session_header(context) or getattr(request, "session_token", "")
            if token:
                owner = str(self._authenticate(token).user_id)
            elif getattr(request, "admin_key", ""):
                owner = "admin"  # checked by the handler at once; the cap bounds the rest
            else:
                raise Unauthenticated("no session token: sign in first")
            return self.admission.admit(STREAM, owner)
        except CloudError as exc:
            log.info("%s refused: %s", method, exc.message)
            abort_with(context, exc)
            raise  # not reached: abort raises

    # --- request streams ----------------------------------------------------------------

    def _guard_request_stream(self, handler: Any, method: str) -> Any:
        is_upload = method == UPLOAD_METHOD

        def open_stream(request_iterator: Any, context: grpc.ServicerContext
                        ) -> tuple[Ticket, GuardedRequests]:
            try:
                ticket = self._admit_request_stream(is_upload, context)
            except CloudError as exc:
                log.info("%s refused: %s", method, exc.message)
                abort_with(context, exc)
                raise
            on_first = (lambda msg: self._authenticate_upload(ticket, msg)) \
                if is_upload and ticket.kind == PREAUTH else None
            return ticket, GuardedRequests(request_iterator, context, self.watchdog,
                                           self.timings, on_first)

        if handler.response_streaming:
            inner_stream = handler.stream_stream

            def stream_stream(request_iterator: Any, context: grpc.ServicerContext) -> Any:
                ticket, requests = open_stream(request_iterator, context)
                try:
                    yield from inner_stream(requests, context)
                finally:
                    ticket.release()

            return grpc.stream_stream_rpc_method_handler(
                stream_stream, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)

        inner = handler.stream_unary

        def stream_unary(request_iterator: Any, context: grpc.ServicerContext) -> Any:
            ticket, requests = open_stream(request_iterator, context)
            try:
                return inner(requests, context)
            finally:
                ticket.release()

        return grpc.stream_unary_rpc_method_handler(
            stream_unary, request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer)

    def _admit_request_stream(self, is_upload: bool, context: grpc.ServicerContext
                              ) -> Ticket:
        if not is_upload:
            return self.admission.admit(STREAM, "anonymous")
        token = _session_header(context)
        if token:
            return self.admission.admit(UPLOAD, str(self._authenticate(token).user_id))
        # The seed's clients send the session in the first message only: a few such
        # uploads may wait for it, each for at most the first-message deadline.
        return self.admission.admit(PREAUTH, "")

    def _authenticate_upload(self, ticket: Ticket, first: Any) -> None:
        """The first message of an upload admitted before its session was known: it must
        carry a valid session, and the upload then counts against that account."""
        meta = first.metadata if first.WhichOneof("data") == "metadata" else None
        if meta is None:
            raise InvalidArgument("the first message of an upload must be its metadata")
        caller = self._authenticate(meta.session_token)
        ticket.become(UPLOAD, str(caller.user_id))


class GuardedRequests:
    """A request stream whose client must send each message in time, each one checked
    against the field limits before the handler sees it."""

    def __init__(self, requests: Iterator[Any], context: grpc.ServicerContext,
                 watchdog: StallWatchdog, timings: StreamTimings,
                 on_first: Callable[[Any], None] | None = None) -> None:
        self._requests = requests
        self._context = context
        self._watchdog = watchdog
        self._timings = timings
        self._on_first = on_first
        self._received = 0

    def __iter__(self) -> GuardedRequests:
        return self

    def __next__(self) -> Any:
        first = self._received == 0
        within = self._timings.first_message_s if first else self._timings.idle_s
        watch = self._watchdog.arm(within, self._context.cancel)
        try:
            message = next(self._requests)
        except (StopIteration, grpc.RpcError):
            if self._watchdog.disarm(watch):
                raise self._stalled(first, within) from None
            raise
        if self._watchdog.disarm(watch):
            raise self._stalled(first, within)
        self._received += 1
        check_request(message)
        if first and self._on_first is not None:
            self._on_first(message)
        return message

    def _stalled(self, first: bool, within: float) -> DeadlineExceeded:
        what = "first message" if first else "next message"
        return DeadlineExceeded(f"no {what} from the client within {within:g} s: call dropped")


def _session_header(context: grpc.ServicerContext) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == SESSION_HEADER:
            return str(value)
    return ""
