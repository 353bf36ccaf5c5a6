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
        # Compression is on by default: this repetitive chunk is kept as a zstd frame,
        # heartbeats report the disk bytes as used and the plaintext as logical.
        folder = data_dir / "chunks" / sha[:2] / sha[2:4]
        assert not (folder / sha).exists()
        stored = (folder / f"{sha}.zst").stat().st_size
        assert stored < 50_000 // 10

        wait_for(
            lambda: any(h.used_bytes == stored and h.logical_bytes == 50_000
                        for h in gw.fake.heartbeats),
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
        env={**os.environ, "CLUSTER_SECRET": "k"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 1
    assert "cannot start" in proc.stderr


def test_config_defaults(clean_env, tmp_path: Path) -> None:
    clean_env.chdir(tmp_path)  # no ./data/cluster_secret here
    cfg = parse_config(["n1", "127.0.0.1", "9001", "0.5", "--insecure"])
    assert cfg.capacity_bytes == GIB // 2
    assert cfg.gateway == "localhost:50051"
    assert cfg.data_dir == Path("node_storage_n1")
    assert cfg.heartbeat_interval_s == 5.0
    assert cfg.cluster_secret == "" and cfg.insecure
    assert cfg.advertise_host == "127.0.0.1"
    assert not cfg.tls


def test_config_without_a_secret_refuses_with_one_line(clean_env, tmp_path: Path, capsys) -> None:
    clean_env.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        parse_config(["n1", "127.0.0.1", "9001", "0.5"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--cluster-secret-file" in err and "--insecure" in err
    clean_env.setenv("INSECURE_OPEN_CLUSTER", "1")
    assert parse_config(["n1", "127.0.0.1", "9001", "0.5"]).insecure
    clean_env.setenv("CLUSTER_SECRET", "sekrit")  # a secret wins over the opt-in
    cfg = parse_config(["n1", "127.0.0.1", "9001", "0.5", "--insecure"])
    assert cfg.cluster_secret == "sekrit" and not cfg.insecure


def test_config_finds_the_gateways_secret_file(clean_env, tmp_path: Path) -> None:
    from cloudgrpc_proto.private_files import load_or_create_secret

    secret = load_or_create_secret(tmp_path / "cluster_secret")
    clean_env.setenv("DATA_DIR", str(tmp_path))
    assert parse_config(["n1", "127.0.0.1", "9001", "0.5"]).cluster_secret == secret
    clean_env.delenv("DATA_DIR")
    clean_env.chdir(tmp_path)
    explicit = ["--cluster-secret-file", str(tmp_path / "cluster_secret")]
    assert parse_config(["n1", "127.0.0.1", "9001", "0.5", *explicit]).cluster_secret == secret


def _node_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("CLOUDGRPC_GATEWAY", "GRPC_SERVER_HOST", "GRPC_SERVER_PORT", "DATA_DIR",
                 "CLUSTER_SECRET", "CLUSTER_SECRET_FILE", "INSECURE_OPEN_CLUSTER"):
        env.pop(name, None)
    env.update(PYTHONUNBUFFERED="1", HEARTBEAT_INTERVAL_S="0.2", **extra)
    return env


def test_node_without_a_secret_does_not_start(start_gateway, tmp_path: Path) -> None:
    gw = start_gateway()
    proc = subprocess.run(
        [sys.executable, "-m", "cloudgrpc_node.app", "n3", "127.0.0.1", "0", "1"]
        + ["--gateway", gw.address, "--data-dir", str(tmp_path / "d")],
        env=_node_env(), cwd=tmp_path, capture_output=True, text=True, timeout=30,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "cluster secret" in proc.stderr
    assert gw.fake.registers == []  # it never reached the gateway


def test_insecure_node_says_so_loudly(start_gateway, tmp_path: Path) -> None:
    gw = start_gateway()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cloudgrpc_node.app", "n4", "127.0.0.1", "0", "1", "--insecure"]
        + ["--gateway", gw.address, "--data-dir", str(tmp_path / "d")],
        env=_node_env(), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        out = LineReader(proc.stdout)
        out.wait_line("registered")
        assert any(line.startswith("  *** INSECURE: open node") for line in out.lines)
        assert any("WARNING" in line and "INSECURE: open node" in line for line in out.lines)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)


def test_node_keeps_the_key_the_gateway_issued(start_gateway, tmp_path: Path) -> None:
    from tests.node.node_testkit import FakeGateway

    gw = start_gateway(FakeGateway(issue_key="the-node-key"))
    data_dir = tmp_path / "d"
    argv = [sys.executable, "-m", "cloudgrpc_node.app", "n5", "127.0.0.1", "0", "1",
            "--gateway", gw.address, "--data-dir", str(data_dir)]
    for _run in range(2):
        proc = subprocess.Popen(argv, env=_node_env(CLUSTER_SECRET="k"), cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            LineReader(proc.stdout).wait_line("registered")
            wait_for(lambda: len(gw.fake.heartbeats) >= 1, what="a heartbeat")
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=20) == 0
        key_file = data_dir / "node_key"
        assert key_file.read_text().strip() == "the-node-key"
        assert key_file.stat().st_mode & 0o777 == 0o600
    first, second = gw.fake.registers
    assert first.node_key == "" and second.node_key == "the-node-key"
    assert all(h.node_key == "the-node-key" for h in gw.fake.heartbeats)
    assert [d.node_key for d in gw.fake.deregisters] == ["the-node-key"] * 2


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


def test_config_chunk_compression(clean_env, capsys) -> None:
    clean_env.setenv("CLUSTER_SECRET", "s")
    argv = ["n1", "h", "1", "1"]
    cfg = parse_config(argv)
    assert (cfg.compression, cfg.compression_level) == (True, 1)  # zstd by default
    clean_env.setenv("CHUNK_COMPRESSION", "off")
    assert parse_config(argv).compression is False
    clean_env.setenv("CHUNK_COMPRESSION", "ZSTD")
    clean_env.setenv("CHUNK_COMPRESSION_LEVEL", "9")
    cfg = parse_config(argv)
    assert (cfg.compression, cfg.compression_level) == (True, 9)
    for name, bad in (("CHUNK_COMPRESSION", "gzip"), ("CHUNK_COMPRESSION_LEVEL", "0"),
                      ("CHUNK_COMPRESSION_LEVEL", "22"), ("CHUNK_COMPRESSION_LEVEL", "x")):
        clean_env.setenv("CHUNK_COMPRESSION", "zstd")
        clean_env.setenv("CHUNK_COMPRESSION_LEVEL", "3")
        clean_env.setenv(name, bad)
        with pytest.raises(SystemExit) as info:
            parse_config(argv)
        assert info.value.code == 2
        assert name in capsys.readouterr().err


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
