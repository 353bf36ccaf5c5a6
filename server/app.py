"""``cloudgrpc-gateway``: wires the layers together and serves them over gRPC.

Start-up order: settings, database (migrated to the newest schema), the layers from the
bottom up (events, accounts, nodes, chunk store, namespace, pipelines), then the services
with the standard health and reflection services beside them. SIGTERM and SIGINT stop
taking new calls, let in-flight ones finish for a grace period, then exit 0.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import logging
import os
import pathlib
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from cloudgrpc_proto import cloud_storage_pb2 as pb
from cloudgrpc_proto import cloud_storage_pb2_grpc as pb_grpc
from cloudgrpc_proto.environment import ConfigError, secret_source
from cloudgrpc_proto.metrics_export import is_loopback
from cloudgrpc_proto.private_files import load_or_create_secret, private_dir

from .accounts import Accounts
from .change_feed import ChangeFeed
from .config import Settings, load_settings
from .db import Database
from .download_pipeline import DownloadPipeline
from .events import EventBus
from .fsck import Fsck
from .garbage import GarbageCollector
from .grpc_edge import EdgeInterceptor
from .key_files import ADMIN_KEY_FILE, CLUSTER_SECRET_FILE, OTP_KEY_FILE, cluster_keys
from .leader import Leadership
from .mailer import OtpMailer
from .maintenance import Maintenance
from .metadata_backup import MetadataBackup
from .metrics import GatewayMetrics
from .namespace import Namespace
from .node_pool import NodePool
from .node_registry import NodeRegistry
from .pg_listen import PgListener
from .repair import CorruptionReports, Repairer
from .replicated_store import ReplicatedStore
from .reservations import Reservations
from .services.admin import AdminServicer
from .services.auth import AuthServicer
from .services.files import FileServicer
from .services.node import NodeServicer
from .services.storage import StorageServicer
from .traffic import TrafficMeter
from .upload_pipeline import UploadPipeline

log = logging.getLogger("cloudgrpc_server")

SERVICE_NAMES = [
    pb.DESCRIPTOR.services_by_name[name].full_name
    for name in ("AuthService", "FileService", "StorageService", "PaymentService",
                 "AdminService", "NodeService")
]


@dataclass
class Gateway:
    settings: Settings
    db: Database
    events: EventBus
    accounts: Accounts
    registry: NodeRegistry
    pool: NodePool
    store: ReplicatedStore
    namespace: Namespace
    uploads: UploadPipeline
    downloads: DownloadPipeline
    maintenance: Maintenance
    payments: pb_grpc.PaymentServiceServicer
    server: grpc.Server
    health: health.HealthServicer
    port: int
    traffic: TrafficMeter | None = None
    metrics: GatewayMetrics | None = None  # None: the metrics endpoint is off
    changes: ChangeFeed | None = None
    listener: PgListener | None = None  # PostgreSQL: the LISTEN connection of the relays

    def stop(self, grace: float = 10.0) -> None:
        for name in [*SERVICE_NAMES, ""]:
            self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        self.registry.stop()
        self.maintenance.stop()
        self.events.close()  # ends the monitors' streams now instead of after the grace
        if self.changes is not None:
            # Mounts re-subscribe now (through a load balancer: to another gateway).
            self.changes.end_streams()
        self.server.stop(grace).wait()
        if self.changes is not None:
            self.changes.close()  # the grace's changes to the other gateways
        if self.listener is not None:
            self.listener.stop()
        if self.metrics is not None:
            self.metrics.stop()
        self.uploads.close()
        self.downloads.close()
        if self.traffic is not None:
            self.traffic.close()  # the last seconds' counts
        self.store.close()
        self.pool.close()
        close_payments = getattr(self.payments, "close", None)
        if close_payments is not None:
            close_payments()
        self.events.flush()
        self.db.dispose()


def resolve_keys(settings: Settings) -> Settings:
    """Fill in the gateway's secrets: from the environment, else generated once into the
    private data folder (0600 files in a 0700 folder) so the operator invents nothing.

    - the admin key (``ADMIN_KEY``, else ``DATA_DIR/admin_key``);
    - the cluster secret nodes and gateway prove to each other (``CLUSTER_SECRET``, else
      ``DATA_DIR/cluster_secret``; none only with ``INSECURE_OPEN_CLUSTER=1``);
    - the key one-time codes are hashed with (``OTP_KEY``, else ``DATA_DIR/otp_key``).
    """
    private_dir(settings.data_dir)
    changes: dict[str, str] = {}
    if not settings.admin_key:
        changes["admin_key"] = load_or_create_secret(settings.data_dir / ADMIN_KEY_FILE, 24)
    if not settings.cluster_secret and not settings.insecure_open_cluster:
        changes["cluster_secret"] = load_or_create_secret(
            settings.data_dir / CLUSTER_SECRET_FILE)
    if not settings.otp_key:
        changes["otp_key"] = load_or_create_secret(settings.data_dir / OTP_KEY_FILE)
    return replace(settings, **changes)


def security_warnings(settings: Settings) -> list[str]:
    """Insecure modes this gateway runs with, for the banner and ``--status``."""
    warnings = []
    if settings.metrics_port and not is_loopback(settings.metrics_host):
        warnings.append(f"metrics endpoint on {settings.metrics_host}:{settings.metrics_port} "
                        "is reachable beyond this machine and has no authentication")
    if not settings.cluster_secret:
        warnings.append("INSECURE: open cluster (INSECURE_OPEN_CLUSTER=1, no CLUSTER_SECRET): "
                        "anyone who reaches a node can read, write and delete chunks")
    try:
        from .services.payment import payment_warnings
    except ImportError:  # a build without the payment service
        return warnings
    return warnings + payment_warnings(settings)


def build(settings: Settings) -> Gateway:
    settings = resolve_keys(settings)
    db = Database(settings.database_url)
    db.migrate()
    events = EventBus(db)
    changes = ChangeFeed(settings.change_keepalive_s)
    # PostgreSQL: other gateways of the database may serve the same users. Their events
    # reach our monitors and their tree changes our change streams (and ours theirs),
    # over one LISTEN connection, listening before any call is served.
    listener = PgListener(db) if db.is_postgres else None
    if listener is not None:
        events.start_relay(listener)
        changes.start_relay(db, listener)
        listener.start()
    accounts = Accounts(settings, db, events, OtpMailer(settings))
    accounts.start_revocation_listener()  # devices ended on other gateways: drop their cache
    # Off by default: no endpoint, no interceptor, no per-call cost.
    metrics = GatewayMetrics(db, settings.replication_factor, settings.node_timeout_s,
                             settings.metrics_cache_s) if settings.metrics_port else None
    registry = NodeRegistry(settings, db, events)
    pool = NodePool(settings)
    registry.on_node_up = pool.forget
    registry.on_corrupt_report = _counted_reports(CorruptionReports(db, pool, events).submit,
                                                  metrics)
    store = ReplicatedStore(settings, db, registry, pool, events)
    namespace = Namespace(db, events, changes, Reservations(settings, db))
    uploads = UploadPipeline(settings, accounts, namespace, store, events)
    downloads = DownloadPipeline(namespace, store)
    repairer = Repairer(settings, db, registry, pool, events)
    collector = GarbageCollector(settings, db, pool, events)
    maintenance = Maintenance(settings, repairer, collector, Leadership(db), metrics)
    fsck = Fsck(settings, db, pool, repairer, collector, events)

    traffic = TrafficMeter(db, settings.traffic_flush_s)

    options = [
        ("grpc.max_send_message_length", 64 * 1024 * 1024),
        ("grpc.max_receive_message_length", 64 * 1024 * 1024),
        ("grpc.keepalive_time_ms", 60000),
        ("grpc.keepalive_timeout_ms", 20000),
        ("grpc.http2.min_ping_interval_without_data_ms", 5000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]
    server = grpc.server(
        cf.ThreadPoolExecutor(max_workers=settings.max_workers, thread_name_prefix="rpc"),
        options=options, maximum_concurrent_rpcs=settings.max_workers * 4,
        # The metrics interceptor goes first: it sees the edge's refusals as clients do.
        interceptors=[*([metrics.rpc] if metrics is not None else []),
                      EdgeInterceptor.from_settings(settings, accounts.authenticate)])
    pb_grpc.add_AuthServiceServicer_to_server(AuthServicer(accounts), server)
    pb_grpc.add_FileServiceServicer_to_server(
        FileServicer(accounts, namespace, uploads, downloads, changes, events,
                     settings.chunk_size, traffic), server)
    pb_grpc.add_StorageServiceServicer_to_server(
        StorageServicer(accounts, namespace, settings.chunk_size), server)
    pb_grpc.add_AdminServiceServicer_to_server(
        AdminServicer(db, events, settings.admin_key, settings.replication_factor,
                      node_timeout_s=settings.node_timeout_s, registry=registry,
                      security_warnings=security_warnings(settings), traffic=traffic,
                      speed_window_s=settings.speed_window_s,
                      payment_window_s=settings.payment_window_s, fsck=fsck,
                      backup=MetadataBackup(db, lambda: cluster_keys(settings))), server)
    pb_grpc.add_NodeServiceServicer_to_server(NodeServicer(registry), server)
    payments = _payment_servicer(settings, db, events, accounts)
    pb_grpc.add_PaymentServiceServicer_to_server(payments, server)
    health_servicer = health.HealthServicer(
        experimental_non_blocking=True,
        experimental_thread_pool=cf.ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [*SERVICE_NAMES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
         reflection.SERVICE_NAME], server)

    address = settings.address
    if settings.tls_cert and settings.tls_key:
        creds = grpc.ssl_server_credentials([(pathlib.Path(settings.tls_key).read_bytes(),
                                              pathlib.Path(settings.tls_cert).read_bytes())])
        port = server.add_secure_port(address, creds)
    else:
        port = server.add_insecure_port(address)
    if port == 0:
        raise SystemExit(f"cannot listen on {address}: address in use or not available")
    settings = replace(settings, port=port)
    if metrics is not None:
        try:
            metrics.serve(settings.metrics_host, settings.metrics_port)
        except OSError as exc:
            raise SystemExit(f"cannot serve metrics on {settings.metrics_host}:"
                             f"{settings.metrics_port}: {exc}") from exc
    registry.start()
    maintenance.start()
    traffic.start()
    server.start()
    for name in [*SERVICE_NAMES, ""]:
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return Gateway(settings, db, events, accounts, registry, pool, store, namespace, uploads,
                   downloads, maintenance, payments, server, health_servicer, port, traffic,
                   metrics, changes, listener)


def _counted_reports(submit: Callable[[str, list[str]], None],
                     metrics: GatewayMetrics | None) -> Callable[[str, list[str]], None]:
    """The nodes' corrupt-chunk reports, counted on their way to being checked."""
    if metrics is None:
        return submit

    def counted(node_id: str, hashes: list[str]) -> None:
        metrics.record_corrupt_reports(len(hashes))
        submit(node_id, hashes)

    return counted


