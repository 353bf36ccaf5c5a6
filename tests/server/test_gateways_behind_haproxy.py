"""Two gateways on one PostgreSQL behind HAProxy behave as one; one of them killed mid-run.

Real processes: Debian's HAProxy running ``deploy/haproxy/haproxy.cfg`` (the file the README
shows, its addresses replaced by this test's ports), two ``cloudgrpc-gateway`` processes on
one throwaway PostgreSQL database (started together, as systemd would), three nodes that
register and heartbeat through HAProxy, and clients (the client library and raw stubs)
through HAProxy or straight to one gateway. PostgreSQL only: several gateways need it.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy as sa

from cloudgrpc_proto import cloud_storage_pb2 as pb
from cloudgrpc_proto import errors
from cloudgrpc_proto.client import CloudClient
from tests.balancer import (
    HAPROXY_CFG,
    RETRY,
    HAProxyMissing,
    Site,
    gateways_behind_haproxy,
    haproxy_binary,
    haproxy_config,
    wait_until,
)
from tests.cluster import ADMIN_KEY
from tests.conftest import database_for

pytestmark = pytest.mark.postgres

REPO = Path(__file__).resolve().parents[2]
OTP_KEY = "test-otp-key-shared-by-both-gateways"
LEADER_LOCK = 0x436C6F7564  # server/leader.py


def _haproxy() -> str:
    try:
        return haproxy_binary()
    except HAProxyMissing as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    _haproxy()
    root = tmp_path_factory.mktemp("behind-haproxy")
    shared = {"OTP_KEY": OTP_KEY, "REPAIR_INTERVAL_S": "1", "GC_INTERVAL_S": "1",
              # Long, so a refused session on the other gateway proves the relay
              # dropped it from the cache, not that the cache expired.
              "SESSION_CACHE_S": "60",
              # A silent change stream says "hello" again every second (30 s by
              # default, within HAProxy's 75 s timeouts), so a test can see it.
              "CHANGE_KEEPALIVE_S": "1"}
    with database_for("postgres", root) as url, \
            gateways_behind_haproxy(root, url, gateways=2, nodes=3, env=shared) as running:
        yield running


def sign_up(site: Site, email: str, device: str = "") -> CloudClient:
    """A new account through HAProxy with the client library (code from the mail sink)."""
    client = site.client(device_name=device)
    before = site.front.mail.count_for(email)
    client.send_otp(email)
    client.verify_otp(email, site.front.mail.code_for(email, after=before))
    client.enroll(email, "Two Gateways")
    return client


def sign_in(site: Site, email: str, device: str) -> CloudClient:
    client = site.client(device_name=device)
    before = site.front.mail.count_for(email)
    client.send_otp(email)
    client.verify_otp(email, site.front.mail.code_for(email, after=before))
    client.login(email)
    return client


def on_gateway(site: Site, name: str, client: CloudClient) -> CloudClient:
    """The same session, straight to gateway ``name`` (past HAProxy)."""
    return CloudClient(site.gateways[name].address, timeout=5, retry=RETRY,
                       session_token=client.session_token)


def upload(client: CloudClient, data: bytes, name: str) -> str:
    return client.upload(io.BytesIO(data), filename=name, file_size=len(data)).file_id


def download(client: CloudClient, file_id: str) -> bytes:
    out = io.BytesIO()
    client.download_to(file_id, out)
    return out.getvalue()


class Watcher:
    """A WatchChanges stream that records what it hears and re-subscribes when it ends,
    as a mount does."""

    def __init__(self, client: CloudClient) -> None:
        self.client = client
        self.events: list[pb.ChangeEvent] = []
        self.subscriptions = 0
        self._stream: Any = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        wait_until(lambda: self.subscriptions > 0 and bool(self.events), 10, "stream hello")

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._stream = self.client.watch_changes()
                self.subscriptions += 1
                for event in self._stream:
                    self.events.append(event)
            except (errors.CloudError, grpc.RpcError):
                pass
            self._stop.wait(0.2)

    def names(self) -> set[str]:
        return {e.name for e in self.events}

    def close(self) -> None:
        self._stop.set()
        if self._stream is not None:
            self._stream.cancel()
        self._thread.join(5)


def test_the_tested_configuration_is_the_documented_one_and_valid(tmp_path: Path) -> None:
    checked = subprocess.run([_haproxy(), "-c", "-f", str(HAPROXY_CFG)], capture_output=True,
                             text=True, timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    readme = (REPO / "README.md").read_text()
    body = [line for line in HAPROXY_CFG.read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")]
    assert all(line in readme for line in body), "README's HAProxy configuration differs"


def test_the_configuration_for_other_gateway_counts_is_valid(tmp_path: Path) -> None:
    """The benches run 1 to N gateways from the same documented file: one server line each,
    and HAProxy accepts it."""
    for ports in ([20001], [20001, 20002, 20003]):
        cfg = tmp_path / f"haproxy-{len(ports)}.cfg"
        cfg.write_text(haproxy_config(20000, ports))
        checked = subprocess.run([_haproxy(), "-c", "-f", str(cfg)], capture_output=True,
                                 text=True, timeout=30)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        servers = [line.split()[1:3] for line in cfg.read_text().splitlines()
                   if line.strip().startswith("server ")]
        assert servers == [[f"gw{i}", f"127.0.0.1:{port}"]
                           for i, port in enumerate(ports, start=1)]
        assert "bind 127.0.0.1:20000 proto h2" in cfg.read_text()


def test_nodes_registered_through_haproxy_are_online_on_every_gateway(site: Site) -> None:
    for gateway in site.gateways.values():
        assert gateway.status().online_nodes == 3
        nodes = gateway.admin.ListNodes(pb.ListNodesRequest(admin_key=ADMIN_KEY), timeout=10)
        assert sorted(n.name for n in nodes.nodes if n.status == "online") == \
            ["node1", "node2", "node3"]


def test_sign_in_upload_download_through_haproxy(site: Site) -> None:
    client = sign_up(site, "lb-user@example.com")
    files = {upload(client, os.urandom(size), f"f{size}.bin"): size
             for size in (1000, 300_000, 5_000_000)}
    stored = {fid: download(client, fid) for fid in files}
    assert {fid: len(data) for fid, data in stored.items()} == files
    # Both gateways serve the same account and files.
    for name in site.gateways:
        direct = on_gateway(site, name, client)
        listed = {f.file_id for f in direct.list_files().files}
        assert set(files) <= listed
        some = next(iter(stored))
        assert download(direct, some) == stored[some]


def test_the_client_address_is_the_one_haproxy_saw(site: Site) -> None:
    """A client's own x-forwarded-for (a spoof) is not believed: HAProxy drops it and
    writes the address it saw, which the gateways believe since it is a trusted proxy."""
    email = "forwarded@example.com"
    token = site.front.verified_code(email)
    spoof = (("x-forwarded-for", "203.0.113.9"),)
    reply = site.front.auth.Enroll(pb.EnrollRequest(
        email=email, full_name="F", verification_token=token, device_name="spoofer"),
        metadata=spoof, timeout=10)
    devices = site.front.auth.ListDevices(pb.ListDevicesRequest(
        session_token=reply.session_token), metadata=spoof, timeout=10).devices
    assert [d.last_address for d in devices] == ["127.0.0.1"]
    # Straight from a trusted proxy's address, the header is believed.
    gateway = site.gateways["a"]
    before = site.front.mail.count_for(email)  # both gateways mail through the front's sink
    gateway.auth.SendOTP(pb.SendOTPRequest(email=email), timeout=10)
    verified = gateway.auth.VerifyOTP(pb.VerifyOTPRequest(
        email=email, otp=site.front.mail.code_for(email, after=before)), timeout=10)
    login = gateway.auth.Login(pb.LoginRequest(
        email=email, verification_token=verified.verification_token, device_name="proxied"),
        metadata=(("x-forwarded-for", "198.51.100.7"),), timeout=10)
    devices = gateway.auth.ListDevices(pb.ListDevicesRequest(
        session_token=login.session_token), timeout=10).devices
    assert {d.name: d.last_address for d in devices}["proxied"] == "198.51.100.7"


def test_change_made_through_one_gateway_reaches_streams_on_the_other(site: Site) -> None:
    client = sign_up(site, "watcher@example.com")
    other_user = sign_up(site, "bystander@example.com")
    on = {name: on_gateway(site, name, client) for name in site.gateways}
    watchers = {name: Watcher(on[name]) for name in site.gateways}
    via_lb = Watcher(site.client(session_token=client.session_token))
    bystander = Watcher(on_gateway(site, "a", other_user))
    try:
        for made_on, heard_on in (("b", "a"), ("a", "b")):
            name = f"made-on-{made_on}"
            t0 = time.monotonic()
            on[made_on].create_folder(name)
            took = wait_until(lambda n=name, w=watchers[heard_on]: n in w.names(), 2.0,
                              f"a folder made on gateway {made_on}, on a stream on {heard_on}")
            assert took < 2.0
            # Whichever gateway HAProxy gave the stream, the change of the other arrives.
            wait_until(lambda n=name: n in via_lb.names(), 2.0 - (time.monotonic() - t0),
                       f"a folder made on gateway {made_on}, on a stream through HAProxy")
        data = os.urandom(50_000)
        upload(on["b"], data, "uploaded-on-b.bin")
        wait_until(lambda: "uploaded-on-b.bin" in watchers["a"].names(), 2.0, "an upload on b")
        time.sleep(0.5)  # what the bystander would have heard by now
        assert {e.kind for e in bystander.events} == {"hello"}, \
            "another account's changes reached a stream"
        # Each change once per stream, though both gateways hear every NOTIFY.
        made = [e.name for e in watchers["a"].events if e.name.startswith("made-on-")]
        assert sorted(made) == ["made-on-a", "made-on-b"]
    finally:
        for w in [*watchers.values(), via_lb, bystander]:
            w.close()


def test_a_silent_change_stream_through_haproxy_stays_open(site: Site) -> None:
    """Keepalive "hello"s: the stream stays one subscription and still hears changes."""
    client = sign_up(site, "quiet@example.com")
    watcher = Watcher(site.client(session_token=client.session_token))
    try:
        time.sleep(2.5)
        client.create_folder("after-silence")
        wait_until(lambda: "after-silence" in watcher.names(), 2.0, "a change after silence")
        assert watcher.subscriptions == 1
        kinds = [e.kind for e in watcher.events]
        assert kinds.count("hello") >= 3 and kinds[-1] == "created"
    finally:
        watcher.close()


def test_logout_and_revocation_reach_every_gateway(site: Site) -> None:
    first = sign_up(site, "devices@example.com", device="laptop")
    second = sign_in(site, "devices@example.com", device="phone")
    a_first = on_gateway(site, "a", first)
    a_second = on_gateway(site, "a", second)
    b_second = on_gateway(site, "b", second)
    # Both sessions are known (cached for SESSION_CACHE_S = 60 s) on gateway a.
    assert a_first.whoami().email == a_second.whoami().email == "devices@example.com"

    # The phone is signed out on gateway b: gateway a refuses its session within seconds.
    phone_device = next(d.device_id for d in b_second.list_devices().devices if d.current)
    b_second.logout(forget_device=False)
    took = wait_until(lambda: _refused(a_second), 3.0, "a logout on b, on gateway a")
    assert took < 3.0

    # The laptop's device is revoked on gateway b: gateway a refuses it within seconds.
    third = sign_in(site, "devices@example.com", device="tablet")
    a_third = on_gateway(site, "a", third)
    assert a_third.whoami().email == "devices@example.com"
    tablet = next(d.device_id for d in a_third.list_devices().devices if d.current)
    assert tablet != phone_device
    on_gateway(site, "b", first).revoke_device(tablet)
    wait_until(lambda: _refused(a_third), 3.0, "a device revoked on b, on gateway a")
    assert not _refused(a_first)  # the laptop itself carries on


def _refused(client: CloudClient) -> bool:
    try:
        client.whoami()
        return False
    except errors.Unauthenticated:
        return True


def _leaders(site: Site) -> int:
    engine = sa.create_engine(site.database_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND classid = :hi AND objid = :lo AND database = "
                "(SELECT oid FROM pg_database WHERE datname = current_database())"),
                {"hi": LEADER_LOCK >> 32, "lo": LEADER_LOCK & 0xFFFFFFFF}).scalar_one())
    finally:
        engine.dispose()


def _leading(site: Site) -> list[str]:
    return [name for name, g in site.gateways.items()
            if g.gateway is not None and g.gateway.popen.poll() is None
            and any("now runs background maintenance" in line for line in g.gateway.lines)]


def test_exactly_one_maintenance_leader(site: Site) -> None:
    wait_until(lambda: _leaders(site) == 1 and len(_leading(site)) == 1, 5, "a leader")
    time.sleep(1.5)  # a few maintenance rounds later: still one
    assert _leaders(site) == 1 and len(_leading(site)) == 1


def test_change_streams_resync_after_a_lost_listen_connection(site: Site) -> None:
    """Changes sent while a gateway could not listen are lost to it: its streams end, so
    each client re-subscribes (a mount then drops its caches), and changes flow again."""
    client = sign_up(site, "gap@example.com")
    on = {name: on_gateway(site, name, client) for name in site.gateways}
    watcher = Watcher(on["a"])
    engine = sa.create_engine(site.database_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            cut = conn.execute(sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND query ILIKE 'LISTEN%'")).all()
        assert len(cut) == 2  # one LISTEN connection per gateway, for every relay
        wait_until(lambda: watcher.subscriptions >= 2, 10, "the stream ended and renewed")
        on["b"].create_folder("after-the-gap")
        wait_until(lambda: "after-the-gap" in watcher.names(), 2.0, "a change after the gap")
    finally:
        engine.dispose()
        watcher.close()


def test_a_silent_node_goes_offline_on_every_gateway_once(site: Site) -> None:
    """Liveness lives in the database: a node killed stops heartbeating (through HAProxy,
    to either gateway), and both gateways see it offline, with one node_down event."""
    site.front.stop_node("node3", signal.SIGKILL)
    for name, gateway in site.gateways.items():
        wait_until(lambda g=gateway: g.status().online_nodes == 2, 10,
                   f"node3 offline on gateway {name}")
    time.sleep(1.0)  # both gateways' liveness rounds have run since
    engine = sa.create_engine(site.database_url)
    try:
        with engine.connect() as conn:
            downs = conn.execute(sa.text(
                "SELECT count(*) FROM events WHERE event_type = 'node_down' "
                "AND message LIKE 'node node3 %'")).scalar_one()
    finally:
        engine.dispose()
    assert downs == 1


def test_a_gateway_killed_mid_run(site: Site) -> None:
    """SIGKILL the maintenance leader while a client uploads through HAProxy: the client
    carries on through the other gateway, the change stream that was on the killed one
    re-subscribes, the other gateway takes over maintenance, and every acknowledged upload
    downloads intact."""
    client = sign_up(site, "survivor@example.com")
    # Two streams through HAProxy (leastconn: one on each gateway).
    watchers = [Watcher(site.client(session_token=client.session_token)) for _ in range(2)]
    acknowledged: dict[str, bytes] = {}
    failed: list[Exception] = []
    stop = threading.Event()

    def keep_uploading() -> None:
        i = 0
        while not stop.is_set():
            data = os.urandom(100_000 + i)
            try:
                acknowledged[upload(client, data, f"run-{i}.bin")] = data
            except errors.CloudError as exc:  # in flight on the killed gateway
                failed.append(exc)
            i += 1

    reads = [0]
    read_failures: list[Exception] = []

    def keep_listing() -> None:  # idempotent calls: retried onto the survivor
        while not stop.is_set():
            try:
                client.list_files()
                reads[0] += 1
            except errors.CloudError as exc:
                read_failures.append(exc)

    workers = [threading.Thread(target=keep_uploading, daemon=True),
               *(threading.Thread(target=keep_listing, daemon=True) for _ in range(2))]
    for worker in workers:
        worker.start()
    try:
        wait_until(lambda: len(acknowledged) >= 3, 20, "uploads before the kill")
        victim = _leading(site)[0]
        survivor = next(n for n in site.gateways if n != victim)
        site.gateways[victim].gateway.stop(signal.SIGKILL)  # type: ignore[union-attr]
        at_kill = len(acknowledged)
        wait_until(lambda: len(acknowledged) >= at_kill + 3, 15, "uploads after the kill")
    finally:
        stop.set()
        for worker in workers:
            worker.join(30)
    # Listings in flight on the killed gateway were retried onto the other: none failed.
    assert reads[0] > 10 and not read_failures, read_failures
    # Uploads in flight on the killed gateway may fail (they are not retried: not
    # idempotent), as a typed "unavailable", never a hang; at most a few.
    assert len(failed) <= 3, failed
    assert all(isinstance(e, errors.Unavailable | errors.InternalError) for e in failed), failed
    try:
        # Unary calls carry on through the other gateway (within the client's retries).
        listed = {f.file_id for f in client.list_files().files}
        assert set(acknowledged) <= listed
        for file_id, data in acknowledged.items():
            assert download(client, file_id) == data
        # The change streams hear on: the one on the killed gateway re-subscribed
        # (through HAProxy, to the survivor).
        client.create_folder("after-the-kill")
        for watcher in watchers:
            wait_until(lambda w=watcher: "after-the-kill" in w.names(), 10,
                       "a change stream after the kill")
        assert max(w.subscriptions for w in watchers) >= 2
        # The survivor leads maintenance now.
        wait_until(lambda: _leaders(site) == 1 and _leading(site) == [survivor], 10,
                   "the survivor leading")
    finally:
        for watcher in watchers:
            watcher.close()
