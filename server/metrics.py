"""The gateway's Prometheus metrics: every name it exports is defined here.

Two kinds of figures, kept apart on purpose:

- **This gateway's own activity**, counted in process as it happens (``cloudgrpc_gateway_*``):
  calls by method and status code with their latency, file bytes uploaded and downloaded
  through this gateway, sign-in steps by outcome, and, on the gateway that holds the
  maintenance leadership, repair and garbage-collection progress.
- **The cluster's state as the database holds it** (``cloudgrpc_cluster_*``): chunks stored,
  under-replicated (by cause, with the admin status's definition) and awaiting repair, node
  capacity and use, users and quotas, active sessions, payments by state, provider and
  tier. ``ClusterCollector`` reads them at scrape time, at most once per
  ``METRICS_CACHE_S``: every gateway sharing a database reports the same values, so
  dashboards take ``max`` over gateways.

No label or value is ever a user id, an email, a path, a phone number or a token: labels
are method names of the fixed services, gRPC codes, node names and tier names (chosen by
the operator), payment providers (a fixed list) and states.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter, Gauge
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from cloudgrpc_proto.metrics_export import (
    MetricsEndpoint,
    RpcMetrics,
    new_registry,
    serve_metrics,
)

from .accounts import active_sessions
from .db import Database
from .models import Chunk, Payment, StorageNode, StorageTier, User, utcnow
from .shortfall import count_short

# The admin status's own count of short chunks, so the gauge and ``--status`` always agree.

log = logging.getLogger(__name__)

PREFIX = "cloudgrpc_gateway"
CLUSTER = "cloudgrpc_cluster"

UPLOAD_FILE = "/cloudstorage.FileService/UploadFile"
UPLOAD_SMALL_FILES = "/cloudstorage.FileService/UploadSmallFiles"
DOWNLOAD_FILE = "/cloudstorage.FileService/DownloadFile"
DOWNLOAD_SMALL_FILES = "/cloudstorage.FileService/DownloadSmallFiles"
# Open for as long as the client watches: counted, never timed.
UNTIMED = frozenset({"/cloudstorage.FileService/WatchChanges",
                     "/cloudstorage.AdminService/StreamSystemEvents"})

# The sign-in steps, by method; and how a status code reads as an outcome.
SIGN_IN_STEPS = {
    "/cloudstorage.AuthService/VerifyOTP": "verify_code",
    "/cloudstorage.AuthService/Enroll": "enroll",
    "/cloudstorage.AuthService/Login": "login",
    "/cloudstorage.AuthService/RefreshSession": "refresh",
}
REFUSED_CODES = frozenset({"UNAUTHENTICATED", "PERMISSION_DENIED", "INVALID_ARGUMENT",
                           "NOT_FOUND", "ALREADY_EXISTS", "FAILED_PRECONDITION"})


def sign_in_outcome(code: str) -> str:
    """``success``, ``refused`` (wrong or used code, unknown account...), ``throttled``
    (rate limit or lock-out) or ``error`` (anything else)."""
    if code == "OK":
        return "success"
    if code in REFUSED_CODES:
        return "refused"
    if code == "RESOURCE_EXHAUSTED":
        return "throttled"
    return "error"


def _upload_bytes(message: Any) -> int:
    return len(message.chunk_data) if message.WhichOneof("data") == "chunk_data" else 0


def _small_upload_bytes(message: Any) -> int:
    return sum(len(f.data) for f in message.files)


def _download_bytes(message: Any) -> int:
    return len(message.chunk_data) if message.WhichOneof("data") == "chunk_data" else 0


def _small_download_bytes(message: Any) -> int:
    return len(message.data)


class GatewayMetrics:
    """This gateway's registry, its in-process counters and the hooks that move them."""

    def __init__(self, db: Database | None = None, replication_factor: int = 2,
                 node_timeout_s: float = 30.0, cache_s: float = 15.0) -> None:
        self.registry = new_registry()
        r = self.registry
        self.upload_bytes = Counter(
            f"{PREFIX}_upload_bytes", "File bytes received from clients in uploads",
            registry=r)
        self.download_bytes = Counter(
            f"{PREFIX}_download_bytes", "File bytes sent to clients in downloads through "
            "the gateway (direct reads from nodes are counted by the nodes)", registry=r)
        self.sign_ins = Counter(
            f"{PREFIX}_sign_ins", "Sign-in steps by outcome (success, refused, throttled, "
            "error)", ["step", "outcome"], registry=r)
        self.rpc = RpcMetrics(
            r, PREFIX,
            payload_in={UPLOAD_FILE: _upload_bytes, UPLOAD_SMALL_FILES: _small_upload_bytes},
            payload_out={DOWNLOAD_FILE: _download_bytes,
                         DOWNLOAD_SMALL_FILES: _small_download_bytes},
            bytes_in=self.upload_bytes, bytes_out=self.download_bytes, untimed=UNTIMED,
            on_result=self._on_rpc_result)
        # Maintenance: moves only on the gateway holding the maintenance leadership.
        self.maintenance_leader = Gauge(
            f"{PREFIX}_maintenance_leader", "1 while this gateway runs repair and garbage "
            "collection for the cluster", registry=r)
        self.maintenance_failures = Counter(
            f"{PREFIX}_maintenance_failures", "Repair or garbage-collection passes that "
            "failed with an error", ["task"], registry=r)
        self.repair_passes = Counter(f"{PREFIX}_repair_passes", "Repair passes finished",
                                     registry=r)
        self.repair_copied = Counter(f"{PREFIX}_repair_chunks_copied",
                                     "Chunk copies repair made", registry=r)
        self.repair_copied_bytes = Counter(f"{PREFIX}_repair_bytes_copied",
                                           "Bytes repair copied between nodes", registry=r)
        self.repair_failed = Counter(f"{PREFIX}_repair_copies_failed",
                                     "Chunk copies repair attempted and failed", registry=r)
        self.repair_trimmed = Counter(f"{PREFIX}_repair_replicas_trimmed",
                                      "Extra replicas repair removed", registry=r)
        self.repair_last_run = Gauge(f"{PREFIX}_repair_last_run_timestamp_seconds",
                                     "When the last repair pass finished (unix time)",
                                     registry=r)
        self.gc_passes = Counter(f"{PREFIX}_gc_passes", "Garbage-collection passes finished",
                                 registry=r)
        self.gc_collected = Counter(f"{PREFIX}_gc_chunks_collected",
                                    "Unreferenced chunks garbage collection deleted",
                                    registry=r)
        self.gc_freed_bytes = Counter(f"{PREFIX}_gc_bytes_freed",
                                      "Bytes of the chunks garbage collection deleted",
                                      registry=r)
        self.gc_node_orphans = Counter(f"{PREFIX}_gc_node_orphans_removed",
                                       "Stray chunk files removed from nodes", registry=r)
        self.gc_last_run = Gauge(f"{PREFIX}_gc_last_run_timestamp_seconds",
                                 "When the last garbage-collection pass finished (unix time)",
                                 registry=r)
        self.corrupt_reports = Counter(
            f"{PREFIX}_corrupt_chunks_reported", "Corrupt chunks the nodes' scrubbers "
            "reported to this gateway", registry=r)
        self.cluster: ClusterCollector | None = None
        if db is not None:
            self.cluster = ClusterCollector(db, replication_factor, node_timeout_s, cache_s)
            r.register(self.cluster)
        self.endpoint: MetricsEndpoint | None = None

    # --- hooks ----------------------------------------------------------------------------

    def _on_rpc_result(self, full_method: str, code: str) -> None:
        step = SIGN_IN_STEPS.get(full_method)
        if step is not None:
            self.sign_ins.labels(step, sign_in_outcome(code)).inc()

    def record_repair(self, report: Any) -> None:
        """After a repair pass (a ``repair.RepairReport``)."""
        self.repair_passes.inc()
        self.repair_copied.inc(report.copied)
        self.repair_copied_bytes.inc(report.copied_bytes)
        self.repair_failed.inc(report.failed)
        self.repair_trimmed.inc(report.trimmed)
        self.repair_last_run.set(time.time())

    def record_gc(self, report: Any) -> None:
        """After a garbage-collection pass (a ``garbage.GcReport``)."""
        self.gc_passes.inc()
        self.gc_collected.inc(report.chunks)
        self.gc_freed_bytes.inc(report.bytes)
        self.gc_node_orphans.inc(report.node_orphans)
        self.gc_last_run.set(time.time())

    def record_failure(self, task: str) -> None:
        self.maintenance_failures.labels(task).inc()

    def record_corrupt_reports(self, count: int) -> None:
        self.corrupt_reports.inc(count)

    # --- endpoint -------------------------------------------------------------------------

    def serve(self, host: str, port: int) -> MetricsEndpoint | None:
        """Open ``/metrics`` on host:port (port 0: off)."""
        self.endpoint = serve_metrics(self.registry, host, port, "gateway")
        return self.endpoint

    def stop(self) -> None:
        if self.endpoint is not None:
            self.endpoint.stop()
            self.endpoint = None


