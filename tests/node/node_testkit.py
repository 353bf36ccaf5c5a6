"""Helpers for the storage-node tests (kept out of conftest so test modules can import them)."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc

from cloudgrpc_proto import cloud_storage_pb2 as pb
from cloudgrpc_proto import cloud_storage_pb2_grpc as pb_grpc


def chunk(seed: int, size: int = 4096) -> tuple[str, bytes]:
    """A deterministic chunk and its id."""
    data = hashlib.sha256(str(seed).encode()).digest() * (size // 32 + 1)
    data = data[:size]
    return hashlib.sha256(data).hexdigest(), data


def text_like(size: int, seed: int = 0) -> bytes:
    """Log-like lines: compress several times, as text does (not a repeated block)."""
    lines = []
    total = 0
    i = seed * 1_000_003
    while total < size:
        line = (f"2026-12-07T17:{i % 60:02d}:{(i * 7) % 60:02d}Z INFO request {i:08d} user="
                f"u{(i * 2654435761) % 99991} path=/docs/report-{i % 313}.txt "
                f"bytes={(i * 7919) % 1_000_000} ok\n").encode()
        lines.append(line)
        total += len(line)
        i += 1
    return b"".join(lines)[:size]


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@dataclass
class FakeGateway(pb_grpc.NodeServiceServicer):
    """A gateway NodeService that records every call; behaviour is tweakable per test."""

    interval_s: int = 0
    refuse: bool = False
    forget_after_heartbeats: int | None = None  # reply reregister=True once after N heartbeats
    not_found_after_heartbeats: int | None = None  # abort NOT_FOUND once after N heartbeats
    issue_key: str = ""  # node_key answered to a registration that presents no key
    registers: list[pb.RegisterNodeRequest] = field(default_factory=list)
    heartbeats: list[pb.HeartbeatRequest] = field(default_factory=list)
    deregisters: list[pb.DeregisterNodeRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def RegisterNode(self, request, context):  # noqa: N802
        with self.lock:
            self.registers.append(request)
            n = len(self.registers)
        if self.refuse:
            return pb.RegisterNodeResponse(success=False, message="go away")
        return pb.RegisterNodeResponse(
            success=True,
            node_id=f"node-id-{n}",
            heartbeat_interval_s=self.interval_s,
            node_key=self.issue_key if not request.node_key else "",
        )

    def Heartbeat(self, request, context):  # noqa: N802
        with self.lock:
            self.heartbeats.append(request)
            n = len(self.heartbeats)
        if self.forget_after_heartbeats == n:
            return pb.HeartbeatResponse(success=False, reregister=True)
        if self.not_found_after_heartbeats == n:
            context.abort(grpc.StatusCode.NOT_FOUND, "unknown node")
        return pb.HeartbeatResponse(success=True)

    def DeregisterNode(self, request, context):  # noqa: N802
        with self.lock:
            self.deregisters.append(request)
        return pb.DeregisterNodeResponse(success=True)
