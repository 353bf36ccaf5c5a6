"""Bounded resources (issue 13): nobody, signed in or not, can hold every gateway worker,
every string on the wire has a length limit, and the Campay webhook never buffers more than
its body limit.

Each attack runs from an independent client (its own channel, or raw sockets for HTTP)
against real gateway processes, and the tests assert what a user would notice: SendOTP and
health keep answering, the stalled streams are gone after their deadline, nothing is stored
or mailed for a refused request, the gateway's memory stays flat.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cloudgrpc_proto import cloud_storage_pb2 as pb
from cloudgrpc_proto import cloud_storage_pb2_grpc as pb_grpc
from cloudgrpc_proto.client import CloudClient
from cloudgrpc_proto.errors import RateLimited
from tests.cluster import Account, Cluster, free_port

MiB = 1024 * 1024
FIRST_MESSAGE_S = 2.0
IDLE_S = 6.0
UPLOADS_PER_USER = 2


@pytest.fixture(autouse=True)
def limits_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Short deadlines and a small per-account cap, read by the gateway the fixtures start."""
    monkeypatch.setenv("UPLOAD_FIRST_MESSAGE_S", str(FIRST_MESSAGE_S))
    monkeypatch.setenv("STREAM_IDLE_S", str(IDLE_S))
    monkeypatch.setenv("UPLOADS_PER_USER", str(UPLOADS_PER_USER))


def _attacker_channel(c: Cluster) -> grpc.Channel:
    return grpc.insecure_channel(c.address, options=[
        ("grpc.max_send_message_length", 64 * MiB),
        ("grpc.max_receive_message_length", 64 * MiB)])


def _timed(call: object) -> float:
    start = time.monotonic()
    call()  # type: ignore[operator]
    return time.monotonic() - start


def _answers(c: Cluster, email: str) -> list[float]:
    """How long SendOTP, VerifyOTP and health take (each must answer, error or not)."""
    auth = pb_grpc.AuthServiceStub(c.channel)
    health = health_pb2_grpc.HealthStub(c.channel)

    def verify() -> None:
        with contextlib.suppress(grpc.RpcError):  # a wrong code is an answer too
            auth.VerifyOTP(pb.VerifyOTPRequest(email=email, otp="000000"), timeout=5)

    def check() -> None:
        reply = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING

    def send() -> None:
        with contextlib.suppress(grpc.RpcError):  # a cooldown or rate refusal answers too
            auth.SendOTP(pb.SendOTPRequest(email=email), timeout=5)

    return [_timed(send), _timed(verify), _timed(check)]


def _never_sends(release: threading.Event) -> Iterator[pb.UploadFileRequest]:
    release.wait(60)
    return
    yield  # a generator that yields nothing until released


def test_idle_anonymous_uploads_cannot_starve_the_gateway(cluster: Cluster) -> None:
    c = cluster
    attacker = _attacker_channel(c)
    stub = pb_grpc.FileServiceStub(attacker)
    release = threading.Event()
    opened_at = time.monotonic()
    idle = [stub.UploadFile.future(_never_sends(release), timeout=60) for _ in range(96)]
    try:
        time.sleep(0.5)  # every stream has reached the gateway
        email = f"victim-{uuid.uuid4().hex[:6]}@example.com"
        for _ in range(3):  # during the attack: answers within a second or two
            assert max(_answers(c, email)) < 2.0
            time.sleep(0.3)
        # Past the few pre-authentication slots they are refused at once; the ones that
        # got a slot are dropped once the first-message deadline has passed.
        codes = []
        for future in idle:
            remaining = opened_at + FIRST_MESSAGE_S + 5.0 - time.monotonic()
            with pytest.raises(grpc.RpcError) as refused:
                future.result(timeout=max(0.1, remaining))
            codes.append(refused.value.code())
        dropped = codes.count(grpc.StatusCode.CANCELLED) + codes.count(
            grpc.StatusCode.DEADLINE_EXCEEDED)
        assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) + dropped == len(idle)
        assert 1 <= dropped <= 8 < len(idle)  # UPLOAD_PREAUTH_SLOTS's default
        # The seed's way (session in the first message only) and the client's both work.
        acct = c.sign_up()
        data = os.urandom(300 * 1024)
        fid = acct.upload(data, "seed-style.bin").file_id
        assert acct.download(fid) == data
        with CloudClient(c.address, session_token=acct.token) as client:
            src = Path(c.root) / "client.bin"
            src.write_bytes(data)
            uploaded = client.upload(str(src))
            assert acct.download(uploaded.file_id) == data
    finally:
        release.set()
        attacker.close()


