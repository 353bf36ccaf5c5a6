"""TLS end to end, in-process: node serving TLS, registering over TLS, repairing over TLS."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import grpc
import pytest

from cloudgrpc_node.app import NodeServer
from cloudgrpc_node.config import parse_config
from cloudgrpc_proto import cloud_storage_pb2 as pb
from cloudgrpc_proto import cloud_storage_pb2_grpc as pb_grpc
from tests.node.node_testkit import chunk

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


@pytest.fixture
def cert(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate valid for localhost and 127.0.0.1."""
    key, crt = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-keyout", str(key), "-out", str(crt), "-subj", "/CN=localhost"]
        + ["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )
    return key, crt


def test_tls_node_registers_serves_and_repairs(
    start_gateway, clean_env, cert, tmp_path: Path
) -> None:
    key, crt = cert
    gw = start_gateway(
        credentials=grpc.ssl_server_credentials([(key.read_bytes(), crt.read_bytes())])
    )
    clean_env.setenv("CLUSTER_SECRET", "k")
    clean_env.setenv("HEARTBEAT_INTERVAL_S", "0.2")
    nodes = []
    try:
        for name in ("a", "b"):
            config = parse_config(
                [name, "127.0.0.1", "0", "0.1", "--gateway", gw.address]
                + ["--data-dir", str(tmp_path / name), "--tls-cert", str(crt)]
                + ["--tls-key", str(key), "--gateway-ca", str(crt)]
            )
            node = NodeServer(config)
            node.start()
            nodes.append(node)
            assert node.registrar is not None and node.registrar.wait_registered(10)
        a, b = nodes
        sha, data = chunk(1, 100_000)
        creds = grpc.ssl_channel_credentials(root_certificates=crt.read_bytes())
        with grpc.secure_channel(f"127.0.0.1:{a.port}", creds) as channel:
            pb_grpc.ChunkServiceStub(channel).PutChunk(
                pb.PutChunkRequest(sha256=sha, data=data, cluster_secret="k"), timeout=10
            )
        with grpc.secure_channel(f"127.0.0.1:{b.port}", creds) as channel:
            reply = pb_grpc.ChunkServiceStub(channel).FetchChunkFrom(
                pb.FetchChunkFromRequest(
                    sha256=sha, source_address=f"127.0.0.1:{a.port}", cluster_secret="k"
                ),
                timeout=10,
            )
        assert reply.success and b.store.get(sha) == data
        with grpc.insecure_channel(f"127.0.0.1:{a.port}") as plain:
            with pytest.raises(grpc.RpcError):
                pb_grpc.ChunkServiceStub(plain).HasChunks(
                    pb.HasChunksRequest(sha256=[sha], cluster_secret="k"), timeout=3
                )
    finally:
        for node in nodes:
            node.stop(grace=1)
    assert sorted(d.node_id for d in gw.fake.deregisters) == ["node-id-1", "node-id-2"]
