"""Prometheus metrics shared by the gateway and the nodes: the per-RPC interceptor and the
``/metrics`` HTTP endpoint.

Each process keeps its metrics in its own ``CollectorRegistry`` (never the library's global
one), so a test or a tool that runs a gateway and nodes in one interpreter gets separate,
non-colliding sets.

Label values are bounded by construction: the ``service`` and ``method`` labels come from
the handlers the server registered (a call to an unknown method has no handler and is not
recorded), and ``code`` is one of gRPC's status codes. Nothing a caller sends (a user id, an
email, a path, a token) ever becomes a label or a value.

The endpoint has no authentication; it binds loopback unless the operator says otherwise,
and any other address is warned about loudly at start-up.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.exposition import start_http_server

log = logging.getLogger("cloudgrpc_proto.metrics")

DEFAULT_METRICS_HOST = "127.0.0.1"
# Wider than the library's default: a chunk write or a large listing can take seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 30.0, 60.0, 300.0)

# Not counted: health checks (probes, often every second) and reflection. Health's Watch is
# also served "non-blocking" by gRPC, which a wrapper would hide: it would then hold a
# worker for as long as the watch lasts.
UNCOUNTED_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")

# A message's payload size (the file or chunk bytes it carries), by full method name.
PayloadSize = Callable[[Any], int]


def new_registry() -> CollectorRegistry:
    """A registry of this process's own, with its CPU, memory and open files (what the
    library's global registry would add by default)."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    return registry


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost: may resolve anywhere


def split_method(full_method: str) -> tuple[str, str]:
    """"/cloudstorage.FileService/UploadFile" -> ("FileService", "UploadFile")."""
    _, _, rest = full_method.partition("/")
    service, _, method = rest.partition("/")
    return service.rsplit(".", 1)[-1], method


