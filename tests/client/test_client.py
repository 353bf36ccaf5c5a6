"""CloudClient against the in-process fake gateway: retries, refresh, dedup, resume, ranges."""

from __future__ import annotations

import hashlib
import io
import os
import threading
from concurrent import futures

import grpc
import pytest

from cloudgrpc_proto import errors
from cloudgrpc_proto.client import CloudClient
from cloudgrpc_proto.retry import RetryPolicy, status_code
from cloudgrpc_proto.session_store import Session
from cloudgrpc_proto.transfer import UploadStats
from tests.client.fake_gateway import MiB, Running
from tests.client.helpers import FAST_RETRY, payload, sign_in

UNAVAILABLE = grpc.StatusCode.UNAVAILABLE


# -- retries -------------------------------------------------------------------------------


def test_idempotent_call_retries_unavailable(gateway: Running, client: CloudClient) -> None:
    gateway.fake.inject["ListFiles"] = [UNAVAILABLE, UNAVAILABLE]
    response = client.list_files(path="/")
    assert response.success
    assert gateway.fake.calls["ListFiles"] == 3


def test_idempotent_call_gives_up_after_bounded_tries(
    gateway: Running, client: CloudClient
) -> None:
    gateway.fake.inject["StatEntry"] = [UNAVAILABLE] * 5
    with pytest.raises(errors.Unavailable):
        client.stat(path="/nothing")
    assert gateway.fake.calls["StatEntry"] == FAST_RETRY.attempts


def test_non_idempotent_call_is_not_retried(gateway: Running, client: CloudClient) -> None:
    folder = client.create_folder("docs").folder
    gateway.fake.inject["DeleteFolder"] = [UNAVAILABLE]
    with pytest.raises(errors.Unavailable):
        client.delete_folder(folder.folder_id)
    assert gateway.fake.calls["DeleteFolder"] == 1
    gateway.fake.inject["SendOTP"] = [UNAVAILABLE]
    with pytest.raises(errors.Unavailable):
        client.send_otp("x@example.com")
    assert gateway.fake.calls["SendOTP"] == 2  # one from sign-in, one refused


def test_unreachable_gateway_is_unavailable_quickly() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    c = CloudClient(f"127.0.0.1:{port}", timeout=2, retry=FAST_RETRY, session_token="t")
    try:
        with pytest.raises(errors.Unavailable):
            c.list_files()
    finally:
        c.close()


def test_typed_errors(gateway: Running, client: CloudClient) -> None:
    with pytest.raises(errors.NotFound):
        client.stat(path="/missing")
    client.create_folder("a")
    with pytest.raises(errors.AlreadyExists):
        client.create_folder("a")
    assert client.create_folder("a", exist_ok=True).folder.name == "a"


# -- sessions ------------------------------------------------------------------------------


def test_missing_session_fails_without_a_call(gateway: Running) -> None:
    c = CloudClient(gateway.target, timeout=5)
    try:
        with pytest.raises(errors.Unauthenticated, match="not signed in"):
            c.list_files()
        assert gateway.fake.calls["ListFiles"] == 0
    finally:
        c.close()


def test_refresh_on_unauthenticated(gateway: Running) -> None:
    changes: list[Session] = []
    c = CloudClient(gateway.target, timeout=5, on_tokens_changed=changes.append)
    try:
        sign_in(c)
        assert c.refresh_token
        old = c.session
        gateway.fake.expire_sessions()
        assert c.list_files().success
        assert gateway.fake.calls["RefreshSession"] == 1
        assert c.session_token != old.session_token
        assert changes[-1].session_token == c.session_token
        assert changes[-1].refresh_token == c.refresh_token
        assert changes[-1].email == "ada@example.com"
    finally:
        c.close()


def test_refresh_failure_reports_expired_session(gateway: Running, client: CloudClient) -> None:
    gateway.fake.expire_sessions()
    gateway.fake.refresh_tokens.clear()
    with pytest.raises(errors.Unauthenticated, match="session expired"):
        client.list_files()


def test_no_refresh_token_means_unauthenticated(gateway: Running) -> None:
    c = CloudClient(gateway.target, timeout=5, device_name="")
    try:
        c.send_otp("ada@example.com")
        c.verify_otp("ada@example.com", "123456")
        c.enroll("ada@example.com", "Ada")
        assert not c.refresh_token
        gateway.fake.expire_sessions()
        with pytest.raises(errors.Unauthenticated):
            c.whoami()
        assert gateway.fake.calls["RefreshSession"] == 0
    finally:
        c.close()