def test_unary_calls_that_never_send_their_request_cannot_starve_the_gateway(
        cluster: Cluster) -> None:
    """A stream stub aimed at SendOTP sends the call's headers and never its message: the
    sync server would wait for it on a worker. Past a few per client address such calls are
    refused at once, and the waiting ones are dropped at the deadline."""
    c = cluster
    attacker = _attacker_channel(c)
    stalled_send_otp = attacker.stream_unary(
        "/cloudstorage.AuthService/SendOTP",
        request_serializer=pb.SendOTPRequest.SerializeToString,
        response_deserializer=pb.SendOTPResponse.FromString)
    release = threading.Event()
    opened_at = time.monotonic()
    calls = [stalled_send_otp.future(_never_sends(release), timeout=60) for _ in range(80)]
    try:
        time.sleep(0.5)
        health = health_pb2_grpc.HealthStub(c.channel)
        assert _timed(lambda: health.Check(health_pb2.HealthCheckRequest(), timeout=5)) < 2.0
        codes = []
        for future in calls:
            remaining = opened_at + IDLE_S + 5.0 - time.monotonic()
            with pytest.raises(grpc.RpcError) as refused:
                future.result(timeout=max(0.1, remaining))
            codes.append(refused.value.code())
        held = codes.count(grpc.StatusCode.CANCELLED) + codes.count(
            grpc.StatusCode.DEADLINE_EXCEEDED)
        assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) + held == len(calls)
        assert 1 <= held <= 16  # WAITING_PER_ADDRESS's default
        # Once they are gone the same address is served as before.
        assert max(_answers(c, f"after-{uuid.uuid4().hex[:6]}@example.com")) < 2.0
        acct = c.sign_up()
        assert acct.ls().success
    finally:
        release.set()
        attacker.close()


def test_slow_senders_are_dropped_and_hold_nothing(cluster: Cluster) -> None:
    """A signed-in sender that stops between messages loses its stream after the idle
    limit, and what it sent is not committed."""
    c = cluster
    acct = c.sign_up()
    attacker = _attacker_channel(c)
    stub = pb_grpc.FileServiceStub(attacker)
    release = threading.Event()

    def trickle() -> Iterator[pb.UploadFileRequest]:
        yield pb.UploadFileRequest(metadata=pb.FileMetadata(
            session_token=acct.token, filename="slow.bin", file_size=2 * MiB))
        yield pb.UploadFileRequest(chunk_data=b"x" * 1024)
        release.wait(60)  # then nothing for longer than the idle limit

    started = time.monotonic()
    slow = [stub.UploadFile.future(trickle(), timeout=60) for _ in range(UPLOADS_PER_USER)]
    try:
        for future in slow:
            with pytest.raises(grpc.RpcError) as dropped:
                future.result(timeout=IDLE_S + 6.0)
            assert dropped.value.code() in (grpc.StatusCode.CANCELLED,
                                            grpc.StatusCode.DEADLINE_EXCEEDED)
        assert time.monotonic() - started < IDLE_S + 6.0
        assert "slow.bin" not in {f.filename for f in acct.ls().files}
        # Their places are free again: the account uploads at full concurrency.
        data = os.urandom(64 * 1024)
        assert acct.download(acct.upload(data, "after.bin").file_id) == data
    finally:
        release.set()
        attacker.close()


