"""Accounts under attack: the sign-in race, code guessing, a stolen database copy, stolen
refresh tokens and devices the owner cannot see.

Every attack runs from an independent client against a real gateway (and its real SMTP
mail) on SQLite and PostgreSQL. The assertions are what a user would notice: the attacker
holds no session that lists files, the owner's device list shows exactly their own
sign-ins, a revoked device's session stops at its very next call.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import pathlib
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import grpc
import pytest
import sqlalchemy as sa

from cloudgrpc_proto import cloud_storage_pb2 as pb
from cloudgrpc_proto import errors
from cloudgrpc_proto.client import CloudClient
from cloudgrpc_proto.session_store import SessionStore
from tests.client.clitools import Cli
from tests.cluster import ADMIN_KEY, Cluster

pytest.importorskip("aiosmtpd")

FILE_BACKEND = "keyrings.alt.file.PlaintextKeyring"


@pytest.fixture(autouse=True)
def _isolated_keyring(tmp_path_factory: pytest.TempPathFactory,
                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI and the clients keep their sessions in a throw-away file keyring."""
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", FILE_BACKEND)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path_factory.mktemp("xdg-data")))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("xdg-config")))
    monkeypatch.delenv("CLOUDGRPC_SERVER", raising=False)


@pytest.fixture
def start_cluster(tmp_path: pathlib.Path, database_url: str
                  ) -> Iterator[Callable[[dict[str, str]], Cluster]]:
    """Starts a gateway without nodes with extra settings; stopped when the test ends."""
    started: list[Cluster] = []

    def start(env: dict[str, str]) -> Cluster:
        c = Cluster(tmp_path / f"c{len(started)}", database_url=database_url, nodes=0,
                    env=env)
        started.append(c)
        c.start()
        return c

    try:
        yield start
    finally:
        for c in started:
            c.stop()


def _email() -> str:
    return f"u{uuid.uuid4().hex[:8]}@example.com"


def _send(c: Cluster, email: str) -> str:
    before = c.mail.count_for(email)
    c.auth.SendOTP(pb.SendOTPRequest(email=email), timeout=10)
    return c.mail.code_for(email, after=before)


def _wrong(code: str, n: int = 1) -> str:
    return f"{(int(code) + n) % 1_000_000:06d}"


def _status(call) -> grpc.StatusCode | None:  # type: ignore[no-untyped-def]
    try:
        call()
    except grpc.RpcError as exc:
        return exc.code()
    return None


def _can_list(c: Cluster, session_token: str) -> bool:
    """What a user notices: does this session still show the account's files?"""
    return _status(lambda: c.files.ListFiles(
        pb.ListFilesRequest(session_token=session_token), timeout=10)) is None


def _devices(c: Cluster, session_token: str) -> list[pb.DeviceInfo]:
    return list(c.auth.ListDevices(pb.ListDevicesRequest(session_token=session_token),
                                   timeout=10).devices)


# -- the sign-in race ------------------------------------------------------------------------


