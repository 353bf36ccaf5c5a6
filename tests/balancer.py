"""Several gateways on one PostgreSQL behind a real HAProxy, for tests and benches.

Debian's HAProxy runs ``deploy/haproxy/haproxy.cfg`` (the file the README shows, its
addresses replaced by free loopback ports, so what runs cannot drift from what is
documented); N ``cloudgrpc-gateway`` processes share one database and are started together,
as a service manager would; the storage nodes register and heartbeat through HAProxy.
``tests/server/test_gateways_behind_haproxy.py`` and ``bench/bench_load.py --gateways N``
both start their site here.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from cloudgrpc_proto.client import CloudClient
from cloudgrpc_proto.retry import RetryPolicy
from tests.cluster import Cluster, Proc, _spawn, free_port

REPO = Path(__file__).resolve().parent.parent
HAPROXY_CFG = REPO / "deploy" / "haproxy" / "haproxy.cfg"
# The documented file's addresses: the front's bind and the two example gateways.
DOCUMENTED_BIND = "bind 0.0.0.0:50051"
DOCUMENTED_SERVERS = ("server gw1 10.0.0.11:50051", "server gw2 10.0.0.12:50051")
# The client library's own retry policy (3 tries, backoff from 0.25 s): what users get.
RETRY = RetryPolicy()


class HAProxyMissing(RuntimeError):
    """Debian's haproxy package is not installed (scripts/system-packages.sh lists it)."""


def haproxy_binary() -> str:
    path = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not os.access(path, os.X_OK):
        raise HAProxyMissing("haproxy is missing: install Debian's haproxy package "
                             "(scripts/system-packages.sh lists it)")
    return path


def haproxy_config(front_port: int, gateway_ports: list[int]) -> str:
    """The documented configuration with these addresses: the front on ``front_port``, one
    ``server`` line per gateway (gw1, gw2, ... in the place of the two documented ones).
    Each documented address must be there exactly once, so the file cannot drift from what
    runs."""
    if not gateway_ports:
        raise ValueError("at least one gateway")
    text = HAPROXY_CFG.read_text()
    for old in (DOCUMENTED_BIND, *DOCUMENTED_SERVERS):
        if text.count(old) != 1:
            raise AssertionError(f"{HAPROXY_CFG} no longer has {old!r} once")
    text = text.replace(DOCUMENTED_BIND, f"bind 127.0.0.1:{front_port}")
    first, second = DOCUMENTED_SERVERS
    lines = text.splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if first in line)
    if second not in lines[at + 1]:
        raise AssertionError(f"{HAPROXY_CFG}: {second!r} no longer follows {first!r}")
    indent = lines[at][:len(lines[at]) - len(lines[at].lstrip())]
    servers = [f"{indent}server gw{i} 127.0.0.1:{port}\n"
               for i, port in enumerate(gateway_ports, start=1)]
    return "".join(lines[:at] + servers + lines[at + 2:])


@dataclass
class Site:
    """Gateways behind HAProxy; ``front`` is the balancer's address, and owns the nodes and
    the mail sink every gateway sends its codes through."""

    front: Cluster  # clients and nodes talk to HAProxy through this one
    gateways: dict[str, Cluster]  # "a", "b", ...: each gateway's own address
    haproxy: Proc
    database_url: str

    def client(self, **kwargs: Any) -> CloudClient:
        return CloudClient(self.front.address, timeout=5, retry=RETRY, **kwargs)

    def gateway_procs(self) -> dict[str, Proc]:
        """The running gateway processes by name (one that was killed is left out)."""
        return {name: g.gateway for name, g in self.gateways.items()
                if g.gateway is not None and g.gateway.popen.poll() is None}


def gateway_names(count: int) -> list[str]:
    return [chr(ord("a") + i) for i in range(count)]


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds it took ``check`` to hold (polling), or fail naming ``what``."""
    t0 = time.monotonic()
    while not check():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.05)
    return time.monotonic() - t0


def answers(cluster: Cluster) -> bool:
    try:
        cluster.status()
        return True
    except grpc.RpcError:
        return False


def _together(calls: list[Callable[[], object]]) -> None:
    threads = [threading.Thread(target=call) for call in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


@contextlib.contextmanager
def gateways_behind_haproxy(root: Path, database_url: str, gateways: int = 2, nodes: int = 3,
                            env: dict[str, str] | None = None,
                            node_capacity_gb: float = 2.0,
                            haproxy_global: tuple[str, ...] = ()) -> Iterator[Site]:
    """Start the site, yield it, stop every process it started (by PID).

    ``env`` is given to gateways and nodes alike. The gateways share an OTP key (a code
    mailed by one verifies on another) and trust HAProxy's address for x-forwarded-for.
    ``haproxy_global`` lines go into HAProxy's ``global`` section (tuning a bench tries).
    """
    (root / "front").mkdir(parents=True, exist_ok=True)
    front = Cluster(root / "front", database_url=database_url, nodes=nodes, env=env,
                    node_capacity_gb=node_capacity_gb)
    shared = {**(env or {}), "SMTP_PORT": str(front.mail.port),
              "OTP_KEY": (env or {}).get("OTP_KEY") or secrets.token_hex(16),
              "TRUSTED_PROXIES": "127.0.0.1"}  # HAProxy's address here
    site_gateways = {name: Cluster(root / f"gateway-{name}", database_url=database_url,
                                   nodes=0, env=shared) for name in gateway_names(gateways)}
    haproxy: Proc | None = None
    try:
        # Together, as a service manager starts them: one migrates, the others wait.
        _together([g.start_gateway for g in site_gateways.values()])
        if not all(g.port for g in site_gateways.values()):
            raise AssertionError("a gateway did not start")
        front.port = free_port()
        cfg = root / "cloudgrpc-haproxy.cfg"
        cfg.write_text(haproxy_config(front.port, [g.port for g in site_gateways.values()]))
        (root / "global.cfg").write_text("global\n    maxconn 1000\n" + "".join(
            f"    {line}\n" for line in haproxy_global))
        haproxy = _spawn("haproxy", [haproxy_binary(), "-f", str(root / "global.cfg"), "-f",
                                     str(cfg), "-db"], dict(os.environ), root)
        wait_until(lambda: answers(front), 15, "HAProxy in front of the gateways")
        front.env["CLOUDGRPC_GATEWAY"] = front.address
        _together([lambda n=f"node{i}": front.start_node(n) for i in range(1, nodes + 1)])
        if len(front.nodes) != nodes:
            raise AssertionError("a node did not start")
        if nodes:
            front.wait_nodes_online(nodes)
        yield Site(front, site_gateways, haproxy, database_url)
    finally:
        front.stop()  # nodes and the mail sink
        if haproxy is not None:
            haproxy.stop()
        for g in site_gateways.values():
            g.stop()