def test_concurrent_uploads_per_account_are_capped(cluster: Cluster) -> None:
    c = cluster
    acct = c.sign_up()
    other = c.sign_up()
    release = threading.Event()
    data = os.urandom(200 * 1024)

    def held(name: str) -> Iterator[pb.UploadFileRequest]:
        yield pb.UploadFileRequest(metadata=pb.FileMetadata(
            session_token=acct.token, filename=name, file_size=len(data)))
        release.wait(IDLE_S - 2)
        yield pb.UploadFileRequest(chunk_data=data)

    open_uploads = [c.files.UploadFile.future(held(f"held{i}.bin"), timeout=60)
                    for i in range(UPLOADS_PER_USER)]
    try:
        time.sleep(0.5)  # both have sent their metadata and hold their place
        with pytest.raises(grpc.RpcError) as refused:
            acct.upload(data, "one-too-many.bin")
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "concurrent uploads" in (refused.value.details() or "")
        with CloudClient(c.address, session_token=acct.token) as client:
            src = Path(c.root) / "n-plus-one.bin"
            src.write_bytes(data)
            with pytest.raises(RateLimited):
                client.upload(str(src))
        # Another account is not affected by this one's uploads.
        assert other.download(other.upload(data, "other.bin").file_id) == data
    finally:
        release.set()
    for future in open_uploads:
        assert future.result(timeout=30).success
    names = {f.filename for f in acct.ls().files}
    assert names == {"held0.bin", "held1.bin"}
    assert acct.download(acct.upload(data, "later.bin").file_id) == data


def test_long_lived_streams_are_capped_per_account(cluster: Cluster) -> None:
    """WatchChanges and DownloadFile count against the account's stream cap, and an
    anonymous caller cannot open them at all."""
    c = cluster
    acct = c.sign_up()
    with pytest.raises(grpc.RpcError) as anonymous:
        next(iter(c.files.WatchChanges(pb.WatchChangesRequest(session_token=""), timeout=5)))
    assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
    watches = []
    try:
        refused = None
        for _ in range(40):
            call = c.files.WatchChanges(pb.WatchChangesRequest(session_token=acct.token),
                                        timeout=30)
            try:
                assert next(call).kind == "hello"
            except grpc.RpcError as exc:
                refused = exc
                break
            watches.append(call)
        assert refused is not None and refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert len(watches) == 16  # STREAMS_PER_USER's default
        # SendOTP still answers while this account holds its streams.
        assert max(_answers(c, f"bystander-{uuid.uuid4().hex[:6]}@example.com")) < 2.0
    finally:
        for call in watches:
            call.cancel()


# --- string limits ------------------------------------------------------------------------


def _refused(call: object, field: str) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        call()  # type: ignore[operator]
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, refused.value
    assert field in (refused.value.details() or ""), refused.value.details()


def _state(acct: Account) -> tuple[set[str], set[str], int]:
    listing = acct.ls()
    return ({f.filename for f in listing.files}, {d.name for d in listing.folders},
            acct.storage().used_bytes)