def test_verification_token_is_passed_on(gateway: Running) -> None:
    c = CloudClient(gateway.target, timeout=5)
    try:
        c.send_otp("bob@example.com")
        with pytest.raises(errors.InvalidArgument):
            c.verify_otp("bob@example.com", "000000")
        c.send_otp("bob@example.com")
        c.verify_otp("bob@example.com", "123456")
        token = gateway.fake.verified["bob@example.com"][0]
        gateway.fake.verified["bob@example.com"].insert(0, "other")
        c.enroll("bob@example.com", "Bob")
        # the token VerifyOTP returned was the one consumed, not the other one
        assert gateway.fake.verified["bob@example.com"] == ["other"]
        assert token
        assert c.whoami().email == "bob@example.com"
    finally:
        c.close()


def test_logout_forgets_tokens(gateway: Running) -> None:
    changes: list[Session] = []
    c = CloudClient(gateway.target, timeout=5, on_tokens_changed=changes.append)
    try:
        sign_in(c)
        c.logout()
        assert not c.signed_in
        assert not changes[-1].signed_in
        assert not gateway.fake.sessions and not gateway.fake.refresh_tokens
    finally:
        c.close()


# -- uploads -------------------------------------------------------------------------------


def test_upload_download_round_trip(gateway: Running, client: CloudClient) -> None:
    data = payload(3 * 256 * 1024 + 12345)
    done: list[int] = []
    response = client.upload(io.BytesIO(data), filename="a.bin", progress=done.append)
    assert response.success and response.file_id
    assert sum(done) == len(data)
    assert response.entry.file_size == len(data)
    with client.download(response.file_id) as stream:
        assert stream.info.file_size == len(data)
        assert stream.info.filename == "a.bin"
        assert b"".join(stream) == data
    out = io.BytesIO()
    info = client.download_to(response.file_id, out)
    assert out.getvalue() == data and info.version == 1


def test_upload_empty_file(gateway: Running, client: CloudClient) -> None:
    response = client.upload(io.BytesIO(b""), filename="empty")
    assert response.entry.file_size == 0
    assert client.download(response.file_id).read_all() == b""


def test_upload_from_path_guesses_mime(gateway: Running, client: CloudClient, tmp_path) -> None:
    path = tmp_path / "report.pdf"
    path.write_bytes(b"%PDF-1.4 hello")
    response = client.upload(str(path))
    assert response.entry.filename == "report.pdf"
    assert response.entry.mime_type == "application/pdf"


def test_upload_from_pipe_is_spooled(gateway: Running, client: CloudClient) -> None:
    import threading

    r, w = os.pipe()
    data = payload(300_000)

    def feed() -> None:
        with os.fdopen(w, "wb") as out:
            out.write(data)

    writer = threading.Thread(target=feed)
    writer.start()
    with os.fdopen(r, "rb") as pipe:
        response = client.upload(pipe, filename="piped")
    writer.join()
    assert client.download(response.file_id).read_all() == data


def test_known_chunks_are_sent_as_refs(gateway: Running, client: CloudClient) -> None:
    chunk = gateway.fake.chunk_size
    data = payload(4 * chunk + 1000, seed=7)
    # the server already holds every chunk of this file (the last short one too)
    for i in range(0, len(data), chunk):
        piece = data[i : i + chunk]
        gateway.fake.chunks[hashlib.sha256(piece).hexdigest()] = piece
    stats = UploadStats()
    response = client.upload(io.BytesIO(data), filename="known.bin", stats=stats)
    log = gateway.fake.upload_log[-1]
    assert log["bytes"] == 0 and log["refs"] == 5
    assert stats.bytes_sent == 0 and stats.chunks_referenced == 5
    assert response.chunks_deduplicated == 5
    assert client.download(response.file_id).read_all() == data