def test_login_race_never_gives_the_attacker_a_session(cluster: Cluster) -> None:
    """An attacker loops Login(email=victim) without a token and with made-up ones while
    the victim verifies codes and signs in: the attacker never gets a session."""
    c = cluster
    victim = c.sign_up(device_name="victim-laptop")
    stop = threading.Event()
    stolen: list[str] = []
    refusals: dict[grpc.StatusCode, int] = {}

    def attacker() -> None:
        with grpc.insecure_channel(c.address) as channel:  # an independent client
            from cloudgrpc_proto import cloud_storage_pb2_grpc as pb_grpc

            auth = pb_grpc.AuthServiceStub(channel)
            while not stop.is_set():
                for token in ("", secrets.token_urlsafe(32)):
                    try:
                        reply = auth.Login(pb.LoginRequest(
                            email=victim.email, verification_token=token,
                            device_name="attacker"), timeout=10)
                    except grpc.RpcError as exc:
                        refusals[exc.code()] = refusals.get(exc.code(), 0) + 1
                        if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                            assert "verification_token" in (exc.details() or "")
                        continue
                    if reply.session_token:
                        stolen.append(reply.session_token)

    thread = threading.Thread(target=attacker, daemon=True)
    thread.start()
    try:
        sessions = []
        for _ in range(5):
            code = _send(c, victim.email)
            token = c.auth.VerifyOTP(pb.VerifyOTPRequest(email=victim.email, otp=code),
                                     timeout=10).verification_token
            time.sleep(0.05)  # the attacker's loop gets its chance at the verified code
            reply = c.auth.Login(pb.LoginRequest(email=victim.email, verification_token=token,
                                                 device_name="victim-phone"), timeout=10)
            sessions.append(reply.session_token)
    finally:
        stop.set()
        thread.join(15)
    assert stolen == []
    assert set(refusals) <= {grpc.StatusCode.INVALID_ARGUMENT,
                             grpc.StatusCode.UNAUTHENTICATED}
    assert refusals.get(grpc.StatusCode.INVALID_ARGUMENT, 0) > 0
    assert refusals.get(grpc.StatusCode.UNAUTHENTICATED, 0) > 0
    assert all(_can_list(c, s) for s in sessions)
    # The victim's device list holds their own six sign-ins and nothing else.
    names = sorted(d.name for d in _devices(c, victim.token))
    assert names == ["victim-laptop"] + ["victim-phone"] * 5


# -- guessing codes --------------------------------------------------------------------------


def _second_gateway(c: Cluster, root: pathlib.Path, env: dict[str, str]) -> Cluster:
    """Another gateway (no nodes) on ``c``'s database."""
    other = Cluster(root, database_url=c.database_url, nodes=0, env=env)
    other.start_gateway()
    return other


def test_twenty_wrong_codes_lock_the_email_whatever_the_number_of_codes(
        cluster: Cluster, tmp_path: pathlib.Path) -> None:
    """Wrong codes are counted per email in the database: guesses spread over two
    gateways and five codes lock the email after 20, on both gateways."""
    c = cluster
    key = (c.root / "gateway" / "otp_key").read_text().strip()
    b = _second_gateway(c, tmp_path / "gateway-b", {"OTP_KEY": key})
    try:
        victim = c.sign_up()
        other = c.sign_up()
        gateways = [c, b]
        guesses = 0

        def guess(code: str, n: int) -> grpc.RpcError:
            nonlocal guesses
            gw = gateways[guesses % 2]
            guesses += 1
            with pytest.raises(grpc.RpcError) as err:
                gw.auth.VerifyOTP(pb.VerifyOTPRequest(email=victim.email,
                                                      otp=_wrong(code, n)), timeout=10)
            return err.value

        for _ in range(3):  # three codes, five wrong guesses each (the per-code limit)
            code = _send(c, victim.email)
            for n in range(1, 6):
                assert guess(code, n).code() == grpc.StatusCode.PERMISSION_DENIED
        code = _send(c, victim.email)  # a fourth code: four more wrong guesses (19 in all)
        for n in range(1, 5):
            assert guess(code, n).code() == grpc.StatusCode.PERMISSION_DENIED
        code = _send(c, victim.email)  # a fifth code; its first wrong guess is the 20th
        last = guess(code, 1)
        assert guesses == 20
        assert re.search(r"try again in \d+ minutes", last.details())

        # Locked, on either gateway: even the right code is refused, saying for how long.
        for gw in (c, b):
            with pytest.raises(grpc.RpcError) as err:
                gw.auth.VerifyOTP(pb.VerifyOTPRequest(email=victim.email, otp=code),
                                  timeout=10)
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert re.search(r"try again in (59|60) minutes", err.value.details()), \
                err.value.details()
            with pytest.raises(grpc.RpcError) as err:  # a new code does not reset the count
                gw.auth.SendOTP(pb.SendOTPRequest(email=victim.email), timeout=10)
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        # The CLI says it in one line, with its own exit status (9), asking or not.
        cli = Cli(c.address, tmp_path)
        for args in (("--otp", code), ()):
            result = cli.fails(9, "login", victim.email, *args)
            assert re.search(r"try again in \d+ minutes", result.err), result
        # The lockout is per email: another account signs in as usual.
        assert _can_list(c, c.sign_in(other.email).token)
    finally:
        b.stop()