def test_long_strings_are_refused_naming_the_field_and_change_nothing(cluster: Cluster
                                                                      ) -> None:
    c = cluster
    acct = c.sign_up()
    peer = c.sign_up()
    data = os.urandom(1000)
    fid = acct.upload(data, "kept.bin").file_id
    before = _state(acct)
    files, auth = c.files, c.auth
    token = acct.token

    _refused(lambda: acct.upload(data, "n.bin", mime_type="a/" + "b" * (30 * MiB)),
             "metadata.mime_type")
    _refused(lambda: acct.upload(data, "x" * 300), "metadata.filename")
    _refused(lambda: acct.upload(data, "n.bin", upload_id="u" * 200), "metadata.upload_id")
    _refused(lambda: files.UploadSmallFiles(pb.UploadSmallFilesRequest(
        session_token=token, files=[
            pb.SmallFileUpload(metadata=pb.FileMetadata(filename="fine.txt"), data=b"1"),
            pb.SmallFileUpload(metadata=pb.FileMetadata(filename="é" * 200), data=b"2")]),
        timeout=10), "files[1].metadata.filename")
    _refused(lambda: files.CreateFolder(pb.CreateFolderRequest(
        session_token=token, name="d" * 256), timeout=10), "name")
    _refused(lambda: files.MoveEntry(pb.MoveEntryRequest(
        session_token=token, entry_id=fid, new_name="m" * 256), timeout=10), "new_name")
    _refused(lambda: files.CreateSymlink(pb.CreateSymlinkRequest(
        session_token=token, name="link", target="/t" * 2049), timeout=10), "target")
    _refused(lambda: files.CreateSymlink(pb.CreateSymlinkRequest(
        session_token=token, name="l" * 256, target="kept.bin"), timeout=10), "name")
    _refused(lambda: files.ShareFile(pb.ShareFileRequest(
        session_token=token, file_id=fid, share_with_email="s" * 300 + "@example.com",
        permission="read"), timeout=10), "share_with_email")
    _refused(lambda: files.FindChunks(pb.FindChunksRequest(
        session_token=token, sha256=["f" * 65]), timeout=10), "sha256[0]")
    _refused(lambda: files.ListFiles(pb.ListFilesRequest(
        session_token=token, path="/" + "p/" * 3000), timeout=10), "path")
    _refused(lambda: files.DeleteFile(pb.DeleteFileRequest(
        session_token="t" * 5000, file_id=fid), timeout=10), "session_token")

    assert _state(acct) == before
    assert acct.download(fid) == data
    assert not files.ListShares(pb.ListSharesRequest(session_token=token), timeout=10).shares

    long_email = "e" * 10 * 1024 + "@example.com"
    _refused(lambda: auth.SendOTP(pb.SendOTPRequest(email=long_email), timeout=10), "email")
    assert c.mail.count_for(long_email) == 0
    _refused(lambda: auth.Enroll(pb.EnrollRequest(
        email=peer.email, full_name="F" * 1000), timeout=10), "full_name")
    _refused(lambda: auth.Login(pb.LoginRequest(
        email=peer.email, device_name="D" * 300), timeout=10), "device_name")
    payments = pb_grpc.PaymentServiceStub(c.channel)
    _refused(lambda: payments.InitiatePayment(pb.InitiatePaymentRequest(
        session_token=token, tier_id="basic", provider="mtn_momo",
        phone_number="2" * 100), timeout=10), "phone_number")

    # The limits are not tighter than what users legitimately send.
    longest = "n" * 251 + ".bin"
    assert acct.download(acct.upload(data, longest, mime_type="application/"
                                     + "x" * 188).file_id) == data
    assert longest in _state(acct)[0]


