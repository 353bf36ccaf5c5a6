"""Channel set-up: the gateway address, the options every client shares, TLS."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import grpc
import pytest

from cloudgrpc_proto import channel, errors
from cloudgrpc_proto.client import CloudClient
from tests.client.clitools import Cli
from tests.client.fake_gateway import Running
from tests.client.helpers import sign_in


def test_default_target_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    assert channel.default_target() == "localhost:50051"
    monkeypatch.setenv("CLOUDGRPC_SERVER", "gw.example:443")
    assert channel.default_target() == "gw.example:443"
    assert channel.default_target("other:1") == "other:1"


def test_channel_options() -> None:
    options = dict(channel.channel_options([("grpc.keepalive_time_ms", 1000)]))
    assert options["grpc.max_send_message_length"] == 64 * 1024 * 1024
    assert options["grpc.max_receive_message_length"] == 64 * 1024 * 1024
    assert options["grpc.keepalive_time_ms"] == 1000  # an override wins
    assert options["grpc.keepalive_timeout_ms"] == 10_000
    assert options["grpc.keepalive_permit_without_calls"] == 1


def test_missing_ca_file_is_reported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(OSError, match="cannot read TLS CA file"):
        channel.open_channel("localhost:1", tls_ca=str(tmp_path / "nope.pem"))
    monkeypatch.setenv("CLOUDGRPC_TLS_CA", str(tmp_path / "nope.pem"))
    with pytest.raises(OSError, match="nope.pem"):
        channel.open_channel("localhost:1")


@pytest.fixture
def cert(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("needs openssl")
    key, crt = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-keyout", str(key), "-out", str(crt), "-subj", "/CN=localhost"]
        + ["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )
    return key, crt


def test_tls_with_a_ca_file(cert: tuple[Path, Path], tmp_path: Path) -> None:
    key, crt = cert
    creds = grpc.ssl_server_credentials([(key.read_bytes(), crt.read_bytes())])
    gateway = Running(credentials=creds)
    try:
        c = CloudClient(gateway.target, tls_ca=str(crt), timeout=5)
        sign_in(c)
        assert c.list_files().success
        c.close()
        plain = CloudClient(gateway.target, timeout=2, session_token="x")
        with pytest.raises(errors.Unavailable):
            plain.list_files()
        plain.close()
        # the CLI: --tls-ca, and the same through $CLOUDGRPC_TLS_CA
        cli = Cli(gateway.target, tmp_path)
        cli.ok("--tls-ca", str(crt), "enroll", "tls@example.com", "T", stdin="123456\n")
        cli.ok("--tls-ca", str(crt), "ls")
        env_cli = Cli(gateway.target, tmp_path, env={"CLOUDGRPC_TLS_CA": str(crt)})
        env_cli.ok("ls")
    finally:
        gateway.stop()