def test_a_gateway_with_another_otp_key_says_so(cluster: Cluster,
                                                tmp_path: pathlib.Path) -> None:
    """Gateways on one database must share the OTP key; one that does not refuses the
    other's codes with a message saying so, and counts no wrong guess."""
    c = cluster
    b = _second_gateway(c, tmp_path / "gateway-b", {})
    try:
        acct = c.sign_up()
        code = _send(c, acct.email)
        with pytest.raises(grpc.RpcError) as err:
            b.auth.VerifyOTP(pb.VerifyOTPRequest(email=acct.email, otp=code), timeout=10)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "OTP key" in err.value.details()
        token = c.auth.VerifyOTP(pb.VerifyOTPRequest(email=acct.email, otp=code),
                                 timeout=10).verification_token
        assert token
    finally:
        b.stop()


def test_default_per_address_limits(start_cluster: Callable[[dict[str, str]], Cluster]
                                    ) -> None:
    """One address may ask for 30 codes and check 60 an hour (defaults), whatever emails."""
    # tests/cluster.py lifts these limits for the other suites; "" means the default.
    c = start_cluster({"OTP_SENDS_PER_ADDRESS_HOUR": "", "OTP_VERIFIES_PER_ADDRESS_HOUR": ""})
    emails = [_email() for _ in range(30)]
    codes = {email: _send(c, email) for email in emails}
    extra = _email()
    with pytest.raises(grpc.RpcError) as err:
        c.auth.SendOTP(pb.SendOTPRequest(email=extra), timeout=10)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert re.search(r"try again in \d+ minutes", err.value.details())
    time.sleep(0.5)
    assert c.mail.count_for(extra) == 0  # no mail went out

    # 60 checks (wrong codes, spread so no email nears its own limit), then refused.
    for i in range(60):
        email = emails[1 + i % 29]
        assert _status(lambda email=email: c.auth.VerifyOTP(pb.VerifyOTPRequest(
            email=email, otp=_wrong(codes[email])), timeout=10)) == \
            grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as err:
        c.auth.VerifyOTP(pb.VerifyOTPRequest(email=emails[0], otp=codes[emails[0]]),
                         timeout=10)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert re.search(r"try again in \d+ minutes", err.value.details())
    metadata = dict(err.value.trailing_metadata() or ())
    assert int(metadata["retry-after"]) > 60


# -- a copy of the database ------------------------------------------------------------------


def test_a_copy_of_the_database_does_not_reveal_codes(cluster: Cluster) -> None:
    c = cluster
    email = _email()
    code = _send(c, email)
    engine = sa.create_engine(c.database_url)
    try:
        with engine.connect() as conn:
            stored_hash, salt = conn.execute(sa.text(
                "SELECT code_hash, salt FROM otp_codes WHERE email = :e"), {"e": email}).one()
    finally:
        engine.dispose()

    def search(digest) -> list[str]:  # type: ignore[no-untyped-def]
        return [f"{n:06d}" for n in range(1_000_000) if digest(f"{n:06d}") == stored_hash]

    # Every unkeyed way of hashing the code, tried on all 10^6 codes: nothing matches.
    assert search(lambda g: hashlib.sha256(f"{salt}:{email}:{g}".encode()).hexdigest()) == []
    assert search(lambda g: hashlib.sha256(g.encode()).hexdigest()) == []
    # With the key file (kept outside the database, 0600) the same search finds it.
    key_file = c.root / "gateway" / "otp_key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    key = key_file.read_text().strip().encode()
    assert search(lambda g: hmac.new(key, f"{salt}:{email}:{g}".encode(),
                                     hashlib.sha256).hexdigest()) == [code]


# -- refresh tokens --------------------------------------------------------------------------


def _refresh(c: Cluster, token: str) -> pb.LoginResponse:
    return c.auth.RefreshSession(pb.RefreshSessionRequest(refresh_token=token), timeout=10)