def test_refused_references_are_sent_again_as_bytes(
    gateway: Running, client: CloudClient
) -> None:
    """A chunk FindChunks answered may lose its live copies before the upload references it:
    the gateway refuses the reference (FAILED_PRECONDITION) and the client sends the bytes."""
    chunk = gateway.fake.chunk_size
    data = payload(3 * chunk + 10, seed=11)
    client.upload(io.BytesIO(data), filename="first.bin")
    gateway.fake.answers["UploadFile"] = [errors.FailedPrecondition(
        "chunk 0123456789ab has no copy on a node that is online: send its bytes")]
    stats = UploadStats()
    response = client.upload(io.BytesIO(data), filename="again.bin", stats=stats)
    assert gateway.fake.calls["UploadFile"] == 3  # first, refused, then every byte
    log = gateway.fake.upload_log[-1]
    assert log["bytes"] == len(data) and log["refs"] == 0
    assert stats.bytes_sent == len(data) and stats.chunks_referenced == 0
    assert client.download(response.file_id).read_all() == data
    # a refusal of an upload that referenced nothing is the caller's error, not retried
    gateway.fake.answers["UploadFile"] = [errors.FailedPrecondition("not in that state")]
    with pytest.raises(errors.FailedPrecondition):
        client.upload(io.BytesIO(b"tiny"), filename="tiny.txt")
    assert gateway.fake.calls["UploadFile"] == 4


def test_known_chunks_off_sends_bytes(gateway: Running, client: CloudClient) -> None:
    data = payload(600_000)
    client.upload(io.BytesIO(data), filename="one")
    client.upload(io.BytesIO(data), filename="two", known_chunks=False)
    assert gateway.fake.upload_log[-1]["bytes"] == len(data)
    assert gateway.fake.upload_log[-1]["refs"] == 0


def test_appended_file_resends_only_the_tail(gateway: Running, client: CloudClient) -> None:
    chunk = gateway.fake.chunk_size
    data = payload(3 * chunk + 100)
    first = client.upload(io.BytesIO(data), filename="log.txt")
    grown = data + payload(chunk, seed=3)
    stats = UploadStats()
    second = client.upload(
        io.BytesIO(grown), filename="log.txt", overwrite_file_id=first.file_id, stats=stats
    )
    assert second.file_id == first.file_id
    assert stats.chunks_referenced == 3  # the three whole chunks did not travel again
    assert stats.bytes_sent == len(grown) - 3 * chunk
    assert client.download(first.file_id).read_all() == grown


class _Breaks(io.BytesIO):
    """A file whose reads fail once ``armed``: a disk error midway."""

    armed = False

    def read(self, size: int | None = -1) -> bytes:
        if self.armed:
            raise OSError("disk on fire")
        return super().read(size)


