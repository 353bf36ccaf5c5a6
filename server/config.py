"""Gateway settings, read once from the environment and ``.env``.

Names follow the original system (``DB_*``, ``GRPC_SERVER_*``, ``ADMIN_KEY``, ``GMAIL_*``,
``CAMPAY_*``) plus the operational timings of DESIGN.md, so tests and operators can shorten
them without code changes. Every secret (``CLUSTER_SECRET``, ``DB_PASSWORD``,
``SMTP_PASSWORD``...) may instead be given as a file by ``NAME_FILE`` (compose secrets,
systemd credentials), so deployments never write the value into an environment file.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass
from urllib.parse import quote_plus

from cloudgrpc_proto.environment import (
    ConfigError,
    get_bool,
    get_float,
    get_int,
    get_secret,
    get_str,
)

from .client_address import Network, parse_networks

MiB = 1024 * 1024
GiB = 1024 * MiB


@dataclass(frozen=True)
class Settings:
    host: str = "localhost"
    port: int = 50051
    data_dir: pathlib.Path = pathlib.Path("data")
    database_url: str = ""
    admin_key: str = ""
    cluster_secret: str = ""
    # Keyed hash of one-time codes: kept outside the database (a copy of it reveals none).
    otp_key: str = ""
    # Explicit opt-in to a cluster without a secret (experiments only; loud everywhere).
    insecure_open_cluster: bool = False
    replication_factor: int = 2
    chunk_size: int = 4 * MiB
    default_quota_bytes: int = 1 * GiB
    # Accounts.
    otp_ttl_s: int = 600
    otp_max_attempts: int = 5
    otp_resend_cooldown_s: int = 30
    session_ttl_s: int = 24 * 3600
    session_cache_s: float = 5.0
    # A change stream with nothing to say repeats its "hello" this often, so proxies in
    # between (HAProxy's `timeout server`/`timeout client`) do not cut it as idle.
    change_keepalive_s: float = 30.0
    # Load balancers whose x-forwarded-for is believed (TRUSTED_PROXIES; see client_address).
    trusted_proxies: tuple[Network, ...] = ()
    refresh_ttl_s: int = 90 * 24 * 3600
    # A rotated refresh token is still accepted once this long after its rotation (two
    # processes sharing one keyring entry may race to renew); any later reuse ends the device.
    refresh_reuse_grace_s: int = 30
    # Per-client-address limits of this gateway (calls per hour; 0 = none).
    otp_sends_per_address_hour: int = 30
    otp_verifies_per_address_hour: int = 60
    # Mail.
    smtp_host: str = ""
    smtp_port: int = 465
    smtp_security: str = "ssl"
    smtp_user: str = ""
    smtp_password: str = ""
    mail_from: str = ""
    # Operations.
    heartbeat_interval_s: float = 5.0
    node_timeout_s: float = 30.0
    repair_grace_s: float = 300.0
    scrub_interval_s: float = 604800.0
    gc_grace_s: float = 3600.0
    repair_interval_s: float = 10.0
    gc_interval_s: float = 60.0
    gc_idle_s: float = 60.0
    repair_rate_bytes_s: float = 50e6
    repair_concurrency: int = 4
    fsck_max_s: float = 21600.0  # one fsck call stops (incomplete) after this long
    fsck_verify_rate_bytes_s: float = 100e6  # content verification, whole cluster
    node_call_timeout_s: float = 30.0
    max_workers: int = 64
    # Bounded resources: who may hold a worker for long (see stream_admission).
    upload_first_message_s: float = 5.0
    stream_idle_s: float = 30.0
    upload_preauth_slots: int = 8
    uploads_per_user: int = 8
    streams_per_user: int = 16
    reserved_workers: int = 16  # never held by long-lived calls: SendOTP, health, listings
    waiting_per_address: int = 16  # unary calls of one client address awaiting their request
    # TLS for the gateway's own port.
    tls_cert: str = ""
    tls_key: str = ""
    node_tls_ca: str = ""
    # Direct reads: GetFileChunks(with_sources) hands out node addresses and read tokens
    # so clients read chunks from the nodes themselves (off when nodes are private).
    direct_reads: bool = True
    direct_writes: bool = True
    write_grant_ttl_s: int = 60
    read_token_ttl_s: int = 600
    # Admin status (issue 17): how often each gateway adds its traffic counts to the
    # database, and the windows of the speeds and of the payment success rate.
    traffic_flush_s: float = 5.0
    speed_window_s: float = 300.0
    payment_window_s: float = 86400.0
    # Payments.
    campay_username: str = ""
    campay_password: str = ""
    campay_base_url: str = ""
    campay_webhook_key: str = ""
    campay_demo_limit_xaf: int = 10
    webhook_port: int = 0
    # Prometheus endpoint (port 0 = off; no authentication, so loopback unless told).
    metrics_port: int = 0
    metrics_host: str = "127.0.0.1"
    metrics_cache_s: float = 15.0  # database-derived gauges are read at most this often

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def mail_configured(self) -> bool:
        return bool(self.smtp_host)


def _database_url(data_dir: pathlib.Path) -> str:
    url = get_secret("DATABASE_URL")
    if url:
        return url
    if get_str("DB_HOST") or get_str("DB_NAME"):
        user = quote_plus(get_str("DB_USER", "postgres"))
        password = quote_plus(get_secret("DB_PASSWORD"))
        auth = f"{user}:{password}@" if password else f"{user}@"
        host = get_str("DB_HOST", "localhost")
        port = get_str("DB_PORT", "5432")
        name = get_str("DB_NAME", "cloud_storage")
        return f"postgresql+psycopg2://{auth}{host}:{port}/{name}"
    return f"sqlite:///{data_dir / 'cloudgrpc.db'}"


def _smtp() -> tuple[str, int, str, str, str]:
    user = get_str("SMTP_USER") or get_str("GMAIL_USER")
    password = get_secret("SMTP_PASSWORD") or get_secret("GMAIL_APP_PASSWORD")
    host = get_str("SMTP_HOST")
    if not host and user and password:
        host = "smtp.gmail.com"  # the original system's default: Gmail over SSL
    security = get_str("SMTP_SECURITY", "ssl").lower()
    default_port = {"ssl": 465, "starttls": 587}.get(security, 25)
    return host, get_int("SMTP_PORT", default_port), security, user, password


def _trusted_proxies() -> tuple[Network, ...]:
    try:
        return parse_networks(get_str("TRUSTED_PROXIES"))
    except ValueError as exc:
        raise ConfigError(f"TRUSTED_PROXIES: {exc}") from None


def load_settings() -> Settings:
    data_dir = pathlib.Path(get_str("DATA_DIR", "data")).expanduser()
    smtp_host, smtp_port, smtp_security, smtp_user, smtp_password = _smtp()
    admin_key = get_secret("ADMIN_KEY")
    return Settings(
        host=get_str("GRPC_SERVER_HOST", "localhost"),
        port=get_int("GRPC_SERVER_PORT", 50051),
        data_dir=data_dir,
        database_url=_database_url(data_dir),
        admin_key=admin_key,
        cluster_secret=get_secret("CLUSTER_SECRET"),
        otp_key=get_secret("OTP_KEY"),
        insecure_open_cluster=get_bool("INSECURE_OPEN_CLUSTER", False),
        replication_factor=max(1, get_int("REPLICATION_FACTOR", 2)),
        chunk_size=max(64 * 1024, get_int("CHUNK_SIZE", 4 * MiB)),
        default_quota_bytes=get_int("DEFAULT_QUOTA_BYTES", 1 * GiB),
        otp_ttl_s=get_int("OTP_TTL_S", 600),
        otp_max_attempts=get_int("OTP_MAX_ATTEMPTS", 5),
        otp_resend_cooldown_s=get_int("OTP_RESEND_COOLDOWN_S", 30),
        session_ttl_s=get_int("SESSION_TTL_S", 24 * 3600),
        session_cache_s=get_float("SESSION_CACHE_S", 5.0),
        change_keepalive_s=max(1.0, get_float("CHANGE_KEEPALIVE_S", 30.0)),
        trusted_proxies=_trusted_proxies(),
        refresh_ttl_s=get_int("REFRESH_TTL_S", 90 * 24 * 3600),
        refresh_reuse_grace_s=max(0, get_int("REFRESH_REUSE_GRACE_S", 30)),
        otp_sends_per_address_hour=get_int("OTP_SENDS_PER_ADDRESS_HOUR", 30),
        otp_verifies_per_address_hour=get_int("OTP_VERIFIES_PER_ADDRESS_HOUR", 60),
        smtp_host=smtp_host,
        smtp_port=smtp_port,
        smtp_security=smtp_security,
        smtp_user=smtp_user,
        smtp_password=smtp_password,
        mail_from=get_str("MAIL_FROM") or smtp_user or "cloudgrpc@localhost",
        heartbeat_interval_s=get_float("HEARTBEAT_INTERVAL_S", 5.0),
        node_timeout_s=get_float("NODE_TIMEOUT_S", 30.0),
        repair_grace_s=get_float("REPAIR_GRACE_S", 300.0),
        scrub_interval_s=get_float("SCRUB_INTERVAL_S", 604800.0),
        gc_grace_s=get_float("GC_GRACE_S", 3600.0),
        repair_interval_s=get_float("REPAIR_INTERVAL_S", 10.0),
        gc_interval_s=get_float("GC_INTERVAL_S", 60.0),
        gc_idle_s=get_float("GC_IDLE_S", 60.0),
        repair_rate_bytes_s=get_float("REPAIR_RATE_MBPS", 50.0) * 1e6,
        fsck_max_s=max(1.0, get_float("FSCK_MAX_S", 21600.0)),
        fsck_verify_rate_bytes_s=max(0.1, get_float("FSCK_VERIFY_RATE_MBPS", 100.0)) * 1e6,
        repair_concurrency=max(1, get_int("REPAIR_CONCURRENCY", 4)),
        node_call_timeout_s=get_float("NODE_CALL_TIMEOUT_S", 30.0),
        max_workers=get_int("GRPC_MAX_WORKERS", 64),
        upload_first_message_s=max(0.5, get_float("UPLOAD_FIRST_MESSAGE_S", 5.0)),
        stream_idle_s=max(1.0, get_float("STREAM_IDLE_S", 30.0)),
        upload_preauth_slots=max(1, get_int("UPLOAD_PREAUTH_SLOTS", 8)),
        uploads_per_user=max(1, get_int("UPLOADS_PER_USER", 8)),
        streams_per_user=max(1, get_int("STREAMS_PER_USER", 16)),
        waiting_per_address=max(1, get_int("WAITING_PER_ADDRESS",
                                           max(2, get_int("GRPC_MAX_WORKERS", 64) // 4))),
        reserved_workers=max(1, get_int("RESERVED_WORKERS",
                                        max(4, get_int("GRPC_MAX_WORKERS", 64) // 4))),
        tls_cert=get_str("TLS_CERT"),
        tls_key=get_str("TLS_KEY"),
        node_tls_ca=get_str("NODE_TLS_CA"),
        direct_reads=get_bool("DIRECT_READS", True),
        direct_writes=get_bool("DIRECT_WRITES", True),
        write_grant_ttl_s=max(5, get_int("WRITE_GRANT_TTL_S", 60)),
        read_token_ttl_s=max(30, get_int("READ_TOKEN_TTL_S", 600)),
        traffic_flush_s=max(0.1, get_float("TRAFFIC_FLUSH_S", 5.0)),
        speed_window_s=max(60.0, get_float("SPEED_WINDOW_S", 300.0)),
        payment_window_s=max(60.0, get_float("PAYMENT_WINDOW_S", 86400.0)),
        campay_username=get_str("CAMPAY_APP_USERNAME"),
        campay_password=get_secret("CAMPAY_APP_PASSWORD"),
        campay_base_url=get_str("CAMPAY_BASE_URL"),
        campay_webhook_key=get_secret("CAMPAY_WEBHOOK_KEY"),
        campay_demo_limit_xaf=get_int("CAMPAY_DEMO_LIMIT_XAF", 10),
        webhook_port=get_int("WEBHOOK_PORT", 0),
        metrics_port=max(0, get_int("METRICS_PORT", 0)),
        metrics_host=get_str("METRICS_HOST", "127.0.0.1") or "127.0.0.1",
        metrics_cache_s=max(0.0, get_float("METRICS_CACHE_S", 15.0)),
    )
