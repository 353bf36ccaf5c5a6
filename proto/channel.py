"""Opening the gRPC channel every client (mount, file CLI, payment CLI, admin CLI) uses.

One place decides the channel options so that all clients behave the same on the wire:
messages up to 64 MiB (a whole chunk fits in one message), keepalive pings so a dead gateway
is noticed within ~40 s instead of hanging a shell, and TLS as soon as a CA file is named.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import grpc

from cloudgrpc_proto import environment

DEFAULT_TARGET = "localhost:50051"
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
KEEPALIVE_TIME_MS = 30_000
KEEPALIVE_TIMEOUT_MS = 10_000

ENV_SERVER = "CLOUDGRPC_SERVER"
ENV_TLS_CA = "CLOUDGRPC_TLS_CA"
ENV_TLS = "CLOUDGRPC_TLS"
ENV_TLS_SERVER_NAME = "CLOUDGRPC_TLS_SERVER_NAME"

ChannelOptions = Sequence[tuple[str, Any]]


def default_target(server: str | None = None) -> str:
    """The gateway address: ``--server`` if given, else ``$CLOUDGRPC_SERVER``, else the default.

    Kept in one function so every console script resolves ``--server`` identically.
    """
    if server:
        return server
    return environment.get_str(ENV_SERVER, "").strip() or DEFAULT_TARGET


def channel_options(extra: ChannelOptions | None = None) -> list[tuple[str, Any]]:
    """The options every client channel gets; ``extra`` entries win over the defaults."""
    options: dict[str, Any] = {
        "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
        "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
        "grpc.keepalive_time_ms": KEEPALIVE_TIME_MS,
        "grpc.keepalive_timeout_ms": KEEPALIVE_TIMEOUT_MS,
        "grpc.keepalive_permit_without_calls": 1,
        # Without this, gRPC stops pinging after two pings with no data in flight, which
        # would let an idle mount sit on a dead connection until its next call times out.
        "grpc.http2.max_pings_without_data": 0,
        # Reconnect quickly after a gateway restart instead of backing off for minutes.
        "grpc.initial_reconnect_backoff_ms": 200,
        "grpc.max_reconnect_backoff_ms": 5_000,
    }
    for key, value in extra or ():
        options[key] = value
    return list(options.items())


def _read_ca(path: str) -> bytes:
    try:
        with open(os.path.expanduser(path), "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise OSError(f"cannot read TLS CA file {path}: {exc.strerror or exc}") from exc


def open_channel(
    target: str | None = None,
    *,
    tls_ca: str | None = None,
    tls: bool | None = None,
    tls_server_name: str | None = None,
    options: ChannelOptions | None = None,
) -> grpc.Channel:
    """Open a channel to ``target`` (``default_target()`` when empty).

    TLS is used when a CA file is given (argument or ``$CLOUDGRPC_TLS_CA``), or when ``tls``
    (or ``$CLOUDGRPC_TLS=1``) asks for it with the system's trusted roots. A plain channel
    otherwise, which is what a loopback demo wants. ``tls_server_name`` overrides the name
    checked in the certificate (useful behind a load balancer addressed by IP).
    """
    address = default_target(target)
    ca_path = tls_ca or environment.get_str(ENV_TLS_CA, "").strip() or None
    use_tls = bool(ca_path) or (tls if tls is not None else environment.get_bool(ENV_TLS, False))
    extra = list(options or ())
    server_name = tls_server_name or environment.get_str(ENV_TLS_SERVER_NAME, "").strip()
    if use_tls and server_name:
        extra.append(("grpc.ssl_target_name_override", server_name))
    opts = channel_options(extra)
    if not use_tls:
        return grpc.insecure_channel(address, options=opts)
    root = _read_ca(ca_path) if ca_path else None
    credentials = grpc.ssl_channel_credentials(root_certificates=root)
    return grpc.secure_channel(address, credentials, options=opts)
