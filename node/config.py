"""The node's settings: command line first, then the environment (and ``.env``), then defaults.

Kept apart from the server wiring so the precedence rules (``--gateway`` over
``CLOUDGRPC_GATEWAY`` over ``GRPC_SERVER_HOST:GRPC_SERVER_PORT``; ``--data-dir`` over
``DATA_DIR/node_storage_NAME`` over ``./node_storage_NAME``) are written down in one place
and testable without starting anything.
"""

from __future__ import annotations

import argparse
import socket
from dataclasses import dataclass
from pathlib import Path

from cloudgrpc_proto import environment
from cloudgrpc_proto.private_files import read_private

from .chunk_codec import DEFAULT_LEVEL, MAX_LEVEL

GIB = 1024**3
COMPRESSION_CHOICES = {"zstd": True, "off": False}
DEFAULT_WORKERS = 16
_WILDCARDS = {"", "0.0.0.0", "::", "[::]"}
# One line, said when no cluster secret is found: how to pass the one the gateway generated.
MISSING_SECRET = (
    "no cluster secret: pass --cluster-secret-file F with the gateway's DATA_DIR/cluster_secret "
    "(or set CLUSTER_SECRET, CLUSTER_SECRET_FILE, or DATA_DIR to the gateway's data folder); "
    "--insecure or INSECURE_OPEN_CLUSTER=1 runs an open node, for experiments only"
)


@dataclass(frozen=True)
class NodeConfig:
    """Everything ``cloudgrpc-node`` needs to run."""

    name: str
    host: str
    port: int
    capacity_bytes: int
    data_dir: Path
    gateway: str
    cluster_secret: str
    heartbeat_interval_s: float
    advertise_host: str
    workers: int = DEFAULT_WORKERS
    scrub_interval_s: float = 604800.0
    scrub_rate_bytes_s: float = 20e6
    tls_cert: Path | None = None
    tls_key: Path | None = None
    gateway_ca: Path | None = None
    # Explicit opt-in to run without a cluster secret (experiments only; loud in the banner).
    insecure: bool = False
    # Prometheus endpoint: 0 = off. Not METRICS_PORT: the gateway reads that one, and both
    # often share one machine's environment.
    metrics_port: int = 0
    metrics_host: str = "127.0.0.1"
    # CHUNK_COMPRESSION (zstd|off) and CHUNK_COMPRESSION_LEVEL: see node.chunk_codec.
    compression: bool = True
    compression_level: int = DEFAULT_LEVEL
    # NODE_CACHE_WRITES: keep written chunks in the page cache (see ChunkStore)
    cache_writes: bool = False

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None


