"""The admin status's traffic, sessions and payments (issue 17), on a real cluster.

One fresh cluster per database backend for the module: nothing but these tests moves bytes,
signs in or pays there, so what the status reports can be compared with what they did.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import grpc
import pytest

from cloudgrpc_proto import cloud_storage_pb2 as pb
from tests.admin.conftest import cli_json, run_cli
from tests.cluster import Cluster, free_port
from tests.conftest import cluster_on
from tests.payment.conftest import MTN_PHONE, WEBHOOK_KEY, Payments

MiB = 1024 * 1024

PAYMENT_ENV = {
    "CAMPAY_STANDIN": "1",
    "CAMPAY_BASE_URL": "",
    "CAMPAY_WEBHOOK_KEY": WEBHOOK_KEY,
    "CAMPAY_STANDIN_OUTCOME": "success",
    "CAMPAY_STANDIN_APPROVE_S": "0.2",
    "PAYMENT_RECONCILE_INTERVAL_S": "0.5",
    "CAMPAY_TIMEOUT_S": "2",
    "CAMPAY_BACKOFF_S": "0.05",
}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def activity_cluster(request: pytest.FixtureRequest,
                     tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    env = {**PAYMENT_ENV, "WEBHOOK_PORT": str(free_port()), "NO_PROXY": "127.0.0.1,localhost"}
    with cluster_on(request.param, tmp_path_factory.mktemp(f"activity-{request.param}"),
                    env=env) as c:
        yield c


def _moved(st: pb.SystemStatusResponse) -> tuple[float, float]:
    """Bytes in and out over the status's window, as the speeds say."""
    return (st.upload_bytes_per_s * st.speed_window_s,
            st.download_bytes_per_s * st.speed_window_s)


def _close(got: float, want: int, scale: float) -> bool:
    # speed_window_s is the window rounded to a second (of 240-300): each reading is off by
    # 0.25 % at most of the bytes it covers (``scale``: the larger reading)
    return abs(got - want) <= 0.005 * scale + 1


def test_uploads_and_downloads_move_the_speeds(activity_cluster: Cluster) -> None:
    c = activity_cluster
    acct = c.sign_up()
    before = c.status()
    assert 240 <= before.speed_window_s <= 300
    big, small = os.urandom(3 * MiB + 123), [os.urandom(5000), os.urandom(7000)]

    file_id = acct.upload(big, "big.bin").file_id
    reply = c.files.UploadSmallFiles(pb.UploadSmallFilesRequest(
        session_token=acct.token, files=[
            pb.SmallFileUpload(metadata=pb.FileMetadata(filename=f"s{i}", file_size=len(d)),
                               data=d) for i, d in enumerate(small)]), timeout=30)
    small_ids = [r.upload.file_id for r in reply.results]
    assert all(small_ids)
    uploaded = c.status()
    got_in, got_out = _moved(uploaded)
    in_before, out_before = _moved(before)
    assert _close(got_in - in_before, len(big) + sum(map(len, small)), got_in)
    assert _close(got_out - out_before, 0, got_out)

    assert acct.download(file_id) == big
    assert acct.download(file_id, offset=1000, length=4000) == big[1000:5000]
    got = list(c.files.DownloadSmallFiles(pb.DownloadSmallFilesRequest(
        session_token=acct.token, file_ids=small_ids), timeout=30))
    assert sorted(len(r.data) for r in got) == sorted(map(len, small))
    downloaded = c.status()
    got_in2, got_out2 = _moved(downloaded)
    assert _close(got_out2 - got_out, len(big) + 4000 + sum(map(len, small)), got_out2)
    assert _close(got_in2 - got_in, 0, got_in2)

    # The CLI shows them: JSON fields as numbers, and a line for people.
    data = cli_json(c, "--status")
    assert data["upload_bytes_per_s"] * data["speed_window_s"] >= len(big)
    assert data["download_bytes_per_s"] > 0 and data["active_sessions"] >= 1
    text = run_cli(c, "--status")
    assert text.returncode == 0, text.stderr
    assert "Upload speed" in text.stdout and "Download speed" in text.stdout
    assert "/s  (last " in text.stdout


def test_active_sessions_count_sign_ins_until_logout(activity_cluster: Cluster) -> None:
    c = activity_cluster
    start = c.status().active_sessions
    acct = c.sign_up()
    assert c.status().active_sessions == start + 1
    other = c.sign_in(acct.email, device_name="laptop")
    assert c.status().active_sessions == start + 2
    c.auth.Logout(pb.LogoutRequest(session_token=other.token,
                                   refresh_token=other.refresh_token), timeout=10)
    assert c.status().active_sessions == start + 1
    c.auth.Logout(pb.LogoutRequest(session_token=acct.token), timeout=10)
    assert c.status().active_sessions == start
    # The session really is gone: the status did not just miscount.
    with pytest.raises(grpc.RpcError) as err:
        acct.ls()
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_payment_success_rate(activity_cluster: Cluster) -> None:
    c = activity_cluster
    pay = Payments(c)
    st = c.status()
    assert st.payment_success_rate == -1 and st.payment_window_s == 86400  # none yet
    assert cli_json(c, "--status")["payment_success_rate"] is None
    assert "n/a" in run_cli(c, "--status").stdout

    acct = c.sign_up()
    pay.script(MTN_PHONE, "failure", after_s=0.1, reason="Payer declined the request")
    failed = pay.initiate(acct)
    assert pay.wait_final(acct, failed.payment_id).status == "failed"
    assert c.status().payment_success_rate == 0.0

    pay.script(MTN_PHONE, "success", after_s=0.1)
    done = pay.initiate(acct)
    assert pay.wait_final(acct, done.payment_id).status == "completed"
    assert c.status().payment_success_rate == 50.0
    assert cli_json(c, "--status")["payment_success_rate"] == 50.0
    assert "50.0%" in run_cli(c, "--status").stdout