# --- the webhook ----------------------------------------------------------------------------


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _attack_webhook(port: int, headers: str, body_chunks: Iterator[bytes]) -> tuple[int, float]:
    """Send ``headers`` then up to 200 MiB of body while reading the reply; the reply's
    status and how long it took to come."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    started = time.monotonic()
    stop = threading.Event()

    def send() -> None:
        try:
            sock.sendall(headers.encode())
            for piece in body_chunks:
                if stop.is_set():
                    return
                sock.sendall(piece)
        except OSError:
            return  # the server closed the connection: what a bounded reader does

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        reply = b""
        while b"\r\n" not in reply:
            piece = sock.recv(4096)
            if not piece:
                break
            reply += piece
        took = time.monotonic() - started
        assert reply.startswith(b"HTTP/1."), reply[:200]
        return int(reply.split()[1]), took
    finally:
        stop.set()
        sock.close()
        sender.join(10)


def _raw(total: int, piece: int = MiB) -> Iterator[bytes]:
    block = b"a" * piece
    for _ in range(total // piece):
        yield block


def _chunked(total: int, piece: int = MiB) -> Iterator[bytes]:
    block = f"{piece:x}\r\n".encode() + b"a" * piece + b"\r\n"
    for _ in range(total // piece):
        yield block
    yield b"0\r\n\r\n"


def test_webhook_reads_at_most_its_body_limit(tmp_path: Path) -> None:
    port = free_port()
    c = Cluster(tmp_path, nodes=0, env={"WEBHOOK_PORT": str(port),
                                         "CAMPAY_WEBHOOK_KEY": "k" * 40})
    # Credentials (for an unreachable Campay) so the webhook runs whatever the stand-in policy.
    c.env.update({"CAMPAY_APP_USERNAME": "user", "CAMPAY_APP_PASSWORD": "pass",
                  "CAMPAY_BASE_URL": f"http://127.0.0.1:{free_port()}"})
    try:
        c.start_gateway()
        assert c.gateway is not None
        c.gateway.wait_for(r"Campay webhook endpoint", timeout=30)
        pid = c.gateway.popen.pid
        rss_before = _rss_kib(pid)
        big = 200 * MiB
        path = "POST /campay/webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"

        status, took = _attack_webhook(port, path + "Content-Length: -1\r\n\r\n", _raw(big))
        assert status == 400 and took < 3.0
        status, took = _attack_webhook(port, path + f"Content-Length: {big}\r\n\r\n", _raw(big))
        assert status == 413 and took < 3.0
        status, took = _attack_webhook(port, path + "Transfer-Encoding: chunked\r\n\r\n",
                                       _chunked(big))
        assert status == 413 and took < 3.0
        status, took = _attack_webhook(port, path + "\r\n", _raw(big))
        assert 400 <= status < 500 and took < 3.0
        assert _rss_kib(pid) - rss_before < 32 * 1024, "the gateway buffered a body"

        # The endpoint still answers a well-formed call (refused: it is not signed).
        status, _ = _attack_webhook(
            port, path + "Content-Length: 2\r\nConnection: close\r\n\r\n{}", iter(()))
        assert status == 403
        assert c.gateway.popen.poll() is None
    finally:
        c.stop()


def _string_fields(descriptor: object, prefix: str = "", depth: int = 0
                   ) -> Iterator[tuple[str, object]]:
    for field in descriptor.fields:  # type: ignore[attr-defined]
        if field.type == field.TYPE_STRING:
            yield prefix + field.name, field
        elif field.type == field.TYPE_MESSAGE and depth < 3 and not field.is_repeated:
            yield from _string_fields(field.message_type, prefix + field.name + ".", depth + 1)


def test_every_string_field_of_every_request_has_a_limit() -> None:
    """Walks the wire contract: each request's string fields (nested ones included) take
    their limit and are refused, naming the field, one byte past it."""
    from google.protobuf import message_factory

    from cloudgrpc_proto.errors import InvalidArgument
    from cloudgrpc_server.request_limits import check_request, string_limit

    checked = 0
    for service in pb.DESCRIPTOR.services_by_name.values():
        if service.name == "ChunkService":
            continue  # served by the nodes, not the gateway
        for method in service.methods:
            cls = message_factory.GetMessageClass(method.input_type)
            for path, field in _string_fields(method.input_type):
                limit = string_limit(field)  # type: ignore[arg-type]
                assert limit <= 4096, path
                for size, refused in ((limit, False), (limit + 1, True)):
                    msg = cls()
                    target = msg
                    *parents, leaf = path.split(".")
                    for name in parents:
                        target = getattr(target, name)
                    value = "é" * (size // 2) + "x" * (size % 2)  # bytes, not characters
                    if field.is_repeated:  # type: ignore[attr-defined]
                        getattr(target, leaf).append(value)
                    else:
                        setattr(target, leaf, value)
                    if refused:
                        with pytest.raises(InvalidArgument, match=rf"\b{path}\b"):
                            check_request(msg)
                    else:
                        check_request(msg)
                checked += 1
    assert checked > 100


def test_webhook_body_read_times_out_on_a_stalled_sender() -> None:
    """A sender that announces a small body and stops mid-way meets the read timeout: the
    handler answers 408 instead of waiting on the socket forever."""
    from email.message import Message

    from cloudgrpc_server.payment_webhook import BodyRefused, read_body

    server_side, client_side = socket.socketpair()
    with server_side, client_side:
        server_side.settimeout(0.5)
        headers = Message()
        headers["Content-Length"] = "100"
        client_side.sendall(b"x" * 10)  # then nothing
        started = time.monotonic()
        with server_side.makefile("rb") as rfile, pytest.raises(BodyRefused) as refused:
            read_body(headers, rfile, 64 * 1024)
        assert refused.value.status == 408
        assert time.monotonic() - started < 3.0
