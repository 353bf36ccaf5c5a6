"""A storage node's Prometheus metrics: every name it exports is defined here.

In-process counters (calls by method and status code, their latency, chunk bytes received
and sent) move as calls pass the ``RpcMetrics`` interceptor; the store's figures (chunks,
bytes used, capacity) and the scrubber's progress are read from memory at scrape time by
``NodeStateCollector``: no disk walk and no database behind a scrape, so no cache is needed.

Labels are method names of the chunk service, gRPC codes and the node's own name (chosen by
its operator); never a chunk hash or anything a caller sends.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from cloudgrpc_proto.metrics_export import (
    MetricsEndpoint,
    RpcMetrics,
    new_registry,
    serve_metrics,
)

from .chunk_store import ChunkStore
from .scrubber import Scrubber

PREFIX = "cloudgrpc_node"
_SERVICE = "/cloudstorage.ChunkService/"


def _put_bytes(request: Any) -> int:
    return len(request.data)


def _put_many_bytes(request: Any) -> int:
    return sum(len(item.data) for item in request.chunks)


def _get_bytes(response: Any) -> int:
    return len(response.data)


def _get_many_bytes(response: Any) -> int:
    return sum(len(result.data) for result in response.results)


class NodeMetrics:
    """One node's registry: the RPC interceptor's counters and the store's state."""

    def __init__(self, name: str, store: ChunkStore, scrubber: Scrubber) -> None:
        self.registry = new_registry()
        self.received_bytes = Counter(
            f"{PREFIX}_received_bytes", "Chunk bytes received in chunk writes (PutChunk, "
            "PutChunks), already-present chunks included", registry=self.registry)
        self.served_bytes = Counter(
            f"{PREFIX}_served_bytes", "Chunk bytes sent in chunk reads (GetChunk, GetChunks): "
            "to the gateway, to clients reading directly and to peers copying",
            registry=self.registry)
        self.rpc = RpcMetrics(
            self.registry, PREFIX,
            payload_in={_SERVICE + "PutChunk": _put_bytes,
                        _SERVICE + "PutChunks": _put_many_bytes},
            payload_out={_SERVICE + "GetChunk": _get_bytes,
                         _SERVICE + "GetChunks": _get_many_bytes},
            bytes_in=self.received_bytes, bytes_out=self.served_bytes)
        self.registry.register(NodeStateCollector(name, store, scrubber))
        self.endpoint: MetricsEndpoint | None = None

    def serve(self, host: str, port: int) -> MetricsEndpoint | None:
        """Open ``/metrics`` on host:port (port 0: off)."""
        self.endpoint = serve_metrics(self.registry, host, port, "node")
        return self.endpoint

    def stop(self) -> None:
        if self.endpoint is not None:
            self.endpoint.stop()
            self.endpoint = None


class NodeStateCollector(Collector):
    """The store's and the scrubber's figures, read from memory at each scrape."""

    def __init__(self, name: str, store: ChunkStore, scrubber: Scrubber) -> None:
        self.name = name
        self.store = store
        self.scrubber = scrubber

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        labels = ["node"]
        values = [self.name]

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            g = GaugeMetricFamily(f"{PREFIX}_{name}", doc, labels=labels)
            g.add_metric(values, float(value))
            return g

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            c = CounterMetricFamily(f"{PREFIX}_{name}", doc, labels=labels)
            c.add_metric(values, float(value))
            return c

        yield gauge("chunks", "Chunks stored on this node", self.store.chunk_count)
        yield gauge("used_bytes", "Bytes the stored chunks take", self.store.used_bytes)
        yield gauge("capacity_bytes", "Capacity this node was started with",
                    self.store.capacity_bytes)
        yield counter("scrub_chunks_verified", "Chunks the scrubber read and hashed",
                      self.scrubber.verified)
        yield counter("scrub_corrupt_found", "Chunks the scrubber found corrupt (quarantined "
                      "and reported)", self.scrubber.corrupt)
        yield gauge("scrub_last_pass_timestamp_seconds", "When the scrubber last finished a "
                    "pass over every chunk (unix time; 0 = not yet)",
                    self.scrubber.last_pass_at)
