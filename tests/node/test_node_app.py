"""``cloudgrpc-node`` end to end: a real node process against a fake gateway, plus its config."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from cloudgrpc_node.config import GIB, parse_config
from cloudgrpc_proto import cloud_storage_pb2 as pb
from cloudgrpc_proto import cloud_storage_pb2_grpc as pb_grpc
from tests.node.node_testkit import chunk, wait_for


class LineReader:
    """Collect a child's stdout lines on a thread so the test can wait with a timeout."""

    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream) -> None:
        for line in stream:
            self._queue.put(line)

    def wait_line(self, needle: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            self.lines.append(line)
            if needle in line:
                return line
        raise AssertionError(f"no line with {needle!r}; got {''.join(self.lines)}")


def test_node_process_registers_heartbeats_and_deregisters_on_sigterm(
    start_gateway, tmp_path: Path
) -> None:
    gw = start_gateway()
    env = dict(os.environ)
    for name in ("CLOUDGRPC_GATEWAY", "GRPC_SERVER_HOST", "GRPC_SERVER_PORT", "DATA_DIR"):
        env.pop(name, None)
    env.update(HEARTBEAT_INTERVAL_S="0.2", CLUSTER_SECRET="k", PYTHONUNBUFFERED="1")
    data_dir = tmp_path / "data"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cloudgrpc_node.app", "n1", "127.0.0.1", "0", "0.5"]
        + ["--gateway", gw.address, "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        out = LineReader(proc.stdout)
        line = out.wait_line("registered")
        assert line.strip() == f"node n1 registered with gateway {gw.address} as node-id-1"
        reg = gw.fake.registers[0]
        assert reg.name == "n1" and reg.host == "127.0.0.1" and reg.port > 0
        assert reg.capacity_bytes == GIB // 2 and reg.cluster_secret == "k"
        assert reg.cpu_cores >= 1

        address = f"127.0.0.1:{reg.port}"
        with grpc.insecure_channel(address) as channel:
            health = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="cloudstorage.ChunkService"), timeout=5
            )
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            listing = next(
                reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
                    iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
                )
            )
            services = {s.name for s in listing.list_services_response.service}
            assert "cloudstorage.ChunkService" in services
            sha, data = chunk(1, 50_000)
            pb_grpc.ChunkServiceStub(channel).PutChunk(
                pb.PutChunkRequest(sha256=sha, data=data, cluster_secret="k"), timeout=5
            )
        assert (data_dir / "chunks" / sha[:2] / sha[2:4] / sha).read_bytes() == data

        wait_for(
            lambda: any(h.used_bytes == 50_000 for h in gw.fake.heartbeats),
            timeout=10,
            what="a heartbeat reporting the stored chunk",
        )
        wait_for(lambda: len(gw.fake.heartbeats) >= 3, timeout=10, what="steady heartbeats")
        assert all(h.node_id == "node-id-1" for h in gw.fake.heartbeats)

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert [d.node_id for d in gw.fake.deregisters] == ["node-id-1"]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_node_process_fails_cleanly_when_port_taken(start_gateway, tmp_path: Path) -> None:
    gw = start_gateway()
    port = gw.address.rsplit(":", 1)[1]  # the fake gateway already holds this port
    proc = subprocess.run(
        [sys.executable, "-m", "cloudgrpc_node.app", "n2", "127.0.0.1", port, "1"]
        + ["--gateway", gw.address, "--data-dir", str(tmp_path / "d")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 1
    assert "cannot start" in proc.stderr


def test_config_defaults(clean_env) -> None:
    cfg = parse_config(["n1", "127.0.0.1", "9001", "0.5"])
    assert cfg.capacity_bytes == GIB // 2
    assert cfg.gateway == "localhost:50051"
    assert cfg.data_dir == Path("node_storage_n1")
    assert cfg.heartbeat_interval_s == 5.0
    assert cfg.cluster_secret == ""
    assert cfg.advertise_host == "127.0.0.1"
    assert not cfg.tls


def test_config_from_environment(clean_env, tmp_path: Path) -> None:
    clean_env.setenv("GRPC_SERVER_HOST", "gw.example")
    clean_env.setenv("GRPC_SERVER_PORT", "6000")
    clean_env.setenv("DATA_DIR", str(tmp_path))
    clean_env.setenv("CLUSTER_SECRET", "sekrit")
    clean_env.setenv("HEARTBEAT_INTERVAL_S", "0.25")
    cfg = parse_config(["n1", "0.0.0.0", "0", "2"])
    assert cfg.gateway == "gw.example:6000"
    assert cfg.data_dir == tmp_path / "node_storage_n1"
    assert cfg.cluster_secret == "sekrit"
    assert cfg.heartbeat_interval_s == 0.25
    assert cfg.advertise_host not in ("0.0.0.0", "")
    clean_env.setenv("CLOUDGRPC_GATEWAY", "other:1")
    assert parse_config(["n1", "h", "1", "1"]).gateway == "other:1"
    explicit = parse_config(["n1", "h", "1", "1", "--gateway", "x:2", "--data-dir", "/d"])
    assert explicit.gateway == "x:2" and explicit.data_dir == Path("/d")


@pytest.mark.parametrize(
    "argv",
    [
        ["n1", "h", "1", "0"],
        ["n1", "h", "1", "lots"],
        ["n1", "h", "70000", "1"],
        ["n1", "h", "1", "1", "--tls-cert", "c.pem"],
    ],
)
def test_config_rejects_bad_input(clean_env, argv) -> None:
    with pytest.raises(SystemExit) as info:
        parse_config(argv)
    assert info.value.code == 2
