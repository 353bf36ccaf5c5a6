"""Sign-in through the real gateway: codes by mail, sessions, refresh tokens."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import grpc
import pytest

from cloudgrpc_proto import cloud_storage_pb2 as pb
from tests.cluster import Cluster


def _email() -> str:
    return f"u{uuid.uuid4().hex[:8]}@example.com"


def _code(c: Cluster, email: str) -> str:
    before = c.mail.count_for(email)
    c.auth.SendOTP(pb.SendOTPRequest(email=email), timeout=10)
    return c.mail.code_for(email, after=before)


def _wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def test_enroll_with_mailed_code_gives_a_working_session(shared_cluster: Cluster) -> None:
    c = shared_cluster
    email = _email()
    code = _code(c, email)
    assert len(code) == 6
    v = c.auth.VerifyOTP(pb.VerifyOTPRequest(email=email, otp=code), timeout=10)
    assert v.success and v.verification_token
    r = c.auth.Enroll(pb.EnrollRequest(email=email, full_name="Ada Lovelace",
                                       verification_token=v.verification_token,
                                       device_name="laptop"), timeout=10)
    assert r.success and r.session_token and r.user_id and r.refresh_token
    assert r.storage_allocated == 1024**3
    who = c.auth.WhoAmI(pb.WhoAmIRequest(session_token=r.session_token), timeout=10)
    assert who.email == email and who.full_name == "Ada Lovelace"
    info = c.storage.GetStorageInfo(pb.StorageInfoRequest(session_token=r.session_token))
    assert info.allocated_bytes == 1024**3 and info.used_bytes == 0


def test_login_without_verified_code_gives_no_token(shared_cluster: Cluster) -> None:
    c = shared_cluster
    acct = c.sign_up()
    with pytest.raises(grpc.RpcError) as err:
        c.auth.Login(pb.LoginRequest(email=acct.email), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "verification_token" in err.value.details()
    # A code that was sent but never verified does not open the account either.
    _code(c, acct.email)
    with pytest.raises(grpc.RpcError) as err:
        c.auth.Login(pb.LoginRequest(email=acct.email, verification_token="made-up"),
                     timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_code_is_bound_to_its_email(shared_cluster: Cluster) -> None:
    c = shared_cluster
    a, b = c.sign_up(), c.sign_up()
    code = _code(c, a.email)
    token = c.auth.VerifyOTP(pb.VerifyOTPRequest(email=a.email, otp=code),
                             timeout=10).verification_token
    with pytest.raises(grpc.RpcError) as err:
        c.auth.Login(pb.LoginRequest(email=b.email, verification_token=token), timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    ok = c.auth.Login(pb.LoginRequest(email=a.email, verification_token=token), timeout=10)
    assert ok.session_token


def test_wrong_and_reused_codes_are_refused(shared_cluster: Cluster) -> None:
    c = shared_cluster
    acct = c.sign_up()
    code = _code(c, acct.email)
    with pytest.raises(grpc.RpcError) as err:
        c.auth.VerifyOTP(pb.VerifyOTPRequest(email=acct.email, otp=_wrong(code)), timeout=10)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "4 attempts left" in err.value.details()
    token = c.auth.VerifyOTP(pb.VerifyOTPRequest(email=acct.email, otp=code),
                             timeout=10).verification_token
    first = c.auth.Login(pb.LoginRequest(email=acct.email, verification_token=token),
                         timeout=10)
    assert first.session_token
    # The same code cannot be verified again, nor open a second session.
    with pytest.raises(grpc.RpcError) as err:
        c.auth.VerifyOTP(pb.VerifyOTPRequest(email=acct.email, otp=code), timeout=10)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as err:
        c.auth.Login(pb.LoginRequest(email=acct.email, verification_token=token), timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_five_wrong_attempts_burn_the_code(shared_cluster: Cluster) -> None:
    c = shared_cluster
    acct = c.sign_up()
    code = _code(c, acct.email)
    for _ in range(5):
        with pytest.raises(grpc.RpcError):
            c.auth.VerifyOTP(pb.VerifyOTPRequest(email=acct.email, otp=_wrong(code)))
    with pytest.raises(grpc.RpcError) as err:
        c.auth.VerifyOTP(pb.VerifyOTPRequest(email=acct.email, otp=code), timeout=10)
    assert "too many" in err.value.details()


def test_enroll_twice_is_refused_and_login_works(shared_cluster: Cluster) -> None:
    c = shared_cluster
    acct = c.sign_up()
    code = _code(c, acct.email)
    token = c.auth.VerifyOTP(pb.VerifyOTPRequest(email=acct.email, otp=code),
                             timeout=10).verification_token
    with pytest.raises(grpc.RpcError) as err:
        c.auth.Enroll(pb.EnrollRequest(email=acct.email, full_name="Again",
                                       verification_token=token), timeout=10)
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    # The refused enrolment did not consume the code: login still works with it.
    assert c.auth.Login(pb.LoginRequest(email=acct.email, verification_token=token),
                        timeout=10).session_token


def test_login_for_unknown_account_is_not_found(shared_cluster: Cluster) -> None:
    c = shared_cluster
    email = _email()
    code = _code(c, email)
    token = c.auth.VerifyOTP(pb.VerifyOTPRequest(email=email, otp=code),
                             timeout=10).verification_token
    with pytest.raises(grpc.RpcError) as err:
        c.auth.Login(pb.LoginRequest(email=email, verification_token=token), timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_logout_kills_session_and_refresh_renews(shared_cluster: Cluster) -> None:
    c = shared_cluster
    email = _email()
    code = _code(c, email)
    token = c.auth.VerifyOTP(pb.VerifyOTPRequest(email=email, otp=code),
                             timeout=10).verification_token
    r = c.auth.Enroll(pb.EnrollRequest(email=email, full_name="Grace", device_name="box",
                                       verification_token=token))
    renewed = c.auth.RefreshSession(pb.RefreshSessionRequest(refresh_token=r.refresh_token))
    assert renewed.session_token and renewed.session_token != r.session_token
    assert renewed.refresh_token and renewed.refresh_token != r.refresh_token  # rotated
    c.auth.Logout(pb.LogoutRequest(session_token=r.session_token), timeout=10)
    with pytest.raises(grpc.RpcError) as err:
        c.files.ListFiles(pb.ListFilesRequest(session_token=r.session_token), timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # The other session of the device still works; logging out with the refresh token
    # signs the device out for good.
    c.files.ListFiles(pb.ListFilesRequest(session_token=renewed.session_token), timeout=10)
    # (even from the dead session: a user signing out after a day offline)
    c.auth.Logout(pb.LogoutRequest(session_token=r.session_token,
                                   refresh_token=renewed.refresh_token), timeout=10)
    with pytest.raises(grpc.RpcError) as err:
        c.auth.RefreshSession(pb.RefreshSessionRequest(refresh_token=renewed.refresh_token))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as err:
        c.files.ListFiles(pb.ListFilesRequest(session_token=renewed.session_token), timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_bad_email_and_garbage_token(shared_cluster: Cluster) -> None:
    c = shared_cluster
    with pytest.raises(grpc.RpcError) as err:
        c.auth.SendOTP(pb.SendOTPRequest(email="not-an-email"), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as err:
        c.files.ListFiles(pb.ListFilesRequest(session_token="garbage"), timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_expiry_and_resend_cooldown(tmp_path: Path) -> None:
    c = Cluster(tmp_path, nodes=0, env={"OTP_TTL_S": "2", "OTP_RESEND_COOLDOWN_S": "3",
                                        "SESSION_TTL_S": "2"})
    try:
        c.start()
        email = _email()
        code = _code(c, email)
        with pytest.raises(grpc.RpcError) as err:
            c.auth.SendOTP(pb.SendOTPRequest(email=email), timeout=10)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "try again in" in err.value.details()
        time.sleep(2.2)
        with pytest.raises(grpc.RpcError) as err:
            c.auth.VerifyOTP(pb.VerifyOTPRequest(email=email, otp=code), timeout=10)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "request a new one" in err.value.details()
        # A fresh code works; the session it gives expires after SESSION_TTL_S.
        time.sleep(1.0)
        code = _code(c, email)
        token = c.auth.VerifyOTP(pb.VerifyOTPRequest(email=email, otp=code),
                                 timeout=10).verification_token
        r = c.auth.Enroll(pb.EnrollRequest(email=email, full_name="Short",
                                           verification_token=token), timeout=10)
        c.files.ListFiles(pb.ListFilesRequest(session_token=r.session_token), timeout=10)
        time.sleep(2.2)
        with pytest.raises(grpc.RpcError) as err:
            c.files.ListFiles(pb.ListFilesRequest(session_token=r.session_token), timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "expired" in err.value.details()
    finally:
        c.stop()


def test_codes_are_stored_hashed(shared_cluster: Cluster) -> None:
    import sqlalchemy as sa

    c = shared_cluster
    email = _email()
    code = _code(c, email)
    engine = sa.create_engine(c.database_url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT code_hash, salt FROM otp_codes WHERE email = :e"),
                            {"e": email}).all()
        tokens = conn.execute(sa.text("SELECT token_hash FROM sessions")).scalars().all()
    engine.dispose()
    assert rows and all(code not in h for h, _ in rows)
    assert all(len(t) == 64 for t in tokens)
