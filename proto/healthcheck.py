"""``python3 -m cloudgrpc_proto.healthcheck HOST:PORT``: exit 0 when a gateway or node serves.

Container engines and service managers probe liveness by running a command; the gateway and
the nodes both answer the standard gRPC health service (without credentials, by design), so
one small probe serves both and no curl or grpc_health_probe binary is needed in the image.
Exit codes: 0 serving, 1 not serving or unreachable, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python3 -m cloudgrpc_proto.healthcheck",
        description="Exit 0 if the gRPC server at ADDRESS reports SERVING, else 1.")
    parser.add_argument("address", metavar="HOST:PORT", help="gateway or node address")
    parser.add_argument("--service", default="",
                        help="service name to ask about (default: the whole server)")
    parser.add_argument("--timeout", type=float, default=3.0, metavar="S",
                        help="give up after S seconds (default 3)")
    parser.add_argument("--tls-ca", metavar="F",
                        help="CA bundle: talk TLS to a server started with --tls-cert")
    return parser


def check(address: str, service: str = "", timeout: float = 3.0,
          tls_ca: bytes | None = None) -> str:
    """The server's health status name (``SERVING``, ``NOT_SERVING``...) or why none came."""
    if tls_ca is not None:
        channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(tls_ca))
    else:
        channel = grpc.insecure_channel(address)
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError as exc:
            return f"unreachable ({exc.code().name})"
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    tls_ca = None
    if args.tls_ca:
        with open(args.tls_ca, "rb") as handle:
            tls_ca = handle.read()
    status = check(args.address, args.service, args.timeout, tls_ca)
    print(f"{args.address}: {status}")
    return 0 if status == "SERVING" else 1


if __name__ == "__main__":
    sys.exit(main())