class RpcMetrics(grpc.ServerInterceptor):
    """Counts every call by method and final status code, times it, and adds up the payload
    bytes that pass through the calls named in ``payload_in`` / ``payload_out``.

    Put it first in the server's interceptor list so it sees what the client sees,
    refusals of the later interceptors included. Long-lived streams named in
    ``untimed`` (change feeds, event streams: open for hours by design) are counted but
    kept out of the latency histogram.
    """

    def __init__(self, registry: CollectorRegistry, prefix: str, *,
                 payload_in: dict[str, PayloadSize] | None = None,
                 payload_out: dict[str, PayloadSize] | None = None,
                 bytes_in: Counter | None = None, bytes_out: Counter | None = None,
                 untimed: frozenset[str] = frozenset(),
                 on_result: Callable[[str, str], None] | None = None) -> None:
        self.handled = Counter(
            f"{prefix}_rpc_handled", "Calls finished, by method and gRPC status code",
            ["service", "method", "code"], registry=registry)
        self.duration = Histogram(
            f"{prefix}_rpc_duration_seconds", "Call latency from the handler's start to its "
            "last reply message, by method", ["service", "method"], buckets=LATENCY_BUCKETS,
            registry=registry)
        self._payload_in = payload_in or {}
        self._payload_out = payload_out or {}
        self._bytes_in = bytes_in
        self._bytes_out = bytes_out
        self._untimed = untimed
        self._on_result = on_result

    def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        handler = continuation(details)
        if handler is None:  # unknown method: not ours to count (and never a label)
            return None
        method = details.method or ""
        if method.startswith(UNCOUNTED_PREFIXES) or _non_blocking(handler):
            return handler
        recorder = _CallRecorder(self, method)
        measure_in = self._payload_in.get(method)
        measure_out = self._payload_out.get(method)

        def requests(iterator: Iterator[Any]) -> Iterator[Any]:
            if measure_in is None or self._bytes_in is None:
                return iterator
            return _counting(iterator, measure_in, self._bytes_in)

        def reply(response: Any) -> Any:
            if measure_out is not None and self._bytes_out is not None:
                self._bytes_out.inc(measure_out(response))
            return response

        if handler.request_streaming and handler.response_streaming:
            inner_ss = handler.stream_stream

            def stream_stream(request_iterator: Any, context: grpc.ServicerContext) -> Any:
                return recorder.stream(inner_ss(requests(request_iterator), context), context,
                                       reply)

            return grpc.stream_stream_rpc_method_handler(
                stream_stream, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        if handler.request_streaming:
            inner_su = handler.stream_unary

            def stream_unary(request_iterator: Any, context: grpc.ServicerContext) -> Any:
                return recorder.unary(lambda: reply(inner_su(requests(request_iterator),
                                                             context)), context)

            return grpc.stream_unary_rpc_method_handler(
                stream_unary, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        if handler.response_streaming:
            inner_us = handler.unary_stream

            def unary_stream(request: Any, context: grpc.ServicerContext) -> Any:
                if measure_in is not None and self._bytes_in is not None:
                    self._bytes_in.inc(measure_in(request))
                return recorder.stream(inner_us(request, context), context, reply)

            return grpc.unary_stream_rpc_method_handler(
                unary_stream, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        inner_uu = handler.unary_unary

        def unary_unary(request: Any, context: grpc.ServicerContext) -> Any:
            if measure_in is not None and self._bytes_in is not None:
                self._bytes_in.inc(measure_in(request))
            return recorder.unary(lambda: reply(inner_uu(request, context)), context)

        return grpc.unary_unary_rpc_method_handler(
            unary_unary, request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer)


class _CallRecorder:
    """Records one method's calls: the status code each ended with and how long it took."""

    def __init__(self, metrics: RpcMetrics, full_method: str) -> None:
        self.metrics = metrics
        self.full_method = full_method
        self.service, self.method = split_method(full_method)
        self.timed = full_method not in metrics._untimed

    def _finish(self, started: float, code: str) -> None:
        m = self.metrics
        m.handled.labels(self.service, self.method, code).inc()
        if self.timed:
            m.duration.labels(self.service, self.method).observe(time.monotonic() - started)
        if m._on_result is not None:
            m._on_result(self.full_method, code)

    def unary(self, call: Callable[[], Any], context: grpc.ServicerContext) -> Any:
        started = time.monotonic()
        try:
            response = call()
        except BaseException:
            self._finish(started, _code_name(context, failed=True))
            raise
        self._finish(started, _code_name(context, failed=False))
        return response

    def stream(self, responses: Iterator[Any], context: grpc.ServicerContext,
               reply: Callable[[Any], Any]) -> Iterator[Any]:
        started = time.monotonic()
        failed = True
        try:
            for response in responses:
                yield reply(response)
            failed = False
        finally:
            # A client that went away closes the generator: CANCELLED, as it sees it.
            code = _code_name(context, failed=failed)
            if failed and code == "UNKNOWN" and not context.is_active():
                code = "CANCELLED"
            self._finish(started, code)


def _non_blocking(handler: Any) -> bool:
    behaviors = (handler.unary_unary, handler.unary_stream, handler.stream_unary,
                 handler.stream_stream)
    return any(getattr(b, "experimental_non_blocking", False) for b in behaviors if b)


def _code_name(context: grpc.ServicerContext, failed: bool) -> str:
    """The status the call ended with: what the handler set or aborted with; else OK, or
    UNKNOWN for an exception that escaped without a status (gRPC answers UNKNOWN then)."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    return "UNKNOWN" if failed else "OK"


def _counting(iterator: Iterator[Any], measure: PayloadSize, counter: Counter
              ) -> Iterator[Any]:
    for message in iterator:
        counter.inc(measure(message))
        yield message


@dataclass
class MetricsEndpoint:
    """A running ``/metrics`` HTTP endpoint; ``stop()`` closes its socket."""

    host: str
    port: int
    _server: Any
    _thread: threading.Thread

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve_metrics(registry: CollectorRegistry, host: str, port: int, component: str
                  ) -> MetricsEndpoint | None:
    """Serve ``registry`` in the Prometheus text format on ``host:port`` (``/metrics``).

    Port 0 means off (the default): nothing is opened. The endpoint has no authentication,
    so a bind other than loopback is logged as a loud warning.
    """
    if port <= 0:
        return None
    host = host or DEFAULT_METRICS_HOST
    # The "_created" twin of every counter doubles the series for nothing a dashboard uses.
    disable_created_metrics()
    if not is_loopback(host):
        log.warning("*** %s metrics endpoint on %s:%d is reachable beyond this machine and "
                    "has no authentication: restrict it with a firewall or bind 127.0.0.1 "
                    "***", component, host, port)
    server, thread = start_http_server(port, addr=host, registry=registry)
    endpoint = MetricsEndpoint(host, int(server.server_port), server, thread)
    log.info("%s metrics at %s", component, endpoint.url)
    return endpoint