def test_local_read_error_aborts_the_upload(
    gateway: Running, client: CloudClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cloudgrpc_proto import client as client_mod

    broken = _Breaks(payload(3 * gateway.fake.chunk_size))
    real_iter = client_mod.iter_payload

    def iter_payload(*args, **kwargs):
        broken.armed = True  # the hash pass went fine; the data pass fails
        yield from real_iter(*args, **kwargs)

    monkeypatch.setattr(client_mod, "iter_payload", iter_payload)
    with pytest.raises(OSError, match="disk on fire"):
        client.upload(broken, filename="bad.bin")
    assert client.list_files().files == []  # nothing visible


def test_interrupted_upload_resumes_with_missing_chunks_only(
    gateway: Running, client: CloudClient
) -> None:
    chunk = gateway.fake.chunk_size
    data = payload(8 * chunk + 17, seed=11)
    gateway.fake.upload_cut_after = 5 * chunk  # the connection drops after 5 chunks
    with pytest.raises(errors.Unavailable):
        client.upload(io.BytesIO(data), filename="big.iso")
    assert client.list_files().files == []  # nothing visible
    stored_before = gateway.fake.upload_log[-1]["stored"]
    assert stored_before == 5
    stats = UploadStats()
    response = client.upload(io.BytesIO(data), filename="big.iso", stats=stats)
    assert stats.chunks_referenced == 5
    assert stats.bytes_sent == len(data) - 5 * chunk
    assert gateway.fake.upload_log[-1]["bytes"] == stats.bytes_sent
    assert client.download(response.file_id).read_all() == data


def test_upload_replays_after_refresh(gateway: Running, client: CloudClient) -> None:
    gateway.fake.expire_sessions()
    client._session.expires_at = 0  # the client does not know it expired
    response = client.upload(io.BytesIO(b"hello world"), filename="h.txt", known_chunks=False)
    assert response.success
    assert gateway.fake.calls["RefreshSession"] == 1


def test_quota_exceeded_is_typed(gateway: Running, client: CloudClient) -> None:
    gateway.fake.users["ada@example.com"].allocated = 1000
    with pytest.raises(errors.QuotaExceeded):
        client.upload(io.BytesIO(payload(5000)), filename="big")


# -- downloads -----------------------------------------------------------------------------


def test_ranged_download(gateway: Running, client: CloudClient) -> None:
    data = payload(700_000)
    file_id = client.upload(io.BytesIO(data), filename="r").file_id
    with client.download(file_id, offset=300_000, length=1000) as stream:
        assert stream.info.offset == 300_000 and stream.info.length == 1000
        assert stream.read_all() == data[300_000:301_000]
    assert client.download(file_id, offset=650_000).read_all() == data[650_000:]


def test_download_resumes_after_cut(gateway: Running, client: CloudClient) -> None:
    data = payload(1_000_000)
    file_id = client.upload(io.BytesIO(data), filename="cut").file_id
    gateway.fake.download_cut_after = 3
    out = io.BytesIO()
    client.download_to(file_id, out)
    assert out.getvalue() == data
    assert gateway.fake.calls["DownloadFile"] == 2


def test_download_verifies_chunks(gateway: Running, client: CloudClient) -> None:
    data = payload(600_000)
    response = client.upload(io.BytesIO(data), filename="v")
    node = gateway.fake.nodes[response.file_id]
    sha, size = node.chunks[1]
    gateway.fake.chunks[sha] = b"x" * size  # a replica went bad and nobody noticed
    with pytest.raises(errors.InternalError, match="corrupted"):
        client.download_to(response.file_id, io.BytesIO())


def test_download_missing_file(gateway: Running, client: CloudClient) -> None:
    with pytest.raises(errors.NotFound):
        client.download("00000000-0000-0000-0000-000000000000")


def test_storage_info_caches_chunk_size(gateway: Running, client: CloudClient) -> None:
    assert client.chunk_size() == gateway.fake.chunk_size
    calls = gateway.fake.calls["GetStorageInfo"]
    client.upload(io.BytesIO(payload(1000)), filename="x")
    client.upload(io.BytesIO(payload(1000, 2)), filename="y")
    assert gateway.fake.calls["GetStorageInfo"] == calls


def test_large_upload_in_one_mib_messages(gateway: Running) -> None:
    big = Running(chunk_size=4 * MiB)
    try:
        c = CloudClient(big.target, timeout=10)
        sign_in(c)
        data = payload(9 * MiB + 5)
        response = c.upload(io.BytesIO(data), filename="big")
        assert big.fake.upload_log[-1]["messages"] == 10
        assert hashlib.sha256(c.download(response.file_id).read_all()).digest() == (
            hashlib.sha256(data).digest()
        )
        c.close()
    finally:
        big.stop()


def test_a_server_at_its_concurrency_cap_is_busy_not_a_full_quota() -> None:
    """gRPC's own RESOURCE_EXHAUSTED (maximum_concurrent_rpcs, no mark of ours) is an
    overloaded gateway: RateLimited (exit 9), never "quota exceeded"."""
    entered, release = threading.Event(), threading.Event()

    def hold(request: bytes, context: grpc.ServicerContext) -> bytes:
        entered.set()
        release.wait(10)
        return b""

    handler = grpc.method_handlers_generic_handler(
        "test.Hold", {"Call": grpc.unary_unary_rpc_method_handler(hold)})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), handlers=[handler],
                         maximum_concurrent_rpcs=1)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        call = channel.unary_unary("/test.Hold/Call")
        first = call.future(b"", timeout=10)
        assert entered.wait(5)
        with pytest.raises(grpc.RpcError) as refused:
            call(b"", timeout=5)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        error = errors.from_rpc_error(refused.value)
        assert isinstance(error, errors.RateLimited), error
        assert "overloaded" in error.message and error.exit_code == 9
        release.set()
        first.result()
    finally:
        release.set()
        channel.close()
        server.stop(None)


class _Broken(grpc.RpcError):
    """An error as gRPC raises it: a status code and its details."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def test_a_stream_broken_in_transport_is_worth_another_try() -> None:
    # what gRPC reports when a proxy (HAProxy) ends an HTTP/2 stream early
    broken = _Broken(grpc.StatusCode.INTERNAL, "Data frame with END_STREAM flag received")
    assert status_code(broken) == grpc.StatusCode.UNAVAILABLE
    assert RetryPolicy().should_retry(status_code(broken), 1)
    # a server's own INTERNAL (a bug, logged there) is not retried
    own = _Broken(grpc.StatusCode.INTERNAL, "internal error in ListFiles; see the gateway log")
    assert status_code(own) == grpc.StatusCode.INTERNAL
    assert not RetryPolicy().should_retry(status_code(own), 1)