def _capacity_gb(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"capacity must be a number of GB, got {raw!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("capacity must be positive")
    return value


def _port(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port must be a number, got {raw!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError("port must be 0..65535 (0 = any free port)")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cloudgrpc-node",
        description="CloudGrpc storage node: stores chunks on local disk, "
        "registers and heartbeats with the gateway.",
    )
    parser.add_argument("name", metavar="NAME", help="unique node name, e.g. node1")
    parser.add_argument("host", metavar="HOST", help="address to bind, e.g. 127.0.0.1")
    parser.add_argument("port", metavar="PORT", type=_port, help="port to bind (0 = any free)")
    parser.add_argument(
        "capacity_gb", metavar="CAPACITY_GB", type=_capacity_gb, help="capacity in GiB (0.5 ok)"
    )
    parser.add_argument(
        "--gateway",
        metavar="H:P",
        help="gateway address (env CLOUDGRPC_GATEWAY or GRPC_SERVER_HOST:GRPC_SERVER_PORT, "
        "default localhost:50051)",
    )
    parser.add_argument(
        "--data-dir",
        metavar="D",
        type=Path,
        help="chunk directory (default DATA_DIR/node_storage_NAME or ./node_storage_NAME)",
    )
    parser.add_argument(
        "--advertise-host",
        metavar="H",
        help="host the gateway should dial (default HOST; the hostname when HOST is a wildcard)",
    )
    parser.add_argument(
        "--cluster-secret-file",
        metavar="F",
        type=Path,
        help="file holding the cluster secret the gateway generated (env CLUSTER_SECRET or "
        "CLUSTER_SECRET_FILE; default DATA_DIR/cluster_secret when that file exists)",
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="run without a cluster secret: anyone who reaches this node can read, write and "
        "delete its chunks (experiments only; env INSECURE_OPEN_CLUSTER=1)",
    )
    parser.add_argument(
        "--metrics-port",
        metavar="P",
        type=_port,
        help="serve Prometheus metrics at /metrics on this port, 0 = off (env "
        "NODE_METRICS_PORT; default off)",
    )
    parser.add_argument(
        "--metrics-host",
        metavar="H",
        help="address of the metrics endpoint (env NODE_METRICS_HOST; default 127.0.0.1: it "
        "has no authentication)",
    )
    parser.add_argument("--tls-cert", metavar="F", type=Path, help="serve TLS with this cert")
    parser.add_argument("--tls-key", metavar="F", type=Path, help="private key for --tls-cert")
    parser.add_argument(
        "--gateway-ca",
        metavar="F",
        type=Path,
        help="CA bundle to verify the gateway (and, when serving TLS, peer nodes) over TLS",
    )
    return parser


def default_gateway() -> str:
    explicit = environment.get_str("CLOUDGRPC_GATEWAY", "")
    if explicit:
        return explicit
    host = environment.get_str("GRPC_SERVER_HOST", "") or "localhost"
    port = environment.get_str("GRPC_SERVER_PORT", "") or "50051"
    return f"{host}:{port}"


def default_data_dir(name: str) -> Path:
    base = environment.get_str("DATA_DIR", "")
    return (Path(base) if base else Path(".")) / f"node_storage_{name}"


def resolve_cluster_secret(explicit_file: Path | None) -> str:
    """The cluster secret: ``--cluster-secret-file``, ``$CLUSTER_SECRET``,
    ``$CLUSTER_SECRET_FILE``, then the gateway's ``DATA_DIR/cluster_secret`` (a node on the
    gateway's machine finds it there). Empty when none is found."""
    if explicit_file is not None:
        return read_private(explicit_file).decode("utf-8").strip()
    secret = environment.get_str("CLUSTER_SECRET", "")
    if secret:
        return secret
    named = environment.get_str("CLUSTER_SECRET_FILE", "")
    if named:
        return read_private(named).decode("utf-8").strip()
    beside_gateway = Path(environment.get_str("DATA_DIR", "") or "data") / "cluster_secret"
    try:
        return read_private(beside_gateway).decode("utf-8").strip()
    except FileNotFoundError:
        return ""


def parse_config(argv: list[str] | None = None) -> NodeConfig:
    """Parse the command line and fill the rest from the environment; exits on bad input."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key go together")
    try:
        interval = environment.get_float("HEARTBEAT_INTERVAL_S", 5.0)
        workers = environment.get_int("NODE_WORKERS", DEFAULT_WORKERS)
        scrub_interval = environment.get_float("SCRUB_INTERVAL_S", 604800.0)
        scrub_rate = environment.get_float("SCRUB_RATE_MBPS", 20.0) * 1e6
        metrics_port = (args.metrics_port if args.metrics_port is not None
                        else environment.get_int("NODE_METRICS_PORT", 0))
        metrics_host = (args.metrics_host
                        or environment.get_str("NODE_METRICS_HOST", "") or "127.0.0.1")
    except environment.ConfigError as exc:
        parser.error(str(exc))
    if interval <= 0:
        parser.error("HEARTBEAT_INTERVAL_S must be positive")
    if not 0 <= metrics_port <= 65535:
        parser.error("NODE_METRICS_PORT must be 0..65535 (0 = off)")
    compression, level = _compression(parser)
    try:
        insecure = args.insecure or environment.get_bool("INSECURE_OPEN_CLUSTER", False)
        cache_writes = environment.get_bool("NODE_CACHE_WRITES", False)
    except environment.ConfigError as exc:
        parser.error(str(exc))
    try:
        cluster_secret = resolve_cluster_secret(args.cluster_secret_file)
    except OSError as exc:
        parser.error(f"cannot read the cluster secret: {exc}")
    if not cluster_secret and not insecure:
        parser.exit(2, f"{parser.prog}: {MISSING_SECRET}\n")
    advertise = args.advertise_host or args.host
    if advertise in _WILDCARDS:
        advertise = socket.gethostname()
    return NodeConfig(
        name=args.name,
        host=args.host,
        port=args.port,
        capacity_bytes=int(args.capacity_gb * GIB),
        data_dir=args.data_dir or default_data_dir(args.name),
        gateway=args.gateway or default_gateway(),
        cluster_secret=cluster_secret,
        heartbeat_interval_s=interval,
        advertise_host=advertise,
        workers=max(1, workers),
        scrub_interval_s=scrub_interval,
        scrub_rate_bytes_s=scrub_rate,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        gateway_ca=args.gateway_ca,
        insecure=insecure and not cluster_secret,
        metrics_port=metrics_port,
        metrics_host=metrics_host,
        compression=compression,
        cache_writes=cache_writes,
        compression_level=level,
    )


def _compression(parser: argparse.ArgumentParser) -> tuple[bool, int]:
    """``CHUNK_COMPRESSION`` (zstd, the default, or off) and ``CHUNK_COMPRESSION_LEVEL``
    (1..19, default 1); a wrong value exits with the setting's name."""
    raw = environment.get_str("CHUNK_COMPRESSION", "").strip().lower() or "zstd"
    if raw not in COMPRESSION_CHOICES:
        parser.error(f"CHUNK_COMPRESSION must be zstd or off, got {raw!r}")
    try:
        level = environment.get_int("CHUNK_COMPRESSION_LEVEL", DEFAULT_LEVEL)
    except environment.ConfigError as exc:
        parser.error(str(exc))
    if not 1 <= level <= MAX_LEVEL:
        parser.error(f"CHUNK_COMPRESSION_LEVEL must be 1..{MAX_LEVEL}, got {level}")
    return COMPRESSION_CHOICES[raw], level
