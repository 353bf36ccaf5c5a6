"""Prometheus metrics of the gateway and the nodes, scraped by a real Prometheus server.

The scrape test runs Debian's ``prometheus`` against a real gateway and two real nodes and
asks its HTTP API for the counters an upload and a download through the cluster moved. The
cluster it scrapes is on SQLite: the database behind the cluster gauges is exercised on
both backends by ``test_cluster_gauges_*`` (in process, no Prometheus needed), which is
where the SQL is.

The example configuration, alert rules and Grafana dashboard under ``deploy/`` are checked
by ``promtool`` and against the metric names the real processes export, so they cannot rot.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from cloudgrpc_proto.metrics_export import is_loopback, serve_metrics
from cloudgrpc_server.db import Database
from cloudgrpc_server.metrics import ClusterCollector
from cloudgrpc_server.models import Payment, Session, StorageTier, User
from cloudgrpc_server.models import utcnow as db_now
from tests.cluster import Cluster, free_port

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "cloudgrpc-dashboard.json"
METRIC_NAME = re.compile(r"\bcloudgrpc_[a-z0-9_]+\b")


def _tool(name: str) -> str:
    path = shutil.which(name) or f"/usr/bin/{name}"
    if not os.access(path, os.X_OK):
        pytest.fail(f"{name} is missing: install Debian's prometheus package "
                    "(scripts/system-packages.sh lists it)")
    return path


def _get(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as reply:  # noqa: S310 - loopback
        return reply.read().decode()


def _wait(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout} s: {what}")


def _sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a scrape's text (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        metric, _, label_text = head.partition("{")
        if metric != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', label_text))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(value)
    return 0.0


def _listening(pid: int) -> set[tuple[str, int]]:
    """The TCP sockets process ``pid`` listens on, as (address hex, port)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                address, port = fields[1].split(":")
                found.add((address, int(port, 16)))
    return found


# --- a real cluster with metrics on, and a real Prometheus scraping it -------------------


class Prometheus:
    """Debian's Prometheus server on a loopback port, scraping every second."""

    def __init__(self, root: Path, targets: dict[str, list[int]]) -> None:
        root.mkdir(parents=True, exist_ok=True)
        shutil.copy(ALERTS, root / "alerts.yml")  # the real rules, evaluated on real data
        jobs = "\n".join(
            f"  - job_name: {job}\n    static_configs:\n      - targets: ["
            + ", ".join(f'"127.0.0.1:{port}"' for port in ports) + "]"
            for job, ports in targets.items())
        config = root / "prometheus.yml"
        config.write_text("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                          "rule_files:\n  - alerts.yml\nscrape_configs:\n" + jobs + "\n")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = (root / "prometheus.log").open("w")
        self.popen = subprocess.Popen(
            [_tool("prometheus"), f"--config.file={config}",
             f"--storage.tsdb.path={root / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn",
             # hidden flag: targets are applied every 5 s by default, too slow for a test
             "--scrape.discovery-reload-interval=100ms"],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=root)

    def ready(self) -> bool:
        try:
            _get(f"{self.url}/-/ready", timeout=1)
            return True
        except OSError:
            assert self.popen.poll() is None, "prometheus exited: see prometheus.log"
            return False

    def api(self, path: str, **params: str) -> object:
        query = urllib.parse.urlencode(params)
        reply = json.loads(_get(f"{self.url}/api/v1/{path}?{query}"))
        assert reply["status"] == "success", reply
        return reply["data"]

    def value(self, promql: str) -> float | None:
        result = self.api("query", query=promql)["result"]  # type: ignore[index]
        return float(result[0]["value"][1]) if result else None

    def stop(self) -> None:
        self.popen.terminate()
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)
        self.log.close()


@pytest.fixture(scope="module")
def monitored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, Prometheus]]:
    """A gateway and two nodes with metrics on, and Prometheus scraping them.

    Prometheus starts first, on the ports the cluster will take: it applies new targets
    only every 5 s, and that wait overlaps the cluster's start-up."""
    cluster = Cluster(tmp_path_factory.mktemp("metrics-cluster"), nodes=2, metrics=True,
                      env={"METRICS_CACHE_S": "5", "REPAIR_INTERVAL_S": "1",
                           "GC_INTERVAL_S": "1", "SCRUB_INTERVAL_S": "1"})
    ports = {name: free_port() for name in ("gateway", "node1", "node2")}
    cluster.metrics_ports.update(ports)
    server = Prometheus(tmp_path_factory.mktemp("prometheus"), {
        "cloudgrpc-gateway": [ports["gateway"]],
        "cloudgrpc-node": [ports["node1"], ports["node2"]]})
    try:
        cluster.start()
        _wait(server.ready, "prometheus ready", timeout=20)
        yield cluster, server
    finally:
        server.stop()
        cluster.stop()