def test_refresh_tokens_rotate_and_a_reused_one_ends_the_device(cluster: Cluster) -> None:
    c = cluster
    owner = c.sign_up(device_name="laptop")
    first = _refresh(c, owner.refresh_token)
    assert first.refresh_token and first.refresh_token != owner.refresh_token
    assert _can_list(c, first.session_token)
    second = _refresh(c, first.refresh_token)  # the new token works, and rotates again
    assert second.refresh_token not in ("", first.refresh_token)
    # Two processes sharing a keyring entry may race: the replaced token is accepted once
    # more right after its rotation, and that answer carries no new token.
    raced = _refresh(c, first.refresh_token)
    assert raced.refresh_token == "" and _can_list(c, raced.session_token)
    # Any further use of a replaced token means a copy is in use elsewhere: the device ends,
    # live sessions included, and its current token is dead too.
    with pytest.raises(grpc.RpcError) as err:
        _refresh(c, first.refresh_token)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "already used" in err.value.details()
    assert not _can_list(c, second.session_token)
    assert not _can_list(c, raced.session_token)
    assert _status(lambda: _refresh(c, second.refresh_token)) == \
        grpc.StatusCode.UNAUTHENTICATED
    assert _status(lambda: _refresh(c, owner.refresh_token)) == \
        grpc.StatusCode.UNAUTHENTICATED
    assert "laptop" not in [d.name for d in _devices(c, c.sign_in(owner.email).token)]


def test_a_stolen_refresh_token_used_later_ends_the_device(
        start_cluster: Callable[[dict[str, str]], Cluster]) -> None:
    """The thief renews first; when the owner's device renews with the same token after
    the grace, the device ends: the thief's session dies with it."""
    c = start_cluster({"REFRESH_REUSE_GRACE_S": "1"})
    owner = c.sign_up(device_name="laptop")
    thief = _refresh(c, owner.refresh_token)
    assert _can_list(c, thief.session_token)
    time.sleep(1.5)
    assert _status(lambda: _refresh(c, owner.refresh_token)) == \
        grpc.StatusCode.UNAUTHENTICATED
    assert not _can_list(c, thief.session_token)
    assert _status(lambda: _refresh(c, thief.refresh_token)) == \
        grpc.StatusCode.UNAUTHENTICATED


def test_clients_sharing_a_keyring_do_not_end_their_device(cluster: Cluster,
                                                           tmp_path: pathlib.Path) -> None:
    """The CLI and a mount keep one session in the keyring: whoever renews writes the new
    token back, and the other takes it from there instead of reusing the replaced one."""
    c = cluster
    owner = c.sign_up(device_name="box")
    store = SessionStore(c.address)
    mount = CloudClient.from_session_store(c.address, store=store, timeout=10)
    cli = CloudClient.from_session_store(c.address, store=store, timeout=10)
    try:
        from cloudgrpc_proto.session_store import Session

        session = Session(email=owner.email, user_id=owner.user_id,
                          session_token=owner.token, refresh_token=owner.refresh_token,
                          expires_at=int(time.time()) + 3600)
        store.save(session)
        mount.set_session(session)
        cli.set_session(session)
        renewer, other = mount, cli
        for _ in range(4):
            # One renews (rotating the token), then the other's session dies: the other
            # must carry on with the keyring's token, never the replaced one it holds.
            held = other.refresh_token
            renewer.refresh()
            assert renewer.refresh_token != held
            assert store.load().refresh_token == renewer.refresh_token  # type: ignore[union-attr]
            c.auth.Logout(pb.LogoutRequest(session_token=other.session_token), timeout=10)
            assert other.whoami().email == owner.email
            assert other.refresh_token == renewer.refresh_token
            renewer, other = other, renewer
        assert [d.name for d in cli.list_devices().devices] == ["box"]
        assert mount.whoami().email == cli.whoami().email == owner.email
    finally:
        mount.close()
        cli.close()


