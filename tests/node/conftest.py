"""Shared fixtures for the storage-node tests: real gRPC servers on free loopback ports."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from cloudgrpc_node.chunk_codec import ChunkCodec
from cloudgrpc_node.chunk_store import ChunkStore
from cloudgrpc_node.service import CHANNEL_OPTIONS, SERVER_OPTIONS, ChunkService, add_to_server
from cloudgrpc_proto import cloud_storage_pb2_grpc as pb_grpc
from cloudgrpc_proto import environment
from tests.node.node_testkit import FakeGateway


@dataclass
class RunningNode:
    store: ChunkStore
    server: grpc.Server
    address: str
    channel: grpc.Channel
    stub: pb_grpc.ChunkServiceStub


@pytest.fixture
def start_node(tmp_path: Path) -> Iterator[Callable[..., RunningNode]]:
    """Start in-process chunk servers; all are stopped at teardown."""
    started: list[RunningNode] = []

    def start(
        name: str = "n",
        secret: str = "s3cret",
        capacity: int = 64 * 1024 * 1024,
        insecure: bool = False,
        compression: bool = False,
    ) -> RunningNode:
        store = ChunkStore(tmp_path / name, capacity, ChunkCodec(enabled=compression))
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=SERVER_OPTIONS)
        add_to_server(
            ChunkService(store, secret, insecure=insecure, fetch_timeout_s=5.0), server
        )
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        address = f"127.0.0.1:{port}"
        channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
        node = RunningNode(store, server, address, channel, pb_grpc.ChunkServiceStub(channel))
        started.append(node)
        return node

    yield start
    for node in started:
        node.channel.close()
        node.server.stop(grace=None)


@dataclass
class RunningGateway:
    fake: FakeGateway
    server: grpc.Server
    address: str


@pytest.fixture
def start_gateway() -> Iterator[Callable[..., RunningGateway]]:
    """Start fake gateways (optionally on a given port); all are stopped at teardown."""
    started: list[grpc.Server] = []

    def start(
        fake: FakeGateway | None = None,
        port: int = 0,
        credentials: grpc.ServerCredentials | None = None,
    ) -> RunningGateway:
        fake = fake or FakeGateway()
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        pb_grpc.add_NodeServiceServicer_to_server(fake, server)
        if credentials is not None:
            bound = server.add_secure_port(f"127.0.0.1:{port}", credentials)
        else:
            bound = server.add_insecure_port(f"127.0.0.1:{port}")
        server.start()
        started.append(server)
        return RunningGateway(fake, server, f"127.0.0.1:{bound}")

    yield start
    for server in started:
        server.stop(grace=None)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No node-related settings leak in from the developer's shell."""
    for name in (
        "CLOUDGRPC_GATEWAY",
        "GRPC_SERVER_HOST",
        "GRPC_SERVER_PORT",
        "DATA_DIR",
        "CLUSTER_SECRET",
        "CLUSTER_SECRET_FILE",
        "INSECURE_OPEN_CLUSTER",
        "HEARTBEAT_INTERVAL_S",
        "NODE_WORKERS",
        "CHUNK_COMPRESSION",
        "CHUNK_COMPRESSION_LEVEL",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(environment, "_loaded", {})  # ignore any .env in the working dir
    return monkeypatch