@pytest.fixture(scope="module")
def metrics_cluster(monitored: tuple[Cluster, Prometheus]) -> Cluster:
    return monitored[0]


@pytest.fixture(scope="module")
def prometheus(monitored: tuple[Cluster, Prometheus]) -> Prometheus:
    return monitored[1]


def _scrape(cluster: Cluster, process: str) -> str:
    return _get(f"http://127.0.0.1:{cluster.metrics_ports[process]}/metrics")


def test_prometheus_sees_an_upload_and_a_download(metrics_cluster: Cluster,
                                                  prometheus: Prometheus) -> None:
    _wait(lambda: prometheus.value("count(up == 1)") == 3,
          "prometheus scrapes the gateway and both nodes")
    text = _scrape(metrics_cluster, "gateway")
    uploads = _sample(text, "cloudgrpc_gateway_rpc_handled_total", method="UploadFile",
                      code="OK")
    uploaded = _sample(text, "cloudgrpc_gateway_upload_bytes_total")
    downloaded = _sample(text, "cloudgrpc_gateway_download_bytes_total")
    stored = sum(_sample(_scrape(metrics_cluster, n), "cloudgrpc_node_received_bytes_total")
                 for n in ("node1", "node2"))

    account = metrics_cluster.sign_up()
    data = os.urandom(300_000)
    reply = account.upload(data)
    assert account.download(reply.file_id) == data

    def moved() -> bool:
        return ((prometheus.value('sum(cloudgrpc_gateway_rpc_handled_total'
                                  '{method="UploadFile",code="OK"})') or 0) >= uploads + 1
                and (prometheus.value("sum(cloudgrpc_gateway_upload_bytes_total)") or 0)
                >= uploaded + len(data)
                and (prometheus.value("sum(cloudgrpc_gateway_download_bytes_total)") or 0)
                >= downloaded + len(data)
                # replication 2 on two nodes: each received a copy
                and (prometheus.value("sum(cloudgrpc_node_received_bytes_total)") or 0)
                >= stored + 2 * len(data))

    _wait(moved, "prometheus reports the upload and the download")
    assert prometheus.value('sum(cloudgrpc_gateway_sign_ins_total{step="enroll",'
                            'outcome="success"})') >= 1
    latency = prometheus.value('sum(cloudgrpc_gateway_rpc_duration_seconds_count'
                               '{method="UploadFile"})')
    assert latency is not None and latency >= uploads + 1


def test_real_alert_rules_evaluate_on_real_data(prometheus: Prometheus) -> None:
    """Prometheus loaded deploy/prometheus/alerts.yml and evaluates every rule without error
    against what the real processes export; a healthy cluster fires none of them."""
    def evaluated() -> bool:
        groups = prometheus.api("rules")["groups"]  # type: ignore[index]
        rules = [r for g in groups for r in g["rules"]]
        return bool(rules) and all(r.get("lastEvaluation", "").startswith("20")
                                   for r in rules)

    _wait(evaluated, "every alert rule evaluated once")
    groups = prometheus.api("rules")["groups"]  # type: ignore[index]
    rules = [r for g in groups for r in g["rules"]]
    assert {r["name"] for r in rules} >= {"CloudGrpcNodeDown", "CloudGrpcUnderReplicated",
                                          "CloudGrpcRepairStuck", "CloudGrpcPaymentFailures"}
    assert all(r["health"] == "ok" for r in rules), [(r["name"], r.get("lastError"))
                                                     for r in rules if r["health"] != "ok"]
    assert [r["name"] for r in rules if r["state"] == "firing"] == []