def test_a_true_renewal_race_through_the_keyring_keeps_the_device(
        cluster: Cluster) -> None:
    """Another process renewed with our token but has not written the keyring yet when we
    renew: the gateway's grace answer gives us a session (and no new token); once that
    process stores its rotated token we take it, and the device lives on."""
    from cloudgrpc_proto.session_store import Session

    c = cluster
    owner = c.sign_up(device_name="box")
    store = SessionStore(c.address)
    start = Session(email=owner.email, user_id=owner.user_id, session_token=owner.token,
                    refresh_token=owner.refresh_token, expires_at=int(time.time()) + 3600)
    store.save(start)
    client = CloudClient.from_session_store(c.address, store=store, timeout=10)
    try:
        other = _refresh(c, owner.refresh_token)  # the other process, not yet stored
        client.refresh()  # still finds the replaced token in the keyring, and uses it
        assert client.refresh_token == owner.refresh_token  # nothing newer known yet
        assert store.load().refresh_token == owner.refresh_token  # type: ignore[union-attr]
        assert client.whoami().email == owner.email
        store.save(Session(email=owner.email, user_id=owner.user_id,
                           session_token=other.session_token,
                           refresh_token=other.refresh_token, expires_at=other.expires_at))
        c.auth.Logout(pb.LogoutRequest(session_token=client.session_token), timeout=10)
        assert client.whoami().email == owner.email  # renewed through the stored token
        assert client.refresh_token == other.refresh_token
        client.refresh()
        assert client.refresh_token not in (owner.refresh_token, other.refresh_token)
        assert [d.name for d in client.list_devices().devices] == ["box"]
    finally:
        client.close()


# -- devices ---------------------------------------------------------------------------------


def test_devices_list_and_revoke(cluster: Cluster, tmp_path: pathlib.Path) -> None:
    c = cluster
    owner = c.sign_up(device_name="laptop")
    # A device name that would drive the owner's terminal is refused at the door.
    with pytest.raises(grpc.RpcError) as refused:
        c.sign_in(owner.email, device_name="phone \x1b]0;pwned\x07\x1b[2J")
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "device_name" in (refused.value.details() or "")
    assert [d.name for d in _devices(c, owner.token)] == ["laptop"]
    phone = c.sign_in(owner.email, device_name="phone")
    assert _can_list(c, phone.token)  # its session is now in the gateway's cache too
    listed = {d.name: d for d in _devices(c, owner.token)}
    assert set(listed) == {"laptop", "phone"}
    laptop, phone_device = listed["laptop"], listed["phone"]
    assert laptop.current and not phone_device.current
    assert laptop.last_address == phone_device.last_address == "127.0.0.1"
    assert phone_device.created_at and phone_device.last_used_at and phone_device.expires_at

    # Another user cannot see nor end them: NOT_FOUND, as for a device that does not exist.
    stranger = c.sign_up()
    assert phone_device.device_id not in [d.device_id for d in _devices(c, stranger.token)]
    with pytest.raises(grpc.RpcError) as err:
        c.auth.RevokeDevice(pb.RevokeDeviceRequest(session_token=stranger.token,
                                                   device_id=phone_device.device_id))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert _can_list(c, phone.token)

    # The owner ends the phone: its live session stops at its very next call.
    reply = c.auth.RevokeDevice(pb.RevokeDeviceRequest(session_token=owner.token,
                                                       device_id=phone_device.device_id))
    assert reply.sessions_ended == 1
    assert _status(lambda: c.files.ListFiles(pb.ListFilesRequest(session_token=phone.token),
                                             timeout=10)) == grpc.StatusCode.UNAUTHENTICATED
    assert _status(lambda: _refresh(c, phone.refresh_token)) == \
        grpc.StatusCode.UNAUTHENTICATED
    assert [d.name for d in _devices(c, owner.token)] == ["laptop"]
    assert _can_list(c, owner.token)


