"""Keeping the gateway informed: register, heartbeat, deregister.

Runs in a background thread so the node serves chunks whether or not the gateway is up: while
the gateway is unreachable the thread retries registration with capped exponential backoff;
once registered it heartbeats with the store's current usage, and registers again when the
gateway says it does not know the node (``reregister`` or NOT_FOUND, e.g. after the gateway
lost its state or timed the node out). Every call carries a deadline so a hung gateway can
never wedge the thread or the shutdown.
"""

from __future__ import annotations

import logging
import os
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import grpc

from cloudgrpc_proto import cloud_storage_pb2 as pb
from cloudgrpc_proto import cloud_storage_pb2_grpc as pb_grpc

from .scrubber import Scrubber

log = logging.getLogger(__name__)

CALL_TIMEOUT_S = 5.0
DEREGISTER_TIMEOUT_S = 2.0
BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 30.0
# gRPC's own reconnect backoff grows to 120 s by default, which would keep a node away from a
# gateway that came back long after our retry loop would have found it; cap it.
GATEWAY_CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 500),
    ("grpc.max_reconnect_backoff_ms", 5000),
]


@dataclass(frozen=True)
class NodeIdentity:
    """What the node tells the gateway about itself at registration."""

    name: str
    host: str
    port: int
    capacity_bytes: int
    cpu_cores: int
    cluster_secret: str = ""


class Usage(Protocol):
    """What a heartbeat reports; the ``ChunkStore`` satisfies this shape."""

    used_bytes: int
    chunk_count: int


def cpu_cores() -> int:
    """Cores this process may run on (the affinity mask, not the whole machine)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class Registrar:
    """Background registration and heartbeat loop against the gateway's ``NodeService``."""

    def __init__(
        self,
        identity: NodeIdentity,
        usage: Usage,
        gateway_address: str,
        *,
        heartbeat_interval_s: float = 5.0,
        credentials: grpc.ChannelCredentials | None = None,
        on_registered: Callable[[str], None] | None = None,
        call_timeout_s: float = CALL_TIMEOUT_S,
        scrubber: Scrubber | None = None,
    ) -> None:
        self.identity = identity
        self.gateway_address = gateway_address
        self._usage = usage
        self._default_interval = heartbeat_interval_s
        self.heartbeat_interval_s = heartbeat_interval_s
        self._on_registered = on_registered
        self._timeout = call_timeout_s
        self._scrubber = scrubber
        if credentials is not None:
            self._channel = grpc.secure_channel(
                gateway_address, credentials, options=GATEWAY_CHANNEL_OPTIONS
            )
        else:
            self._channel = grpc.insecure_channel(gateway_address, options=GATEWAY_CHANNEL_OPTIONS)
        self._stub = pb_grpc.NodeServiceStub(self._channel)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._node_id: str | None = None
        self._registered = threading.Event()
        self._thread = threading.Thread(target=self._run, name="node-registrar", daemon=True)

    @property
    def node_id(self) -> str | None:
        """The id the gateway gave this node, or None while unregistered."""
        with self._lock:
            return self._node_id

    def wait_registered(self, timeout: float | None = None) -> bool:
        """Block until the first registration succeeded (tests and the banner use it)."""
        return self._registered.wait(timeout)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop the loop, then deregister with a short deadline; errors are only logged."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self._timeout + 1.0)
        node_id = self.node_id
        if node_id:
            try:
                self._stub.DeregisterNode(
                    pb.DeregisterNodeRequest(
                        node_id=node_id, cluster_secret=self.identity.cluster_secret
                    ),
                    timeout=DEREGISTER_TIMEOUT_S,
                )
                log.info("deregistered node %s from gateway %s", node_id, self.gateway_address)
            except grpc.RpcError as exc:
                log.warning("deregistration failed (ignored): %s", _describe(exc))
        self._channel.close()

    # -- the loop -------------------------------------------------------------------------

    def _run(self) -> None:
        backoff = BACKOFF_START_S
        while not self._stop.is_set():
            if self.node_id is None:
                if self._register():
                    backoff = BACKOFF_START_S
                    continue
                # Jitter keeps a fleet of nodes from stampeding a gateway that comes back.
                self._stop.wait(backoff * random.uniform(0.8, 1.2))
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                continue
            if self._stop.wait(self.heartbeat_interval_s):
                break
            self._heartbeat()

    def _register(self) -> bool:
        ident = self.identity
        request = pb.RegisterNodeRequest(
            name=ident.name,
            host=ident.host,
            port=ident.port,
            capacity_bytes=ident.capacity_bytes,
            used_bytes=self._usage.used_bytes,
            chunk_count=self._usage.chunk_count,
            cpu_cores=ident.cpu_cores,
            cluster_secret=ident.cluster_secret,
        )
        try:
            reply = self._stub.RegisterNode(request, timeout=self._timeout)
        except grpc.RpcError as exc:
            log.warning(
                "registration with gateway %s failed: %s (retrying)",
                self.gateway_address,
                _describe(exc),
            )
            return False
        if not reply.success or not reply.node_id:
            log.error(
                "gateway %s refused registration: %s (retrying)",
                self.gateway_address,
                reply.message or "no node id",
            )
            return False
        self.heartbeat_interval_s = (
            float(reply.heartbeat_interval_s)
            if reply.heartbeat_interval_s > 0
            else self._default_interval
        )
        with self._lock:
            self._node_id = reply.node_id
        self._registered.set()
        if self._on_registered is not None:
            self._on_registered(reply.node_id)
        return True

    def _heartbeat(self) -> None:
        node_id = self.node_id
        request = pb.HeartbeatRequest(
            node_id=node_id or "",
            used_bytes=self._usage.used_bytes,
            chunk_count=self._usage.chunk_count,
            cluster_secret=self.identity.cluster_secret,
            capacity_bytes=self.identity.capacity_bytes,
        )
        corrupt = self._scrubber.take_reports() if self._scrubber else []
        request.corrupt_chunks.extend(corrupt)
        try:
            reply = self._stub.Heartbeat(request, timeout=self._timeout)
        except grpc.RpcError as exc:
            if corrupt and self._scrubber:
                self._scrubber.requeue(corrupt)
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                log.warning("gateway does not know node %s: registering again", node_id)
                self._forget()
            else:
                log.warning("heartbeat to %s failed: %s", self.gateway_address, _describe(exc))
            return
        if reply.reregister:
            log.warning("gateway asked node %s to register again", node_id)
            self._forget()
        elif not reply.success:
            log.warning("heartbeat refused: %s", reply.message)

    def _forget(self) -> None:
        with self._lock:
            self._node_id = None


def _describe(exc: grpc.RpcError) -> str:
    code = exc.code() if hasattr(exc, "code") else None
    details = exc.details() if hasattr(exc, "details") else str(exc)
    return f"{code.name if code else 'error'}: {details}"