def test_maintenance_and_scrub_progress_is_exported(metrics_cluster: Cluster) -> None:
    """Repair and garbage collection (every second here) count their passes on the leader;
    each node's scrubber (every second here) counts the chunks it verified."""
    account = metrics_cluster.sign_up()
    account.upload(os.urandom(50_000))

    def progressed() -> bool:
        gateway = _scrape(metrics_cluster, "gateway")
        node = _scrape(metrics_cluster, "node1")
        return (_sample(gateway, "cloudgrpc_gateway_maintenance_leader") == 1
                and _sample(gateway, "cloudgrpc_gateway_repair_passes_total") >= 1
                and _sample(gateway, "cloudgrpc_gateway_gc_passes_total") >= 1
                and _sample(gateway, "cloudgrpc_gateway_repair_last_run_timestamp_seconds")
                > time.time() - 60
                and _sample(node, "cloudgrpc_node_scrub_chunks_verified_total") >= 1
                and _sample(node, "cloudgrpc_node_chunks") >= 1)

    _wait(progressed, "repair, GC and scrub passes counted", timeout=15)


def test_no_user_data_in_metrics(metrics_cluster: Cluster) -> None:
    email = "metrics-probe-7f3a@example.com"
    account = metrics_cluster.sign_up(email=email, name="Probe Person")
    reply = account.upload(b"secret content " * 100, name="diary-7f3a.txt")
    texts = [_scrape(metrics_cluster, p) for p in ("gateway", "node1", "node2")]
    for text in texts:
        for private in (email, "example.com", "Probe Person", "diary-7f3a", account.user_id,
                        account.token, reply.file_id):
            assert private not in text
    # the upload was counted, only by method name
    assert _sample(texts[0], "cloudgrpc_gateway_rpc_handled_total", method="UploadFile",
                   code="OK") >= 1


def test_refused_calls_are_counted_by_code(metrics_cluster: Cluster) -> None:
    import grpc

    from cloudgrpc_proto import cloud_storage_pb2 as pb

    before = _sample(_scrape(metrics_cluster, "gateway"), "cloudgrpc_gateway_rpc_handled_total",
                     method="ListFiles", code="UNAUTHENTICATED")
    with pytest.raises(grpc.RpcError) as refused:
        metrics_cluster.files.ListFiles(pb.ListFilesRequest(session_token="not-a-session"),
                                        timeout=10)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    after = _sample(_scrape(metrics_cluster, "gateway"), "cloudgrpc_gateway_rpc_handled_total",
                    method="ListFiles", code="UNAUTHENTICATED")
    assert after == before + 1