def test_devices_cli(cluster: Cluster, tmp_path: pathlib.Path) -> None:
    c = cluster
    cli = Cli(c.address, tmp_path)
    email = _email()
    before = c.mail.count_for(email)
    cli.ok("enroll", email, "Dee Vice", "--send-code")
    cli.ok("enroll", email, "Dee Vice", "--otp", c.mail.code_for(email, after=before))
    # Control characters are refused at the gateway; a bidi override and rich markup are
    # not controls, so they reach the list and the CLI must show them inert.
    other = c.sign_in(email, device_name="evil\u202e[red]name[/red]")
    listed = json.loads(cli.ok("devices", "--json").out)
    assert len(listed) == 2
    mine = next(d for d in listed if d["current"])
    theirs = next(d for d in listed if not d["current"])
    assert theirs["name"] == "evil\u202e[red]name[/red]"
    assert theirs["last_address"] == "127.0.0.1"
    table = cli.ok("devices")
    assert "\u202e" not in table.out and "\x1b" not in table.out
    assert "evil\\u202e[red]name[/red]" in table.out
    assert theirs["id"] in table.out and mine["id"] in table.out

    cli.ok("devices", "revoke", theirs["id"])
    assert not _can_list(c, other.token)
    result = cli.fails(4, "devices", "revoke", theirs["id"])
    assert "no such device" in result.err
    assert [d["id"] for d in json.loads(cli.ok("devices", "--json").out)] == [mine["id"]]
    # Revoking this very device signs the CLI out.
    cli.ok("devices", "revoke", mine["id"])
    cli.fails(7, "devices")


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_revoked_device_stops_on_every_gateway_at_once(
        start_cluster: Callable[[dict[str, str]], Cluster], tmp_path: pathlib.Path) -> None:
    """Two gateways on one PostgreSQL, each caching sessions for a minute: a device ended
    through one stops working on the other within about a second, not after the cache."""
    a = start_cluster({"SESSION_CACHE_S": "60"})
    key = (a.root / "gateway" / "otp_key").read_text().strip()
    b = _second_gateway(a, tmp_path / "gateway-b", {"OTP_KEY": key, "SESSION_CACHE_S": "60"})
    try:
        owner = a.sign_up(device_name="laptop")
        phone = a.sign_in(owner.email, device_name="phone")
        assert _can_list(b, phone.token)  # now cached by gateway B for a minute
        device_id = next(d.device_id for d in _devices(a, owner.token) if d.name == "phone")
        a.auth.RevokeDevice(pb.RevokeDeviceRequest(session_token=owner.token,
                                                   device_id=device_id), timeout=10)
        deadline = time.monotonic() + 3
        while _can_list(b, phone.token):
            assert time.monotonic() < deadline, "gateway B still serves the revoked device"
            time.sleep(0.1)
        assert _can_list(b, owner.token)
    finally:
        b.stop()


# -- the per-address window ------------------------------------------------------------------


def test_peer_addresses_and_the_sliding_window() -> None:
    from cloudgrpc_server.address_limits import AddressLimiter, peer_address

    assert peer_address("ipv4:127.0.0.1:51234") == "127.0.0.1"
    assert peer_address("ipv6:[::1]:51234") == "::1"
    assert peer_address("ipv6:[::ffff:10.0.0.7]:443") == "::ffff:10.0.0.7"
    assert peer_address("") == "unknown"
    limiter = AddressLimiter("code checks", limit=3, window_s=0.5)
    for _ in range(3):
        limiter.check("10.0.0.1")
    with pytest.raises(errors.RateLimited) as err:
        limiter.check("10.0.0.1")
    assert "try again in 1 minute" in str(err.value)
    limiter.check("10.0.0.2")  # another address has its own count
    time.sleep(0.6)
    limiter.check("10.0.0.1")  # the window slid past the first calls


def test_full_name_with_terminal_escapes_is_refused(cluster: Cluster) -> None:
    """A full name reaches other users' terminals (shares, admin lists): control characters
    are refused at enrolment and no account is created."""
    c = cluster
    email = _email()
    with pytest.raises(grpc.RpcError) as refused:
        c.sign_up(email, name="Eve \x1b]0;owned\x07\x1b[2J\x9b31m")
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "full_name" in (refused.value.details() or "")
    users = c.admin.ListAllUsers(pb.ListUsersRequest(admin_key=ADMIN_KEY), timeout=10).users
    assert email not in [u.email for u in users]
    assert c.sign_up(email, name="Eve").user_id  # the same code path works with a clean name