def _payment_servicer(settings: Settings, db: Database, events: EventBus,
                      accounts: Accounts) -> pb_grpc.PaymentServiceServicer:
    """The payment service if this build has it; otherwise calls answer UNIMPLEMENTED."""
    try:
        from .services.payment import build_payment_servicer  # type: ignore[attr-defined]
    except ImportError:
        return pb_grpc.PaymentServiceServicer()
    return build_payment_servicer(settings, db, events, accounts)


def banner(gw: Gateway) -> str:
    from sqlalchemy import func, select

    from .models import StorageNode

    with gw.db.read() as s:
        capacity = s.scalar(select(func.coalesce(func.sum(StorageNode.capacity_bytes), 0))
                            .where(StorageNode.status.in_(("online", "draining")))) or 0
        nodes = s.scalar(select(func.count()).select_from(StorageNode)) or 0
    rule = "=" * 70
    db_name = gw.db.engine.url.render_as_string(hide_password=True)
    lines = [
        rule,
        "CLOUD STORAGE PLATFORM - SERVER (DYNAMIC STORAGE + PAYMENT SYSTEM)",
        rule,
        f"Current Global Storage: {capacity / 1024**3:.2f} GB "
        + ("(no nodes registered)" if not nodes else f"({nodes} nodes known)"),
        "Storage will grow as nodes are added!",
        f"Database: {db_name}",
        f"Replication factor: {gw.settings.replication_factor}, "
        f"chunk size: {gw.settings.chunk_size // 1024} KiB",
        "OTP delivery: " + (f"SMTP {gw.settings.smtp_host}:{gw.settings.smtp_port}"
                            if gw.settings.mail_configured
                            else "console (test mode fallback: no mail configured)"),
        f"Server listening on port {gw.port}",
        "Metrics: " + (f"{gw.metrics.endpoint.url} (no authentication)"
                       if gw.metrics is not None and gw.metrics.endpoint is not None
                       else "off (--metrics-port / METRICS_PORT)"),
        "Admin key: " + (f"from {secret_source('ADMIN_KEY')}" if secret_source("ADMIN_KEY")
                         else f"kept in {gw.settings.data_dir / ADMIN_KEY_FILE} (mode 0600)"),
        "Cluster secret: " + (
            "none" if not gw.settings.cluster_secret
            else f"from {secret_source('CLUSTER_SECRET')}" if secret_source("CLUSTER_SECRET")
            else f"kept in {gw.settings.data_dir / CLUSTER_SECRET_FILE} (mode 0600; nodes "
                 "take it with --cluster-secret-file)"),
        "Payments: " + (getattr(gw.payments, "mode", "") or "not available in this build"),
        *(f"*** {warning} ***" for warning in security_warnings(gw.settings)),
        rule,
    ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The command line, apart so deployment files can be checked against it."""
    parser = argparse.ArgumentParser(
        prog="cloudgrpc-gateway", description="Run the CloudGrpc gateway.",
        epilog="--restore exits 0 restored, 1 the load failed (rolled back), 2 bad setting, "
        "4 no such file, 5 a different key in DATA_DIR, 10 the database is not empty or a "
        "schema is too new, 12 database unreachable, 14 not a usable backup.")
    parser.add_argument("--host", help="address to bind (GRPC_SERVER_HOST)")
    parser.add_argument("--port", type=int, help="port to bind, 0 = any (GRPC_SERVER_PORT)")
    parser.add_argument("--data-dir", help="folder for the embedded database (DATA_DIR)")
    parser.add_argument("--tls-cert", help="PEM certificate chain for TLS")
    parser.add_argument("--tls-key", help="PEM private key for TLS")
    parser.add_argument("--metrics-port", type=int,
                        help="serve Prometheus metrics at /metrics on this port, 0 = off "
                             "(METRICS_PORT; default off)")
    parser.add_argument("--metrics-host",
                        help="address of the metrics endpoint (METRICS_HOST; default "
                             "127.0.0.1: it has no authentication)")
    parser.add_argument("--restore", metavar="FILE",
                        help="load a metadata backup (cloudgrpc-admin --backup) into an empty "
                        "database and its keys into DATA_DIR, then exit without serving")
    parser.add_argument("--overwrite-keys", action="store_true",
                        help="with --restore: replace key files in DATA_DIR that differ "
                        "from the backup's")
    parser.add_argument("--log-level", default=os.environ.get("LOG_LEVEL", "INFO"))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.overwrite_keys and not args.restore:
        parser.error("--overwrite-keys goes with --restore")
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"cloudgrpc-gateway: bad setting: {exc}", file=sys.stderr)
        return 2
    overrides = {k: v for k, v in {
        "host": args.host, "port": args.port,
        "data_dir": pathlib.Path(args.data_dir) if args.data_dir else None,
        "tls_cert": args.tls_cert, "tls_key": args.tls_key,
        "metrics_port": args.metrics_port, "metrics_host": args.metrics_host,
    }.items() if v is not None}
    if "data_dir" in overrides and not secret_source("DATABASE_URL") and \
            settings.database_url.startswith("sqlite"):
        overrides["database_url"] = f"sqlite:///{overrides['data_dir'] / 'cloudgrpc.db'}"
    settings = replace(settings, **overrides)
    if not 0 <= settings.metrics_port <= 65535:
        print("cloudgrpc-gateway: bad setting: METRICS_PORT must be 0..65535 (0 = off)",
              file=sys.stderr)
        return 2
    if args.restore:
        from .metadata_restore import run_restore

        return run_restore(settings, pathlib.Path(args.restore),
                           overwrite_keys=args.overwrite_keys)
    try:
        gw = build(settings)
    except Exception as exc:  # noqa: BLE001 - one readable line, then exit
        log.debug("start-up failed", exc_info=True)
        print(f"cloudgrpc-gateway: cannot start: {exc}", file=sys.stderr)
        return 1
    print(banner(gw), flush=True)
    done = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal %d: shutting down", signum)
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    done.wait()
    gw.stop(grace=10.0)
    print("gateway stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