@dataclass
class ClusterFigures:
    """One read of the database, kept for ``cache_s``."""

    read_at: float  # unix time of the read
    ok: bool
    metrics: list[Metric] = field(default_factory=list)


class ClusterCollector(Collector):
    """The database-derived gauges, computed at scrape time behind a short cache.

    A scrape within ``cache_s`` of the last database read answers that read's figures
    (``cloudgrpc_cluster_read_timestamp_seconds`` says when it was taken); only a later
    scrape reads again, and concurrent scrapes wait for the one read in progress instead of
    each starting its own. So however many Prometheus servers scrape however often, the
    database sees at most one set of status queries per ``cache_s`` per gateway. A failed
    read answers ``cloudgrpc_cluster_database_up 0`` (and is cached as well, so a database
    in trouble is not hammered by scrapes) without raising: the in-process metrics of the
    same scrape still answer.
    """

    def __init__(self, db: Database, replication_factor: int, node_timeout_s: float,
                 cache_s: float = 15.0) -> None:
        self.db = db
        self.factor = replication_factor
        self.node_timeout_s = node_timeout_s
        self.cache_s = max(0.0, cache_s)
        self._lock = threading.Lock()
        self._figures: ClusterFigures | None = None
        self._read_monotonic = 0.0

    def describe(self) -> Iterable[Metric]:
        return []  # names are known only after a read; nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            now = time.monotonic()
            if self._figures is None or now - self._read_monotonic >= self.cache_s:
                self._figures = self._read()
                self._read_monotonic = time.monotonic()
            figures = self._figures
        up = GaugeMetricFamily(f"{CLUSTER}_database_up",
                               "1 when the last read of the cluster's figures succeeded")
        up.add_metric([], 1.0 if figures.ok else 0.0)
        yield up
        read_at = GaugeMetricFamily(f"{CLUSTER}_read_timestamp_seconds",
                                    "When the cluster figures were read from the database")
        read_at.add_metric([], figures.read_at)
        yield read_at
        yield from figures.metrics

    def _read(self) -> ClusterFigures:
        try:
            return ClusterFigures(time.time(), True, self._read_figures())
        except Exception:  # noqa: BLE001 - a scrape must answer; the gauge says it failed
            log.warning("metrics: cannot read the cluster figures", exc_info=True)
            return ClusterFigures(time.time(), False)

    def _read_figures(self) -> list[Metric]:
        now = utcnow()
        with self.db.read() as s:
            nodes = list(s.scalars(select(StorageNode)))
            chunks = s.scalar(select(func.count()).select_from(Chunk)) or 0
            short, referenced = count_short(s, nodes, self.factor)
            users = s.scalar(select(func.count()).select_from(User)) or 0
            allocated = s.scalar(select(func.coalesce(func.sum(User.storage_allocated), 0))) or 0
            used = s.scalar(select(func.coalesce(func.sum(User.storage_used), 0))) or 0
            sessions = active_sessions(s)
            tier = func.coalesce(StorageTier.name, Payment.tier_id)
            payments = s.execute(
                select(Payment.status, Payment.provider, tier, func.count(),
                       func.coalesce(func.sum(Payment.amount_xaf), 0))
                .outerjoin(StorageTier, StorageTier.id == Payment.tier_id)
                .group_by(Payment.status, Payment.provider, tier)).all()
        out: list[Metric] = []

        def gauge(name: str, doc: str, value: float) -> None:
            g = GaugeMetricFamily(f"{CLUSTER}_{name}", doc)
            g.add_metric([], float(value))
            out.append(g)

        gauge("replication_factor", "Copies every chunk should have (REPLICATION_FACTOR)",
              self.factor)
        gauge("chunks", "Chunks the database knows (referenced and garbage)", chunks)
        gauge("chunks_referenced", "Chunks some file (trash included) references", referenced)
        gauge("chunks_garbage", "Chunks no file references, awaiting garbage collection",
              max(0, int(chunks) - referenced))
        under = GaugeMetricFamily(
            f"{CLUSTER}_chunks_under_replicated", "Referenced chunks with fewer live copies "
            "than the replication factor, by cause (as cloudgrpc-admin --status counts them)",
            labels=["reason"])
        under.add_metric(["pending"], short.pending)
        under.add_metric(["no_room"], short.no_room)
        under.add_metric(["too_few_nodes"], short.too_few_nodes)
        out.append(under)
        gauge("chunks_awaiting_repair", "Under-replicated chunks repair can fix now (an online "
              "node with room exists)", short.pending)
        gauge("missing_copies", "Copies missing over all under-replicated chunks",
              short.missing_copies)

        by_status: dict[str, int] = {s: 0 for s in ("online", "offline", "draining",
                                                     "drain-offline", "drained")}
        up = GaugeMetricFamily(f"{CLUSTER}_node_up", "1 while a node is online (or draining) "
                               "as the gateway sees it, 0 when offline", labels=["node"])
        capacity = GaugeMetricFamily(f"{CLUSTER}_node_capacity_bytes",
                                     "A node's declared capacity", labels=["node"])
        node_used = GaugeMetricFamily(f"{CLUSTER}_node_used_bytes",
                                      "Bytes a node reports stored", labels=["node"])
        node_chunks = GaugeMetricFamily(f"{CLUSTER}_node_chunks",
                                        "Chunks a node reports stored", labels=["node"])
        age = GaugeMetricFamily(f"{CLUSTER}_node_heartbeat_age_seconds",
                                "Seconds since a node's last heartbeat", labels=["node"])
        for n in nodes:
            by_status[n.status] = by_status.get(n.status, 0) + 1
            if n.status == "drained":
                continue  # left the cluster: no longer a node to watch
            up.add_metric([n.name], 1.0 if n.status in ("online", "draining") else 0.0)
            capacity.add_metric([n.name], n.capacity_bytes)
            node_used.add_metric([n.name], n.used_bytes)
            node_chunks.add_metric([n.name], n.chunk_count)
            if n.last_heartbeat is not None:
                age.add_metric([n.name], max(0.0, (now - n.last_heartbeat).total_seconds()))
        statuses = GaugeMetricFamily(f"{CLUSTER}_nodes", "Registered nodes by status",
                                     labels=["status"])
        for status, count in sorted(by_status.items()):
            statuses.add_metric([status], count)
        out += [up, capacity, node_used, node_chunks, age, statuses]
        online = [n for n in nodes if n.status in ("online", "draining")]
        gauge("capacity_bytes", "Capacity of the online nodes",
              sum(n.capacity_bytes for n in online))
        gauge("stored_bytes", "Bytes stored on the online nodes",
              sum(n.used_bytes for n in online))

        gauge("users", "Accounts", users)
        gauge("quota_allocated_bytes", "Quota allocated to all accounts", allocated)
        gauge("quota_used_bytes", "Quota used by all accounts (files' sizes)", used)
        gauge("active_sessions", "Sessions neither expired nor ended", sessions)

        count = GaugeMetricFamily(f"{CLUSTER}_payments", "Payments by state, provider and "
                                  "tier", labels=["state", "provider", "tier"])
        amount = GaugeMetricFamily(f"{CLUSTER}_payments_amount_xaf", "Sum of the payments' "
                                   "amounts (XAF) by state, provider and tier",
                                   labels=["state", "provider", "tier"])
        for status, provider, tier_name, n_payments, total in payments:
            labels = [str(status), str(provider), str(tier_name)]
            count.add_metric(labels, int(n_payments))
            amount.add_metric(labels, int(total))
        out += [count, amount]
        return out

