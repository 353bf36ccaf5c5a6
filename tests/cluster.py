"""A real cluster for tests: gateway and storage nodes as processes, SMTP on loopback.

Everything binds to 127.0.0.1 on free ports, lives under one temporary folder and is
stopped by PID when the test ends. The OTP mail goes through a real SMTP server (aiosmtpd)
so sign-in is tested the way users sign in.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from pathlib import Path

import grpc

from cloudgrpc_proto import cloud_storage_pb2 as pb
from cloudgrpc_proto import cloud_storage_pb2_grpc as pb_grpc

ADMIN_KEY = "test-admin-key"
CLUSTER_SECRET = "test-cluster-secret"
MiB = 1024 * 1024


_PORTS_HANDED_OUT: set[int] = set()
_PORTS_LOCK = threading.Lock()
# Ports for servers tests start, when pytest-xdist runs several workers: each worker draws
# from its own slice of this range, below Linux's ephemeral ports (32768 and up), so two
# workers never pick the same port, and no outgoing connection takes a picked port before
# its server binds it.
_WORKER_PORTS = range(10000, 32000)


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (never the same one twice in this process)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw"):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])
    index = int(worker[2:] or 0)
    count = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    span = len(_WORKER_PORTS) // count
    low = _WORKER_PORTS.start + (index % count) * span
    with _PORTS_LOCK:
        for _ in range(1000):
            port = random.randrange(low, low + span)
            if port in _PORTS_HANDED_OUT:
                continue
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
            _PORTS_HANDED_OUT.add(port)
            return port
    raise RuntimeError(f"no free port in {low}..{low + span - 1}")


class MailSink:
    """A real SMTP server on loopback that keeps every message it receives."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        from aiosmtpd.controller import Controller

        self.messages: list[tuple[str, str, str]] = []  # (to, subject, body)
        self._lock = threading.Lock()
        sink = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):  # noqa: N802
                msg = message_from_bytes(envelope.content)
                body = msg.get_payload(decode=True) if not msg.is_multipart() else b""
                with sink._lock:
                    for rcpt in envelope.rcpt_tos:
                        sink.messages.append((rcpt.lower(), str(msg["Subject"]),
                                              (body or b"").decode("utf-8", "replace")))
                return "250 OK"

        self.port = free_port()
        self.host = host
        self.controller = Controller(Handler(), hostname=host, port=self.port)
        self.controller.start()

    def code_for(self, email: str, timeout: float = 10.0, after: int = 0) -> str:
        """The newest 6-digit code mailed to ``email`` (waiting for it to arrive)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                mine = [m for m in self.messages if m[0] == email.lower()]
            if len(mine) > after:
                found = re.search(r"\b(\d{6})\b", mine[-1][2])
                assert found, f"no code in mail: {mine[-1]}"
                return found.group(1)
            time.sleep(0.05)
        raise AssertionError(f"no OTP mail for {email} within {timeout}s")

    def count_for(self, email: str) -> int:
        with self._lock:
            return sum(1 for m in self.messages if m[0] == email.lower())

    def stop(self) -> None:
        self.controller.stop()


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    def wait_for(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            while seen < len(self.lines):
                m = rx.search(self.lines[seen])
                seen += 1
                if m:
                    return m
            if self.popen.poll() is not None and seen >= len(self.lines):
                time.sleep(0.1)
                if seen >= len(self.lines):
                    raise AssertionError(
                        f"{self.name} exited ({self.popen.returncode}) before {pattern!r}:\n"
                        + "".join(self.lines[-40:]))
            time.sleep(0.02)
        raise AssertionError(f"{self.name}: no {pattern!r} within {timeout}s:\n"
                             + "".join(self.lines[-40:]))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        return self.popen.returncode


def _spawn(name: str, argv: list[str], env: dict[str, str], cwd: Path, umask: int = -1) -> Proc:
    popen = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, bufsize=1, umask=umask)
    proc = Proc(name, popen)
    log_path = cwd / f"{name}.log"  # kept with the test's tmp folder, for post-mortems

    def pump() -> None:
        assert popen.stdout is not None
        with log_path.open("a") as log:
            for line in popen.stdout:
                proc.lines.append(line)
                log.write(line)
                log.flush()

    threading.Thread(target=pump, daemon=True, name=f"pump-{name}").start()
    return proc


class Cluster:
    """Gateway + storage nodes + SMTP sink, all real processes on loopback."""

    def __init__(self, root: Path, database_url: str = "", nodes: int = 3,
                 node_capacity_gb: float = 2.0, env: dict[str, str] | None = None,
                 mail_host: str = "127.0.0.1", umask: int = -1, metrics: bool = False,
                 node_env: dict[str, dict[str, str]] | None = None) -> None:
        self.root = root
        # With ``metrics``: the gateway (METRICS_PORT) and each node (--metrics-port) serve
        # Prometheus metrics on loopback; their ports by process name ("gateway", "node1").
        self.metrics = metrics
        self.metrics_ports: dict[str, int] = {}
        self.umask = umask  # the processes' umask (-1: inherit ours)
        self.database_url = database_url or f"sqlite:///{root / 'gateway' / 'cloudgrpc.db'}"
        self.node_count = nodes
        self.node_env = node_env or {}  # node name -> settings of that node only
        self.node_capacity_gb = node_capacity_gb
        self.mail = MailSink(mail_host)
        self.env = {
            **os.environ,
            "DATA_DIR": str(root / "gateway"),
            "DATABASE_URL": self.database_url,
            "GRPC_SERVER_HOST": "127.0.0.1",
            "GRPC_SERVER_PORT": "0",
            "SMTP_HOST": mail_host,
            "SMTP_PORT": str(self.mail.port),
            "SMTP_SECURITY": "none",
            "MAIL_FROM": "noreply@cloudgrpc.test",
            "ADMIN_KEY": ADMIN_KEY,
            "CLUSTER_SECRET": CLUSTER_SECRET,
            "HEARTBEAT_INTERVAL_S": "0.5",
            "NODE_TIMEOUT_S": "3",
            "OTP_RESEND_COOLDOWN_S": "0",
            # The suites sign up many accounts from 127.0.0.1: lift the per-address limits
            # (tests/security/test_accounts.py checks the defaults).
            "OTP_SENDS_PER_ADDRESS_HOUR": "1000000",
            "OTP_VERIFIES_PER_ADDRESS_HOUR": "1000000",
            "NODE_CALL_TIMEOUT_S": "10",
            "PYTHONUNBUFFERED": "1",
            "LOG_LEVEL": "INFO",
            **(env or {}),
        }
        for key in ("GMAIL_USER", "GMAIL_APP_PASSWORD", "CAMPAY_APP_USERNAME",
                    "CAMPAY_APP_PASSWORD", "METRICS_PORT", "NODE_METRICS_PORT"):
            self.env.pop(key, None)
        self.gateway: Proc | None = None
        self.nodes: dict[str, Proc] = {}
        self.node_ports: dict[str, int] = {}
        self.port = 0
        self._channel: grpc.Channel | None = None

    # --- processes --------------------------------------------------------------------

    def start(self) -> Cluster:
        self.start_gateway()
        for i in range(1, self.node_count + 1):
            self.start_node(f"node{i}")
        self.wait_nodes_online(self.node_count)
        return self

    def start_gateway(self) -> None:
        (self.root / "gateway").mkdir(parents=True, exist_ok=True)
        env = dict(self.env)
        if self.port:
            env["GRPC_SERVER_PORT"] = str(self.port)
        if self.metrics:
            env["METRICS_PORT"] = str(self.metrics_ports.setdefault("gateway", free_port()))
        self.gateway = _spawn("gateway", [sys.executable, "-m", "cloudgrpc_server.app"], env,
                              self.root, self.umask)
        m = self.gateway.wait_for(r"Server listening on port (\d+)", timeout=60)
        self.port = int(m.group(1))
        self.env["CLOUDGRPC_GATEWAY"] = self.address

    def start_node(self, name: str, capacity_gb: float | None = None) -> Proc:
        port = self.node_ports.setdefault(name, free_port())
        cap = capacity_gb if capacity_gb is not None else self.node_capacity_gb
        extra = (["--metrics-port", str(self.metrics_ports.setdefault(name, free_port()))]
                 if self.metrics else [])
        proc = _spawn(name, [sys.executable, "-m", "cloudgrpc_node.app", name, "127.0.0.1",
                             str(port), str(cap), "--gateway", self.address,
                             "--data-dir", str(self.node_dir(name)), *extra],
                      {**self.env, **self.node_env.get(name, {})}, self.root, self.umask)
        self.nodes[name] = proc
        proc.wait_for(r"registered with gateway", timeout=60)
        return proc

    def node_dir(self, name: str) -> Path:
        return self.root / f"node_storage_{name}"

    def stop_node(self, name: str, sig: int = signal.SIGTERM) -> int:
        return self.nodes[name].stop(sig)

    def stop(self) -> None:
        for proc in self.nodes.values():
            proc.stop(signal.SIGKILL, timeout=5)
        if self.gateway is not None:
            self.gateway.stop()
        if self._channel is not None:
            self._channel.close()
        self.mail.stop()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    # --- clients ----------------------------------------------------------------------

    @property
    def channel(self) -> grpc.Channel:
        if self._channel is None:
            self._channel = grpc.insecure_channel(self.address, options=[
                ("grpc.max_receive_message_length", 64 * MiB),
                ("grpc.max_send_message_length", 64 * MiB)])
        return self._channel

    @property
    def auth(self) -> pb_grpc.AuthServiceStub:
        return pb_grpc.AuthServiceStub(self.channel)

    @property
    def files(self) -> pb_grpc.FileServiceStub:
        return pb_grpc.FileServiceStub(self.channel)

    @property
    def storage(self) -> pb_grpc.StorageServiceStub:
        return pb_grpc.StorageServiceStub(self.channel)

    @property
    def admin(self) -> pb_grpc.AdminServiceStub:
        return pb_grpc.AdminServiceStub(self.channel)

    def status(self) -> pb.SystemStatusResponse:
        return self.admin.GetSystemStatus(pb.SystemStatusRequest(admin_key=ADMIN_KEY),
                                          timeout=10)

    def wait_nodes_online(self, count: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.status().online_nodes == count:
                return
            time.sleep(0.1)
        raise AssertionError(f"{count} nodes not online: {self.status()}")

    def verified_code(self, email: str) -> str:
        """Mail a code to ``email``, verify it; the verification token VerifyOTP answers."""
        before = self.mail.count_for(email)
        self.auth.SendOTP(pb.SendOTPRequest(email=email), timeout=10)
        code = self.mail.code_for(email, after=before)
        return self.auth.VerifyOTP(pb.VerifyOTPRequest(email=email, otp=code),
                                   timeout=10).verification_token

    def sign_up(self, email: str | None = None, name: str = "Test User",
                device_name: str = "") -> Account:
        """A new account, signed in; with ``device_name`` it has a device refresh token."""
        email = email or f"user-{uuid.uuid4().hex[:8]}@example.com"
        token = self.verified_code(email)
        reply = self.auth.Enroll(pb.EnrollRequest(email=email, full_name=name,
                                                  verification_token=token,
                                                  device_name=device_name), timeout=10)
        return Account(self, email, reply.session_token, reply.user_id, reply.refresh_token)

    def sign_in(self, email: str, device_name: str = "") -> Account:
        """Another sign-in (another device) of an existing account."""
        token = self.verified_code(email)
        reply = self.auth.Login(pb.LoginRequest(email=email, verification_token=token,
                                                device_name=device_name), timeout=10)
        return Account(self, email, reply.session_token, reply.user_id, reply.refresh_token)


@dataclass
class Account:
    cluster: Cluster
    email: str
    token: str
    user_id: str
    refresh_token: str = ""

    def upload(self, data: bytes, name: str = "", folder_id: str = "",
               piece: int = 256 * 1024, **meta: object) -> pb.UploadFileResponse:
        name = name or f"file-{uuid.uuid4().hex[:6]}.bin"

        def requests() -> Iterator[pb.UploadFileRequest]:
            yield pb.UploadFileRequest(metadata=pb.FileMetadata(
                session_token=self.token, filename=name, file_size=len(data),
                parent_folder_id=folder_id, **meta))
            for i in range(0, len(data), piece):
                yield pb.UploadFileRequest(chunk_data=data[i:i + piece])

        return self.cluster.files.UploadFile(requests(), timeout=120)

    def download(self, file_id: str, offset: int = 0, length: int = 0) -> bytes:
        out = bytearray()
        first = True
        for msg in self.cluster.files.DownloadFile(pb.DownloadFileRequest(
                session_token=self.token, file_id=file_id, offset=offset, length=length),
                timeout=120):
            if first:
                assert msg.WhichOneof("data") == "file_info"
                first = False
                continue
            out += msg.chunk_data
        return bytes(out)

    def ls(self, folder_id: str = "", include_deleted: bool = False) -> pb.ListFilesResponse:
        return self.cluster.files.ListFiles(pb.ListFilesRequest(
            session_token=self.token, folder_id=folder_id, include_deleted=include_deleted),
            timeout=10)

    def storage(self) -> pb.StorageInfoResponse:
        return self.cluster.storage.GetStorageInfo(
            pb.StorageInfoRequest(session_token=self.token), timeout=10)


@contextlib.contextmanager
def running_cluster(root: Path, **kwargs: object) -> Iterator[Cluster]:
    cluster = Cluster(root, **kwargs)  # type: ignore[arg-type]
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
