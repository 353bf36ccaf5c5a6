"""Gateway and nodes on separate hosts: network namespaces joined by veth pairs.

The gateway lives in its own namespace; each node in another, linked to the gateway's by
a veth pair; the test itself reaches the gateway through one more pair. Cutting a node's
link (the interface goes down) is what a pulled cable or a dead switch port looks like:
reads fail over, the node goes offline, repair restores two replicas; when the link comes
back the node rejoins and the extra copies are trimmed. Needs root and iproute2.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.cluster import Cluster, MiB, Proc, _spawn

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None,
    reason="network namespaces need root and iproute2")

SUBNET = "10.231"  # only ever assigned inside namespaces this test creates


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


class Hosts:
    """Namespaces ``<tag>-gw`` and ``<tag>-n<i>``, wired gateway <-> node and root <-> gw."""

    def __init__(self, nodes: int, routed: bool = True) -> None:
        self.routed = routed
        self.tag = f"cg{os.getpid() % 100000}"
        self.gw = f"{self.tag}-gw"
        self.nodes = [f"{self.tag}-n{i}" for i in range(1, nodes + 1)]
        self.made: list[str] = []

    def up(self) -> None:
        for ns in [self.gw, *self.nodes]:
            ip("netns", "add", ns)
            self.made.append(ns)
            ip("-n", ns, "link", "set", "lo", "up")
        # root <-> gateway: the test's way in.
        ip("link", "add", f"{self.tag}-t", "type", "veth", "peer", "name", "to-test",
           "netns", self.gw)
        ip("addr", "add", f"{SUBNET}.0.1/30", "dev", f"{self.tag}-t")
        ip("link", "set", f"{self.tag}-t", "up")
        ip("-n", self.gw, "addr", "add", f"{SUBNET}.0.2/30", "dev", "to-test")
        ip("-n", self.gw, "link", "set", "to-test", "up")
        for i, ns in enumerate(self.nodes, start=1):
            ip("-n", self.gw, "link", "add", self.link(i), "type", "veth", "peer", "name",
               "to-gw", "netns", ns)
            ip("-n", self.gw, "addr", "add", f"{SUBNET}.{i}.1/30", "dev", self.link(i))
            ip("-n", self.gw, "link", "set", self.link(i), "up")
            ip("-n", ns, "addr", "add", f"{SUBNET}.{i}.2/30", "dev", "to-gw")
            ip("-n", ns, "link", "set", "to-gw", "up")
            if self.routed:
                ip("-n", ns, "route", "add", "default", "via", f"{SUBNET}.{i}.1")
        if self.routed:
            # The gateway's host routes between node hosts (repair copies node to node);
            # unrouted, nodes cannot see each other and repair relays through the gateway.
            subprocess.run(["ip", "netns", "exec", self.gw, "sysctl", "-qw",
                            "net.ipv4.ip_forward=1"], check=True)

    def link(self, i: int) -> str:
        return f"to-n{i}"

    def cut(self, i: int) -> None:
        ip("-n", self.gw, "link", "set", self.link(i), "down")

    def restore(self, i: int) -> None:
        ip("-n", self.gw, "link", "set", self.link(i), "up")

    def down(self) -> None:
        subprocess.run(["ip", "link", "del", f"{self.tag}-t"], capture_output=True)
        for ns in self.made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


class NetnsCluster(Cluster):
    def __init__(self, root: Path, hosts: Hosts, **kwargs: object) -> None:
        super().__init__(root, mail_host=f"{SUBNET}.0.1", **kwargs)  # type: ignore[arg-type]
        self.hosts = hosts
        self.env["GRPC_SERVER_HOST"] = "0.0.0.0"  # inside the gateway's own namespace

    @property
    def address(self) -> str:
        return f"{SUBNET}.0.2:{self.port}"

    def start_gateway(self) -> None:
        (self.root / "gateway").mkdir(parents=True, exist_ok=True)
        env = dict(self.env)
        if self.port:
            env["GRPC_SERVER_PORT"] = str(self.port)
        self.gateway = _spawn("gateway", ["ip", "netns", "exec", self.hosts.gw, sys.executable,
                                          "-m", "cloudgrpc_server.app"], env, self.root)
        self.port = int(self.gateway.wait_for(r"Server listening on port (\d+)", 60).group(1))

    def start_node(self, name: str, capacity_gb: float | None = None) -> Proc:
        i = int(name.removeprefix("node"))
        port = self.node_ports.setdefault(name, 7000 + i)
        proc = _spawn(name, ["ip", "netns", "exec", self.hosts.nodes[i - 1], sys.executable,
                             "-m", "cloudgrpc_node.app", name, f"{SUBNET}.{i}.2", str(port),
                             str(capacity_gb or self.node_capacity_gb), "--gateway",
                             f"{SUBNET}.{i}.1:{self.port}", "--data-dir",
                             str(self.node_dir(name))], self.env, self.root)
        self.nodes[name] = proc
        proc.wait_for(r"registered with gateway", timeout=60)
        return proc


@pytest.fixture(params=["routed", "isolated-nodes"])
def hosts(request: pytest.FixtureRequest) -> Iterator[Hosts]:
    h = Hosts(3, routed=request.param == "routed")
    try:
        h.up()
        yield h
    finally:
        h.down()


def _wait(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_cut_and_restore_a_node_link(tmp_path: Path, hosts: Hosts) -> None:
    c = NetnsCluster(tmp_path, hosts, env={
        "SMTP_HOST": f"{SUBNET}.0.1",
        "NODE_TIMEOUT_S": "2", "REPAIR_GRACE_S": "1", "REPAIR_INTERVAL_S": "0.5",
        "NODE_CALL_TIMEOUT_S": "3", "HEARTBEAT_INTERVAL_S": "0.5"})
    try:
        c.start()
        acct = c.sign_up()
        files = {}
        for n in range(3):
            data = os.urandom(5 * MiB + n)
            files[acct.upload(data, f"h{n}.bin").file_id] = data
        chunks = c.status().total_chunks
        hosts.cut(1)
        # Reads keep working across the cut (the node's replicas are skipped).
        for fid, data in files.items():
            assert acct.download(fid) == data
        _wait(lambda: c.status().online_nodes == 2, 20, "node1 seen offline")
        _wait(lambda: c.status().under_replicated_chunks == 0, 30, "repair onto node2+3")
        # Writes keep working with two hosts.
        data = os.urandom(3 * MiB)
        files[acct.upload(data, "during-cut.bin").file_id] = data
        hosts.restore(1)
        _wait(lambda: c.status().online_nodes == 3, 30, "node1 back online")
        for fid, data in files.items():
            assert acct.download(fid) == data
        assert c.status().total_chunks >= chunks
    finally:
        for proc in c.nodes.values():
            proc.stop(signal.SIGKILL, timeout=5)
        if c.gateway is not None:
            c.gateway.stop()
        c.mail.stop()
