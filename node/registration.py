"""Keeping the gateway informed: register, heartbeat, deregister.

Runs in a background thread so the node serves chunks whether or not the gateway is up: while
the gateway is unreachable the thread retries registration with capped exponential backoff;
once registered it heartbeats with the store's current usage, and registers again when the
gateway says it does not know the node (``reregister`` or NOT_FOUND, e.g. after the gateway
lost its state or timed the node out). Every call carries a deadline so a hung gateway can
never wedge the thread or the shutdown.

Identity: at the first registration of its name the gateway issues this node a key, kept in
the data folder (``node_key``, 0600). Every later registration, heartbeat and deregistration
carries it, and the gateway refuses them without it, so no one else can take the name over.
A node that lost its key is refused until an operator forgets the old registration.
"""

from __future__ import annotations

import logging
import os
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import grpc

from cloudgrpc_proto import cloud_storage_pb2 as pb
from cloudgrpc_proto import cloud_storage_pb2_grpc as pb_grpc
from cloudgrpc_proto.private_files import private_dir, read_private, write_private

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


NODE_KEY_FILE = "node_key"


class NodeKey:
    """The per-node key the gateway issued, kept in ``DATA_DIR/node_key`` (0600).

    Without a file (``path`` None, or not written yet) the key is empty: the gateway then
    issues one at the first registration of the name.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._value = ""
        if path is not None:
            try:
                self._value = read_private(path).decode("utf-8").strip()
            except FileNotFoundError:
                pass

    @property
    def value(self) -> str:
        with self._lock:
            return self._value

    def replace(self, key: str) -> None:
        """Keep a newly issued key: in memory whatever happens, and on disk (an OSError
        from the disk is raised after the key is in memory, so this run keeps working)."""
        with self._lock:
            self._value = key
        if self.path is not None:
            private_dir(self.path.parent)
            write_private(self.path, (key + "\n").encode("utf-8"))


class Usage(Protocol):
    """What a heartbeat reports; the ``ChunkStore`` satisfies this shape."""

    used_bytes: int
    logical_bytes: int
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
        key: NodeKey | None = None,
    ) -> None:
        self.identity = identity
        self.key = key or NodeKey(None)
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
                        node_id=node_id,
                        cluster_secret=self.identity.cluster_secret,
                        node_key=self.key.value,
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
            node_key=self.key.value,
        )
        try:
            reply = self._stub.RegisterNode(request, timeout=self._timeout)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.PERMISSION_DENIED:
                log.error(
                    "gateway %s refused node %s: %s (a wrong cluster secret, or this name "
                    "belongs to a node with another key: if this node lost its node_key, an "
                    "operator must forget the old registration; retrying)",
                    self.gateway_address,
                    ident.name,
                    _describe(exc),
                )
                return False
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
        if reply.node_key:
            try:
                self.key.replace(reply.node_key)
            except OSError as exc:
                log.error("cannot write the node key the gateway issued to %s: %s (this run "
                          "keeps it in memory; after a restart the gateway will refuse this "
                          "node until an operator forgets it)", self.key.path, exc)
            log.info("gateway %s issued this node its key (kept in %s)",
                     self.gateway_address, self.key.path or "memory")
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
            logical_bytes=self._usage.logical_bytes,
            chunk_count=self._usage.chunk_count,
            cluster_secret=self.identity.cluster_secret,
            capacity_bytes=self.identity.capacity_bytes,
            node_key=self.key.value,
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
