"""TLS is one option away: the gateway serves TLS and clients sign in over it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import grpc

from cloudgrpc_proto import cloud_storage_pb2 as pb
from cloudgrpc_proto import cloud_storage_pb2_grpc as pb_grpc
from tests.cluster import Cluster


def _self_signed(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def test_gateway_over_tls(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    c = Cluster(tmp_path, nodes=0, env={"TLS_CERT": str(cert), "TLS_KEY": str(key)})
    try:
        c.start_gateway()
        creds = grpc.ssl_channel_credentials(cert.read_bytes())
        with grpc.secure_channel(c.address, creds) as channel:
            auth = pb_grpc.AuthServiceStub(channel)
            email = "tls@example.com"
            auth.SendOTP(pb.SendOTPRequest(email=email), timeout=10)
            code = c.mail.code_for(email)
            token = auth.VerifyOTP(pb.VerifyOTPRequest(email=email, otp=code),
                                   timeout=10).verification_token
            assert auth.Enroll(pb.EnrollRequest(email=email, full_name="T",
                                                verification_token=token),
                               timeout=10).session_token
        with grpc.insecure_channel(c.address) as plain:
            try:
                pb_grpc.AuthServiceStub(plain).SendOTP(pb.SendOTPRequest(email=email),
                                                       timeout=3)
                raise AssertionError("plaintext call to a TLS gateway succeeded")
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        c.stop()