def test_health_probes_are_not_counted(metrics_cluster: Cluster) -> None:
    """Health checks (probes, every few seconds) and reflection stay out of the call
    counts; health still answers through the metrics interceptor."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    reply = health_pb2_grpc.HealthStub(metrics_cluster.channel).Check(
        health_pb2.HealthCheckRequest(), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    text = _scrape(metrics_cluster, "gateway")
    assert 'method="Heartbeat"' in text  # the nodes' calls are counted meanwhile
    assert 'service="Health"' not in text and 'method="Check"' not in text


def test_database_gauges_are_cached_between_scrapes(metrics_cluster: Cluster) -> None:
    """Scrapes within METRICS_CACHE_S (5 s here) answer the same database read: a new
    account does not show until the cache expires, and the read time stays put."""
    # Prometheus scrapes from the cluster's first second: the first cached read may predate
    # the nodes' registration. Wait for a read that has them.
    _wait(lambda: _sample(_scrape(metrics_cluster, "gateway"), "cloudgrpc_cluster_node_up",
                          node="node1") == 1, "a database read with the nodes up", timeout=20)
    for _ in range(3):  # a read may expire between the two scrapes once: then try again
        first = _scrape(metrics_cluster, "gateway")
        metrics_cluster.sign_up()
        second = _scrape(metrics_cluster, "gateway")
        read_at = _sample(first, "cloudgrpc_cluster_read_timestamp_seconds")
        if _sample(second, "cloudgrpc_cluster_read_timestamp_seconds") == read_at:
            break
    assert read_at > 0
    assert _sample(first, "cloudgrpc_cluster_database_up") == 1
    assert _sample(second, "cloudgrpc_cluster_read_timestamp_seconds") == read_at
    assert _sample(second, "cloudgrpc_cluster_users") == _sample(first, "cloudgrpc_cluster_users")
    assert _sample(first, "cloudgrpc_cluster_node_up", node="node1") == 1
    assert _sample(first, "cloudgrpc_cluster_capacity_bytes") == 2 * 2 * 1024**3


def test_endpoints_bind_loopback(metrics_cluster: Cluster) -> None:
    loopback = "0100007F"  # 127.0.0.1 as /proc/net/tcp writes it
    assert metrics_cluster.gateway is not None
    gateway = _listening(metrics_cluster.gateway.popen.pid)
    assert (loopback, metrics_cluster.metrics_ports["gateway"]) in gateway
    node = _listening(metrics_cluster.nodes["node1"].popen.pid)
    assert (loopback, metrics_cluster.metrics_ports["node1"]) in node
    banner = "".join(metrics_cluster.gateway.lines)
    assert f"Metrics: http://127.0.0.1:{metrics_cluster.metrics_ports['gateway']}/metrics" \
        in banner


def test_metrics_are_off_by_default(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, nodes=1)
    try:
        cluster.start()
        assert cluster.gateway is not None
        gateway = {port for _, port in _listening(cluster.gateway.popen.pid)}
        assert gateway == {cluster.port}
        node = {port for _, port in _listening(cluster.nodes["node1"].popen.pid)}
        assert node == {cluster.node_ports["node1"]}
        assert "Metrics: off" in "".join(cluster.gateway.lines)
    finally:
        cluster.stop()


def test_a_wider_bind_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    """Any address but loopback is logged loudly before the bind (192.0.2.1 is a
    documentation address this machine does not have: the bind itself then fails, so
    nothing is opened beyond loopback by this test)."""
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.5") \
        and not is_loopback("metrics.example")
    from prometheus_client import CollectorRegistry
    with caplog.at_level(logging.WARNING), pytest.raises(OSError):
        serve_metrics(CollectorRegistry(), "192.0.2.1", free_port(), "gateway")
    assert "no authentication" in caplog.text
    caplog.clear()
    assert serve_metrics(CollectorRegistry(), "192.0.2.1", 0, "gateway") is None  # 0: off
    assert caplog.text == ""


def test_a_wider_bind_is_in_the_gateway_banner_and_status() -> None:
    from cloudgrpc_server.app import security_warnings
    from cloudgrpc_server.config import Settings

    wide = Settings(cluster_secret="s", metrics_port=9450, metrics_host="0.0.0.0")
    assert any("0.0.0.0:9450" in w and "no authentication" in w
               for w in security_warnings(wide))
    for quiet in (Settings(cluster_secret="s", metrics_port=9450),  # loopback
                  Settings(cluster_secret="s", metrics_host="0.0.0.0")):  # off
        assert not any("metrics" in w for w in security_warnings(quiet))


def test_node_reads_its_own_port_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """NODE_METRICS_PORT, not the gateway's METRICS_PORT: both share one environment."""
    from cloudgrpc_node.config import parse_config

    monkeypatch.setenv("CLUSTER_SECRET", "s")
    monkeypatch.setenv("METRICS_PORT", "9450")
    monkeypatch.delenv("NODE_METRICS_PORT", raising=False)
    argv = ["n1", "127.0.0.1", "0", "1"]
    assert parse_config(argv).metrics_port == 0
    monkeypatch.setenv("NODE_METRICS_PORT", "9451")
    assert parse_config(argv).metrics_port == 9451
    assert parse_config(argv).metrics_host == "127.0.0.1"
    assert parse_config([*argv, "--metrics-port", "9460"]).metrics_port == 9460


# --- the cluster gauges' SQL, on both databases ------------------------------------------


