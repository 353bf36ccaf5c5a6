"""``cloudgrpc-node``: wire the chunk store, the gRPC server and the registrar, run until signalled.

Lifecycle, in the order that keeps clients safe: open the store (cleans torn writes), bind and
start serving, then register with the gateway (so it never places chunks on a node that cannot
take them). On SIGTERM/SIGINT: health goes NOT_SERVING (load balancers and the gateway stop
sending), the node deregisters, and ``server.stop(grace)`` lets in-flight chunk transfers
finish before the process exits 0.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from concurrent import futures
from types import FrameType

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from cloudgrpc_proto.memory import reuse_chunk_buffers
from cloudgrpc_proto.metrics_export import is_loopback

from .chunk_codec import ChunkCodec
from .chunk_store import ChunkStore
from .config import NodeConfig, parse_config
from .metrics import NodeMetrics
from .registration import NODE_KEY_FILE, NodeIdentity, NodeKey, Registrar, cpu_cores
from .scrubber import Scrubber
from .service import SERVER_OPTIONS, SERVICE_NAME, ChunkService, add_to_server

_stdout_lock = threading.Lock()


def say(text: str) -> None:
    """One whole line (or banner) on stdout: the registration thread and the main thread
    both print, and ``print`` writes the text and its newline separately, so two prints
    could interleave mid-line (a harness then missed the "registered" line)."""
    with _stdout_lock:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

log = logging.getLogger("cloudgrpc_node")

STOP_GRACE_S = 10.0
INSECURE_WARNING = (
    "INSECURE: open node (--insecure / INSECURE_OPEN_CLUSTER=1): anyone who reaches it can "
    "read, write and delete its chunks"
)


class NodeServer:
    """One running storage node: store + gRPC server + health + registrar."""

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.store = ChunkStore(config.data_dir, config.capacity_bytes,
                                ChunkCodec(config.compression, config.compression_level),
                                cache_writes=config.cache_writes)
        self.scrubber = Scrubber(self.store, config.scrub_interval_s, config.scrub_rate_bytes_s)
        # Off by default: no endpoint and no interceptor, so no per-call cost.
        self.metrics = (
            NodeMetrics(config.name, self.store, self.scrubber) if config.metrics_port else None
        )
        self.server = grpc.server(
            futures.ThreadPoolExecutor(
                max_workers=config.workers, thread_name_prefix=f"node-{config.name}"
            ),
            options=SERVER_OPTIONS,
            interceptors=[self.metrics.rpc] if self.metrics is not None else None,
        )
        peer_credentials = (
            grpc.ssl_channel_credentials(root_certificates=_read_optional(config.gateway_ca))
            if config.tls
            else None
        )
        add_to_server(
            ChunkService(
                self.store,
                config.cluster_secret,
                insecure=config.insecure,
                peer_credentials=peer_credentials,
                node_id=lambda: self.registrar.node_id if self.registrar else None,
            ),
            self.server,
        )
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), self.server
        )
        self.port = 0
        self.registrar: Registrar | None = None

    @property
    def gateway_credentials(self) -> grpc.ChannelCredentials | None:
        if self.config.gateway_ca is None:
            return None
        return grpc.ssl_channel_credentials(
            root_certificates=_read_optional(self.config.gateway_ca)
        )

    def start(self) -> int:
        """Bind, serve, start registering; returns the bound port (useful with PORT 0)."""
        address = f"{self.config.host}:{self.config.port}"
        if self.config.tls:
            assert self.config.tls_cert is not None and self.config.tls_key is not None
            creds = grpc.ssl_server_credentials(
                [(self.config.tls_key.read_bytes(), self.config.tls_cert.read_bytes())]
            )
            self.port = self.server.add_secure_port(address, creds)
        else:
            self.port = self.server.add_insecure_port(address)
        if self.port == 0:  # older grpcio reports a failed bind this way instead of raising
            raise RuntimeError(f"failed to bind {address}")
        if self.metrics is not None:
            self.metrics.serve(self.config.metrics_host, self.config.metrics_port)
        self.server.start()
        for service in ("", SERVICE_NAME):
            self.health.set(service, health_pb2.HealthCheckResponse.SERVING)
        identity = NodeIdentity(
            name=self.config.name,
            host=self.config.advertise_host,
            port=self.port,
            capacity_bytes=self.config.capacity_bytes,
            cpu_cores=cpu_cores(),
            cluster_secret=self.config.cluster_secret,
        )
        self.registrar = Registrar(
            identity,
            self.store,
            self.config.gateway,
            heartbeat_interval_s=self.config.heartbeat_interval_s,
            credentials=self.gateway_credentials,
            on_registered=self._announce_registered,
            scrubber=self.scrubber,
            key=NodeKey(self.config.data_dir / NODE_KEY_FILE),
        )
        self.registrar.start()
        self.scrubber.start()
        return self.port

    def _announce_registered(self, node_id: str) -> None:
        # Harnesses wait for this exact line on stdout; keep its wording stable.
        say(f"node {self.config.name} registered with gateway {self.config.gateway} as {node_id}")

    def stop(self, grace: float = STOP_GRACE_S) -> None:
        """NOT_SERVING, deregister, then let in-flight calls finish within ``grace``."""
        self.health.enter_graceful_shutdown()
        self.scrubber.stop()
        if self.registrar is not None:
            self.registrar.stop()
        self.server.stop(grace=grace).wait()
        if self.metrics is not None:
            self.metrics.stop()

    def banner(self) -> str:
        cfg = self.config
        scheme = "tls" if cfg.tls else "insecure"
        warnings = [f"  *** {INSECURE_WARNING} ***"] if cfg.insecure else []
        if self.metrics is not None and not is_loopback(cfg.metrics_host):
            warnings.append(
                f"  *** metrics endpoint on {cfg.metrics_host}:{cfg.metrics_port} is reachable "
                "beyond this machine and has no authentication ***"
            )
        return "\n".join(
            [
                "=" * 60,
                f"CloudGrpc storage node {cfg.name}",
                f"  listening  {cfg.host}:{self.port} ({scheme}), advertised as "
                f"{cfg.advertise_host}:{self.port}",
                f"  capacity   {cfg.capacity_bytes / 1024**3:.2f} GiB "
                f"({self.store.used_bytes} bytes used in {self.store.chunk_count} chunks)",
                f"  data dir   {cfg.data_dir.resolve()}",
                f"  compress   {self.store.codec.name} "
                f"({self.store.logical_bytes} bytes before compression)",
                f"  gateway    {cfg.gateway}",
                f"  cluster    {'OPEN (no cluster secret)' if cfg.insecure else 'cluster secret'}",
                "  metrics    "
                + (
                    f"{self.metrics.endpoint.url} (no authentication)"
                    if self.metrics is not None and self.metrics.endpoint is not None
                    else "off (--metrics-port / NODE_METRICS_PORT)"
                ),
                *warnings,
                "=" * 60,
            ]
        )


def _read_optional(path: os.PathLike[str] | None) -> bytes | None:
    if path is None:
        return None
    with open(path, "rb") as handle:
        return handle.read()


def _setup_logging() -> None:
    level = os.environ.get("LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def main(argv: list[str] | None = None) -> int:
    """Console script entry point; returns the process exit code."""
    reuse_chunk_buffers()  # every GetChunk/PutChunk is a fresh 4 MiB buffer
    config = parse_config(argv)
    _setup_logging()
    stopping = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s: shutting down", signal.Signals(signum).name)
        stopping.set()

    # Installed before anything starts, so an early Ctrl-C still takes the clean path.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        node = NodeServer(config)
        node.start()
    except (RuntimeError, OSError) as exc:
        print(f"cloudgrpc-node: cannot start: {exc}", file=sys.stderr, flush=True)
        return 1
    if config.insecure:
        log.warning(INSECURE_WARNING)
    say(node.banner())
    while not stopping.wait(1.0):
        pass
    node.stop()
    log.info("node %s stopped", config.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