def test_cluster_gauges_read_the_database(database_url: str, tmp_path: Path) -> None:
    (tmp_path / "gateway").mkdir(exist_ok=True)
    db = Database(database_url)
    db.migrate()
    try:
        cached = ClusterCollector(db, replication_factor=2, node_timeout_s=30, cache_s=3600)
        fresh = ClusterCollector(db, replication_factor=2, node_timeout_s=30, cache_s=0)
        assert _collected(cached)["cloudgrpc_cluster_users"] == 0
        later = db_now().replace(year=db_now().year + 1)
        with db.write() as s:
            user = User(email="payer@example.com", full_name="Payer", storage_allocated=1)
            tier = StorageTier(name="metrics-tier", display_name="Metrics", storage_bytes=1,
                               price_xaf=100)
            s.add_all([user, tier])
            s.flush()
            s.add(Session(user_id=user.id, token_hash="a" * 64, expires_at=later))
            for status in ("completed", "failed", "failed"):
                s.add(Payment(user_id=user.id, tier_id=tier.id, provider="mtn_momo",
                              phone_number="237670000001", amount_xaf=100, charged_xaf=100,
                              storage_bytes=1, status=status,
                              external_reference=os.urandom(8).hex()))
        assert _collected(cached)["cloudgrpc_cluster_users"] == 0  # within the cache
        figures = _collected(fresh)
        assert figures["cloudgrpc_cluster_database_up"] == 1
        assert figures["cloudgrpc_cluster_users"] == 1
        assert figures["cloudgrpc_cluster_active_sessions"] == 1
        assert figures['cloudgrpc_cluster_payments{provider="mtn_momo",state="failed",'
                       'tier="metrics-tier"}'] == 2
        assert figures['cloudgrpc_cluster_payments_amount_xaf{provider="mtn_momo",'
                       'state="completed",tier="metrics-tier"}'] == 100
        assert "payer" not in "".join(figures) and "237670000001" not in "".join(figures)
    finally:
        db.dispose()


def test_cluster_gauges_say_when_the_database_is_unreadable(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'never-migrated.db'}")  # no tables at all
    try:
        figures = _collected(ClusterCollector(db, 2, 30, cache_s=0))
        assert figures["cloudgrpc_cluster_database_up"] == 0
        assert "cloudgrpc_cluster_users" not in figures
    finally:
        db.dispose()


def _collected(collector: ClusterCollector) -> dict[str, float]:
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    registry.register(collector)
    out = {}
    for line in generate_latest(registry).decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


# --- deploy/: promtool, and only names the processes export ------------------------------


def _promtool(*args: str, cwd: Path | None = None) -> None:
    done = subprocess.run([_tool("promtool"), *args], capture_output=True, text=True,
                          cwd=cwd, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_accepts_the_example_config_and_rules() -> None:
    prom = DEPLOY / "prometheus"
    _promtool("check", "rules", str(ALERTS))
    _promtool("check", "config", str(prom / "prometheus.yml"))
    _promtool("test", "rules", "alerts_test.yml", cwd=prom)


def _dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets") or ()]
    assert len(queries) >= 20
    return queries


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """Each query, as a recording rule, through promtool's PromQL parser ($__rate_interval
    is Grafana's; it stands for a range)."""
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": q.replace("$__rate_interval", "5m")}
        for i, q in enumerate(_dashboard_queries())]}]}
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(json.dumps(rules))  # JSON is YAML
    _promtool("check", "rules", str(path))


def _exported_names(text: str) -> set[str]:
    names = set()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[:2] == ["#", "TYPE"]:
            name, kind = parts[2], parts[3]
            names |= ({f"{name}_bucket", f"{name}_sum", f"{name}_count"}
                      if kind == "histogram" else {name})
    return names


def test_alerts_dashboard_and_readme_use_only_exported_names(metrics_cluster: Cluster) -> None:
    texts = [_scrape(metrics_cluster, process) for process in ("gateway", "node1")]
    exported = set().union(*map(_exported_names, texts))
    rules = "\n".join(line for line in ALERTS.read_text().splitlines()
                      if not line.lstrip().startswith("#"))
    used = set(METRIC_NAME.findall(rules))
    used |= {name for q in _dashboard_queries() for name in METRIC_NAME.findall(q)}
    assert len(used) >= 20
    assert used - exported == set()
    readme = (ROOT / "README.md").read_text()
    documented = set(METRIC_NAME.findall(readme.split("### Metrics", 1)[1].split("\n## ")[0]))
    assert len(documented) >= 30
    families = {line.split()[2] for line in "\n".join(texts).splitlines()
                if line.startswith("# TYPE ")}  # a histogram by its own name too
    assert documented - exported - families == set()
    # and what operators most need is there
    assert {"cloudgrpc_cluster_node_up", "cloudgrpc_cluster_chunks_under_replicated",
            "cloudgrpc_gateway_repair_chunks_copied_total", "cloudgrpc_cluster_payments",
            "cloudgrpc_cluster_active_sessions", "cloudgrpc_gateway_rpc_duration_seconds_bucket",
            "cloudgrpc_node_scrub_chunks_verified_total"} <= used
